// The architecture table and what is derived from it (parameter specs, names, FLOP counts), and
// cfg.dtype names.
#include "saelab/sae/registry.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/sae/batchtopk/batchtopk.h"
#include "saelab/sae/gated/gated.h"
#include "saelab/sae/jumprelu/jumprelu.h"
#include "saelab/sae/matryoshka/matryoshka.h"
#include "saelab/sae/sae.h"
#include "saelab/sae/standard/standard.h"
#include "saelab/sae/topk/topk.h"
#include "saelab/sae/training_sae.h"

namespace saelab {

const std::vector<Architecture>& architectures() {
  // Dense products per step: standard/jumprelu's hand-written step does 5 (encode, decode, dL/df,
  // dW_dec, dW_enc) against autograd's 6 (plus dx̃); gated 7 (one encoder product, both decodes,
  // both products with W_decᵀ, dW_dec, one dW_enc) against autograd's 11; the k-sparse steps 1
  // (the encoder) plus 4 sparse products per level (decode, gather-dot, two row scatters), their
  // autograd bodies 3 (encode, dense decode and its dW_dec).
  static const std::vector<Architecture> table = {
      // name, saved_as, inference params, activation_fns, k_sparse, sparsity key, ghost grads,
      // matryoshka,
      // products (fast, autograd, sparse), factories (inference, autograd, hand-written),
      // transcoder
      {"standard",
       "standard",
       {"b_enc"},
       {"relu", "tanh-relu"},
       false,
       "l1_coefficient",
       true,
       false,
       5,
       6,
       0,
       make_standard_sae,
       make_standard_training_sae,
       make_fast_standard_training_sae,
       true},
      {"gated",
       "gated",
       {"b_gate", "b_mag", "r_mag"},
       {"relu"},
       false,
       "l1_coefficient",
       false,
       false,
       7,
       11,
       0,
       make_gated_sae,
       make_gated_training_sae,
       make_fast_gated_training_sae},
      {"topk",
       "topk",
       {"b_enc"},
       {"topk"},
       true,
       "",
       false,
       false,
       1,
       3,
       4,
       make_topk_sae,
       make_topk_training_sae,
       make_fast_topk_training_sae,
       true},
      {"batchtopk",
       "jumprelu",
       {},
       {"relu"},
       true,
       "",
       false,
       false,
       1,
       3,
       4,
       nullptr,
       make_batchtopk_training_sae,
       make_fast_batchtopk_training_sae,
       true},
      {"jumprelu",
       "jumprelu",
       {"b_enc", "threshold"},
       {"relu"},
       false,
       "l0_coefficient",
       false,
       false,
       5,
       6,
       0,
       make_jumprelu_sae,
       make_jumprelu_training_sae,
       make_fast_jumprelu_training_sae,
       true},
      {"matryoshka_batchtopk",
       "jumprelu",
       {},
       {"relu"},
       true,
       "",
       false,
       true,
       1,
       3,
       4,
       nullptr,
       make_matryoshka_training_sae,
       make_fast_matryoshka_training_sae,
       true},
  };
  return table;
}

const Architecture* lookup_architecture(const std::string& name) {
  for (const auto& a : architectures())
    if (a.name == name) return &a;
  return nullptr;
}

std::string architecture_names(bool inference_only) {
  std::string out;
  for (const auto& a : architectures()) {
    if (inference_only && !a.make_sae) continue;
    out += (out.empty() ? "" : " | ") + a.name;
  }
  return out;
}

const Architecture& find_architecture(const std::string& name, const std::string& where) {
  if (const Architecture* a = lookup_architecture(name)) return *a;
  fail("{}: unknown architecture '{}' (expected {})", where, name, architecture_names());
}

std::string saved_architecture(const std::string& architecture, const std::string& activation_fn,
                               const std::string& where) {
  const Architecture* a = lookup_architecture(architecture);
  if (!a)
    fail("{}: unknown architecture '{}' (expected {})", where, architecture, architecture_names());
  if (activation_fn == "relu") return a->saved_as;
  if (activation_fn != "topk" && activation_fn != "tanh-relu")
    fail("{}: activation_fn_str '{}' is not supported (expected relu, tanh-relu or topk)", where,
         activation_fn);
  // SAELens 5 wrote a topk SAE as a standard one with activation_fn_str "topk".
  if (activation_fn == "topk" && a->name == "standard") return "topk";
  for (const auto& fn : a->activation_fns)
    if (fn == activation_fn) return a->saved_as;
  fail("{}: activation_fn_str '{}' with architecture '{}' is not supported", where, activation_fn,
       architecture);
}

std::string transcoder_file_architecture(const std::string& saved_as, bool skip_connection) {
  const Architecture& a = find_architecture(saved_as, "transcoder");
  if (!a.transcoder || !a.make_sae)
    fail("transcoder: architecture '{}' has no transcoder form", saved_as);
  const std::string tail = skip_connection ? "skip_transcoder" : "transcoder";
  return a.name == "standard" ? tail : a.name + "_" + tail;
}

bool parse_transcoder_architecture(const std::string& name, std::string* saved_as,
                                   bool* skip_connection) {
  for (const auto& a : architectures()) {
    if (!a.transcoder || !a.make_sae) continue;
    for (bool skip : {false, true})
      if (transcoder_file_architecture(a.name, skip) == name) {
        *saved_as = a.name;
        *skip_connection = skip;
        return true;
      }
  }
  return false;
}

double training_step_flops(const Architecture& arch, bool fast, int64_t N, int64_t d_in,
                           int64_t d_sae, int64_t k, int64_t levels) {
  const double dense = 2.0 * double(N) * double(d_in) * double(d_sae);
  if (!fast) return arch.dense_products_autograd * dense;
  return arch.dense_products_fast * dense +
         double(arch.sparse_products * levels) * 2.0 * double(N) * double(k) * double(d_in);
}

std::vector<SaeParamSpec> sae_param_specs(const SaeConfig& cfg) {
  const Architecture& a = find_architecture(cfg.architecture, "SAE config");
  const Architecture& saved = find_architecture(a.saved_as, "SAE config");
  if (cfg.is_transcoder() && !saved.transcoder)
    fail("SAE config: a {} SAE cannot be a transcoder (d_out = {})", saved.name, cfg.d_out);
  if (cfg.skip_connection && !cfg.is_transcoder())
    fail("SAE config: skip_connection needs a transcoder (d_out > 0)");
  const int64_t out = cfg.out_dim();
  std::vector<SaeParamSpec> specs = {
      {"W_enc", {cfg.d_in, cfg.d_sae}}, {"W_dec", {cfg.d_sae, out}}, {"b_dec", {out}}};
  for (const auto& name : saved.inference_params) specs.push_back({name, {cfg.d_sae}});
  if (cfg.skip_connection) specs.push_back({"W_skip", {out, cfg.d_in}});
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
  // A trainable architecture saved as another (batchtopk, matryoshka: a JumpReLU with threshold
  // θ) is made as that one, whether the name came from a cfg.json or from code.
  SaeConfig cfg = cfg_in;
  cfg.architecture = find_architecture(cfg.architecture, "SAE config").saved_as;
  if (cfg.d_in <= 0 || cfg.d_sae <= 0)
    fail("SAE config: d_in and d_sae must be positive, got d_in={} d_sae={}", cfg.d_in, cfg.d_sae);
  const auto dtype = sae_scalar_type(cfg.dtype, "SAE config");
  std::unique_ptr<Sae> sae = find_architecture(cfg.architecture, "SAE config").make_sae(cfg);
  for (const auto& spec : sae_param_specs(cfg))
    sae->params()[spec.name] = torch::zeros(spec.shape, torch::TensorOptions().dtype(dtype));
  return sae;
}

}  // namespace saelab
