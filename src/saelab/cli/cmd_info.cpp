// `saelab info SAE_DIR`: what an SAE directory holds (config, parameter count, norm statistics of
// the decoder rows and encoder columns, jumprelu thresholds, feature density when
// sparsity.safetensors is present). `saelab info --model M` (language models) is the separate
// run_model_info branch below.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/eval/density.h"
#include "saelab/model/hooks.h"
#include "saelab/model/loader.h"
#include "saelab/sae/sae.h"

namespace saelab::cli {
namespace {

struct InfoOptions {
  std::string sae_dir;
  std::string model;
  bool json = false;
};

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
  if (c.architecture == "topk") j["k"] = c.k;
  j["num_parameters"] = sae->num_parameters();
  j["decoder_norms"] = stats_of(sae->param("W_dec").to(at::kDouble).pow(2).sum(1).sqrt());
  j["encoder_norms"] = stats_of(sae->param("W_enc").to(at::kDouble).pow(2).sum(0).sqrt());
  if (c.architecture == "jumprelu") j["threshold"] = stats_of(sae->param("threshold"));

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

void print_sae_info(const json& j) {
  auto line = [](const std::string& key, const std::string& value) {
    std::cout << key << std::string(key.size() < 24 ? 24 - key.size() : 1, ' ') << value << "\n";
  };
  auto show = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  auto stats = [](const json& s) {
    if (s["min"].is_null()) return std::string("(empty)");
    return fmt::format("min {:.6g}  mean {:.6g}  max {:.6g}  std {:.6g}", s["min"].get<double>(),
                       s["mean"].get<double>(), s["max"].get<double>(), s["std"].get<double>());
  };
  for (const char* key : {"path", "architecture", "d_in", "d_sae", "k", "model_name", "hook_name",
                          "hook_layer", "hook_head_index", "dtype", "apply_b_dec_to_input",
                          "normalize_activations", "num_parameters"})
    if (j.contains(key)) line(key, show(j[key]));
  line("decoder row norms", stats(j["decoder_norms"]));
  line("encoder column norms", stats(j["encoder_norms"]));
  if (j.contains("threshold")) line("threshold", stats(j["threshold"]));
  if (j.contains("feature_density")) {
    const json& d = j["feature_density"];
    line("feature density",
         fmt::format(
             "{} dead, {} dense (>1e-2), {} below 1e-5, {} below 1e-6, {} healthy (1e-5..1e-3), "
             "mean log10 {:.3f}",
             d["dead_features"].get<int64_t>(), d["dense_features"].get<int64_t>(),
             d["below_1e-5"].get<int64_t>(), d["below_1e-6"].get<int64_t>(),
             d["healthy_features"].get<int64_t>(), d["mean_log10_feature_sparsity"].get<double>()));
  } else {
    line("feature density", "(no sparsity.safetensors)");
  }
}

// Language-model branch: the architecture from config.json (no weights read for Hugging Face
// folders) and every hook with its shape for one sequence of one token ([batch=1, pos=1, ...]).
int run_model_info(const InfoOptions& o) {
  const ModelConfig c = load_model_config(o.model);
  json hooks = json::array();
  for (const auto& name : model_hook_names(c))
    hooks.push_back({{"name", name}, {"shape", model_hook_shape(c, name, 1, 1)}});
  json j = {{"model_name", o.model},
            {"family", c.family},
            {"d_model", c.d_model},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_key_value_heads", c.n_key_value_heads},
            {"d_head", c.d_head},
            {"d_mlp", c.d_mlp},
            {"d_vocab", c.d_vocab},
            {"n_ctx", c.n_ctx},
            {"act_fn", c.act_fn},
            {"normalization_type", c.normalization_type},
            {"positional_embedding_type", c.positional_embedding_type},
            {"attn_types", c.attn_types},
            {"window_size", c.window_size},
            {"hooks", hooks}};
  if (o.json) {
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format(
      "model        {}\nfamily       {}\nsizes        d_model {}  n_layers {}  n_heads {} "
      "(kv {})  d_head {}  d_mlp {}  d_vocab {}  n_ctx {}\n"
      "layers       {} norm, {} positions, act {}\n",
      o.model, c.family, c.d_model, c.n_layers, c.n_heads, c.n_key_value_heads, c.d_head, c.d_mlp,
      c.d_vocab, c.n_ctx, c.normalization_type, c.positional_embedding_type,
      c.gated_mlp ? c.act_fn + " (gated)" : c.act_fn);
  std::cout << "hooks (shape for batch 1, 1 token):\n";
  for (auto& h : hooks)
    std::cout << fmt::format("  {:<36} {}\n", h["name"].get<std::string>(), h["shape"].dump());
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<InfoOptions>();
  sub->add_option("SAE_DIR", o->sae_dir,
                  "SAE directory (cfg.json + sae_weights.safetensors, or params.npz)");
  sub->add_option("--model", o->model, "describe a language model instead of an SAE");
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->footer("Examples:\n  saelab info runs/toy/final\n  saelab info runs/toy/final --json");
  return [o] {
    if (!o->model.empty()) {
      if (!o->sae_dir.empty()) fail("info: give either SAE_DIR or --model, not both");
      return run_model_info(*o);
    }
    if (o->sae_dir.empty()) fail("info: expected SAE_DIR (an SAE directory) or --model NAME");
    json j = sae_info(o->sae_dir);
    if (o->json)
      std::cout << j.dump() << "\n";
    else
      print_sae_info(j);
    return 0;
  };
};

}  // namespace
SAELAB_COMMAND("info", "Describe an SAE directory (config, parameters, norms, feature density)",
               setup);
}  // namespace saelab::cli
