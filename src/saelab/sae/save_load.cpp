// Save and load of the SAELens SAE directory (SAELens SAE.save_model /
// load_from_disk): cfg.json, sae_weights.safetensors with exactly the parameters of the
// architecture, and sparsity.safetensors (`sparsity` [d_sae]) when given.
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace fs = std::filesystem;

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string spec_names(const std::vector<SaeParamSpec>& specs) {
  std::string out;
  for (const auto& s : specs) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

}  // namespace

std::unique_ptr<Sae> make_sae_from_tensors(const SaeConfig& cfg,
                                           std::map<std::string, at::Tensor> tensors,
                                           const std::string& where) {
  const auto specs = sae_param_specs(cfg);
  // SAELens drops an all-ones finetuning scaling_factor on load and applies any other one; saelab
  // has no finetuning scale, so anything else is refused rather than silently ignored.
  if (auto it = tensors.find("scaling_factor"); it != tensors.end()) {
    if (it->second.is_floating_point() && torch::all(it->second == 1).item<bool>())
      tensors.erase(it);
    else
      fail(
          "{}: tensor 'scaling_factor' is not all ones (SAELens finetuning scale), which saelab "
          "does not support",
          where);
  }
  std::set<std::string> expected;
  for (const auto& spec : specs) expected.insert(spec.name);
  std::string unknown;
  for (const auto& [name, t] : tensors)
    if (!expected.count(name)) unknown += (unknown.empty() ? "'" : ", '") + name + "'";
  if (!unknown.empty())
    fail("{}: unexpected tensor(s) {} for a {} SAE (expected exactly {})", where, unknown,
         cfg.architecture, spec_names(specs));

  auto sae = make_sae(cfg);
  const auto dtype = sae_scalar_type(cfg.dtype, where);
  for (const auto& spec : specs) {
    auto it = tensors.find(spec.name);
    if (it == tensors.end())
      fail("{}: missing tensor '{}' (a {} SAE has {})", where, spec.name, cfg.architecture,
           spec_names(specs));
    const at::Tensor& t = it->second;
    if (t.sizes() != at::IntArrayRef(spec.shape))
      fail("{}: tensor '{}' has shape {}, expected {} (d_in={}, d_sae={})", where, spec.name,
           shape_str(t.sizes()), shape_str(spec.shape), cfg.d_in, cfg.d_sae);
    if (!t.is_floating_point())
      fail("{}: tensor '{}' has dtype {}, expected a floating-point dtype", where, spec.name,
           c10::toString(t.scalar_type()));
    sae->params()[spec.name] = t.to(dtype).contiguous();
  }
  return sae;
}

void save_sae(const Sae& sae, const std::string& dir,
              const std::optional<at::Tensor>& log10_feature_sparsity) {
  const SaeConfig& cfg = sae.cfg();
  const auto specs = sae_param_specs(cfg);
  NamedTensors tensors;
  for (const auto& spec : specs) {
    at::Tensor t = sae.param(spec.name);
    if (t.sizes() != at::IntArrayRef(spec.shape))
      fail("{}: cannot save parameter '{}' of shape {}, expected {} (d_in={}, d_sae={})", dir,
           spec.name, shape_str(t.sizes()), shape_str(spec.shape), cfg.d_in, cfg.d_sae);
    // Each parameter is written in its own dtype, bit for bit; loading converts to cfg.dtype.
    tensors.emplace_back(spec.name, t.detach().to(torch::kCPU).contiguous());
  }
  for (const auto& [name, t] : sae.params()) {
    bool known = false;
    for (const auto& spec : specs) known = known || spec.name == name;
    if (!known)
      fail("{}: cannot save parameter '{}': a {} SAE has only {}", dir, name, cfg.architecture,
           spec_names(specs));
  }
  std::optional<at::Tensor> sparsity;
  if (log10_feature_sparsity && log10_feature_sparsity->defined()) {
    at::Tensor s = log10_feature_sparsity->detach().to(torch::kCPU);
    if (s.dim() != 1 || s.size(0) != cfg.d_sae)
      fail("{}: sparsity must have shape [{}] (d_sae), got {}", dir, cfg.d_sae,
           shape_str(s.sizes()));
    if (!s.is_floating_point()) s = s.to(torch::kFloat);
    sparsity = s.contiguous();
  }

  make_dirs(dir);
  save_safetensors(dir + "/sae_weights.safetensors", tensors);
  if (sparsity) save_safetensors(dir + "/sparsity.safetensors", {{"sparsity", *sparsity}});
  write_json_atomic(dir + "/cfg.json", cfg.to_json());
}

std::unique_ptr<Sae> load_sae(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: no such SAE directory", path);
  const bool is_dir = fs::is_directory(path, ec);
  if (!is_dir) {
    if (fs::path(path).extension() == ".npz") return load_gemmascope(path);
    fail("{}: expected an SAE directory (cfg.json + sae_weights.safetensors) or a params.npz",
         path);
  }
  const std::string cfg_path = path + "/cfg.json";
  if (!fs::exists(cfg_path, ec)) {
    if (fs::exists(path + "/params.npz", ec)) return load_gemmascope(path);
    fail(
        "{}: no cfg.json (expected an SAELens SAE directory with cfg.json and "
        "sae_weights.safetensors, or GemmaScope's params.npz)",
        path);
  }
  const std::string weights_path = path + "/sae_weights.safetensors";
  if (!fs::exists(weights_path, ec)) fail("{}: no sae_weights.safetensors next to cfg.json", path);
  SaeConfig cfg = SaeConfig::from_json(read_json_file(cfg_path), cfg_path);
  return make_sae_from_tensors(cfg, load_safetensors(weights_path), weights_path);
}

}  // namespace saelab
