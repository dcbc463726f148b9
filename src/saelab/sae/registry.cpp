// The architecture list: parameter names/shapes (REFERENCE.md §3) and factories, and cfg.dtype
// names.
#include "saelab/sae/registry.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/sae/sae.h"

namespace saelab {

const std::vector<std::string>& sae_architectures() {
  static const std::vector<std::string> names = {"standard", "gated", "topk", "jumprelu"};
  return names;
}

bool is_sae_architecture(const std::string& name) {
  const auto& a = sae_architectures();
  return std::find(a.begin(), a.end(), name) != a.end();
}

std::vector<SaeParamSpec> sae_param_specs(const SaeConfig& cfg) {
  const int64_t d_in = cfg.d_in, d_sae = cfg.d_sae;
  std::vector<SaeParamSpec> specs = {
      {"W_enc", {d_in, d_sae}}, {"W_dec", {d_sae, d_in}}, {"b_dec", {d_in}}};
  if (cfg.architecture == "standard" || cfg.architecture == "topk") {
    specs.push_back({"b_enc", {d_sae}});
  } else if (cfg.architecture == "jumprelu" || cfg.architecture == "batchtopk") {
    specs.push_back({"b_enc", {d_sae}});
    specs.push_back({"threshold", {d_sae}});
  } else if (cfg.architecture == "gated") {
    specs.push_back({"b_gate", {d_sae}});
    specs.push_back({"b_mag", {d_sae}});
    specs.push_back({"r_mag", {d_sae}});
  } else {
    fail("unknown SAE architecture '{}' (expected standard, gated, topk, batchtopk or jumprelu)",
         cfg.architecture);
  }
  return specs;
}

at::ScalarType sae_scalar_type(const std::string& dtype, const std::string& where) {
  // SAELens's DTYPE_MAP (sae_lens/constants.py): with or without the "torch." prefix.
  std::string d = dtype.rfind("torch.", 0) == 0 ? dtype.substr(6) : dtype;
  if (d == "float32") return at::kFloat;
  if (d == "float64") return at::kDouble;
  if (d == "float16") return at::kHalf;
  if (d == "bfloat16") return at::kBFloat16;
  fail("{}: dtype '{}' is not one of float32, float64, float16, bfloat16", where, dtype);
}

std::string sae_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    default:
      fail("SAE parameters must be float32, float64, float16 or bfloat16, got {}",
           c10::toString(t));
  }
}

std::unique_ptr<Sae> make_sae(const SaeConfig& cfg_in) {
  // A batchtopk SAE at inference is a JumpReLU with threshold = θ (SAELens saves it so), whether
  // the name came from a cfg.json (from_json maps it already) or from code.
  SaeConfig cfg = cfg_in;
  if (cfg.architecture == "batchtopk") cfg.architecture = "jumprelu";
  if (cfg.d_in <= 0 || cfg.d_sae <= 0)
    fail("SAE config: d_in and d_sae must be positive, got d_in={} d_sae={}", cfg.d_in, cfg.d_sae);
  const auto dtype = sae_scalar_type(cfg.dtype, "SAE config");
  std::unique_ptr<Sae> sae;
  if (cfg.architecture == "standard")
    sae = make_standard_sae(cfg);
  else if (cfg.architecture == "topk")
    sae = make_topk_sae(cfg);
  else if (cfg.architecture == "jumprelu")
    sae = make_jumprelu_sae(cfg);
  else if (cfg.architecture == "gated")
    sae = make_gated_sae(cfg);
  else
    fail("SAE config: unknown architecture '{}' (expected standard, gated, topk or jumprelu)",
         cfg.architecture);
  for (const auto& spec : sae_param_specs(cfg))
    sae->params()[spec.name] = torch::zeros(spec.shape, torch::TensorOptions().dtype(dtype));
  return sae;
}

}  // namespace saelab
