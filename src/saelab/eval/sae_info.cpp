// What an SAE directory holds (sae_info.h).
#include "saelab/eval/sae_info.h"

#include <torch/torch.h>

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/eval/density.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

// min/mean/max/std (population std, divisor n) of a vector, computed in float64.
json stats_of(const at::Tensor& v_in) {
  auto v = v_in.detach().to(at::kCPU, at::kDouble).reshape({-1});
  if (v.numel() == 0)
    return json{{"min", nullptr}, {"mean", nullptr}, {"max", nullptr}, {"std", nullptr}};
  return json{{"min", v.min().item<double>()},
              {"mean", v.mean().item<double>()},
              {"max", v.max().item<double>()},
              {"std", v.std(/*unbiased=*/false).item<double>()}};
}

}  // namespace

json sae_info(const std::string& dir) {
  auto sae = load_sae(dir);
  const SaeConfig& c = sae->cfg();
  json j = json::object();
  j["path"] = dir;
  j["architecture"] = c.architecture;
  j["d_in"] = c.d_in;
  j["d_sae"] = c.d_sae;
  j["model_name"] = c.model_name;
  j["hook_name"] = c.hook_name;
  j["hook_layer"] = c.hook_layer;
  j["hook_head_index"] = c.hook_head_index ? json(*c.hook_head_index) : json(nullptr);
  j["dtype"] = c.dtype;
  j["apply_b_dec_to_input"] = c.apply_b_dec_to_input;
  j["normalize_activations"] = c.normalize_activations;
  if (c.k > 0) j["k"] = c.k;
  if (c.is_transcoder()) {
    j["d_out"] = c.d_out;
    j["hook_name_out"] = c.hook_name_out;
    j["skip_connection"] = c.skip_connection;
    j["saved_as"] = transcoder_file_architecture(c.architecture, c.skip_connection);
  }
  j["num_parameters"] = sae->num_parameters();
  j["decoder_norms"] = stats_of(sae->param("W_dec").to(at::kDouble).pow(2).sum(1).sqrt());
  j["encoder_norms"] = stats_of(sae->param("W_enc").to(at::kDouble).pow(2).sum(0).sqrt());
  if (sae->params().count("threshold")) j["threshold"] = stats_of(sae->param("threshold"));

  const std::string sparsity_path = dir + "/sparsity.safetensors";
  if (std::filesystem::is_directory(dir) && std::filesystem::is_regular_file(sparsity_path)) {
    SafetensorsFile f(sparsity_path);
    at::Tensor log10_density = f.tensor("sparsity");
    if (log10_density.dim() != 1 || log10_density.size(0) != c.d_sae)
      fail("{}: tensor 'sparsity' has shape {}, expected [{}] (d_sae)", sparsity_path,
           c10::str(log10_density.sizes()), c.d_sae);
    DensitySummary s = summarize_log10_density(log10_density);
    j["feature_density"] = json{{"dead_features", s.dead},
                                {"dense_features", s.dense},
                                {"very_dense_features", s.very_dense},
                                {"below_1e-5", s.below_1e5},
                                {"below_1e-6", s.below_1e6},
                                {"healthy_features", s.healthy},
                                {"mean_log10_feature_sparsity", s.mean_log10}};
  }
  return j;
}

}  // namespace saelab
