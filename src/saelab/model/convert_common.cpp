// Shared pieces of the Hugging Face -> TransformerLens weight conversion: prefixed lookup,
// head reshapes, zero biases, and the dispatch by family.
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/model/loader_internal.h"

namespace saelab {
namespace detail {

HfTensors::HfTensors(const StateDict& sd, std::string where, std::vector<std::string> prefixes)
    : sd_(sd), where_(std::move(where)), prefixes_(std::move(prefixes)) {}

const at::Tensor* HfTensors::find(const std::string& name) const {
  for (auto& p : prefixes_) {
    auto it = sd_.find(p + name);
    if (it != sd_.end()) return &it->second;
  }
  return nullptr;
}

bool HfTensors::has(const std::string& name) const { return find(name) != nullptr; }

at::Tensor HfTensors::get(const std::string& name, std::vector<int64_t> shape) const {
  const at::Tensor* t = find(name);
  if (!t)
    fail("{}: missing tensor '{}{}'", where_, prefixes_.empty() ? "" : prefixes_.front(), name);
  if (!shape.empty() && t->sizes().vec() != shape)
    fail("{}: tensor '{}' has shape {}, expected {} from config.json", where_, name,
         fmt::format("[{}]", fmt::join(t->sizes().vec(), ", ")),
         fmt::format("[{}]", fmt::join(shape, ", ")));
  if (!t->is_floating_point())
    fail("{}: tensor '{}' is {}, expected floating point", where_, name,
         std::string(t->dtype().name()));
  return t->to(at::kFloat).contiguous();
}

at::Tensor heads_in_from_linear(const at::Tensor& w, int64_t n, int64_t h) {
  return w.reshape({n, h, w.size(1)}).permute({0, 2, 1}).contiguous();
}

at::Tensor heads_out_from_linear(const at::Tensor& w, int64_t n, int64_t h) {
  return w.reshape({w.size(0), n, h}).permute({1, 2, 0}).contiguous();
}

void add_zero_biases(const ModelConfig& cfg, StateDict& sd) {
  auto put = [&](const std::string& k, std::vector<int64_t> shape) {
    if (!sd.count(k)) sd[k] = torch::zeros(shape, torch::kFloat);
  };
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    put(b + "attn.b_Q", {cfg.n_heads, cfg.d_head});
    put(b + "attn.b_K", {cfg.n_key_value_heads, cfg.d_head});
    put(b + "attn.b_V", {cfg.n_key_value_heads, cfg.d_head});
    put(b + "attn.b_O", {cfg.d_model});
    if (cfg.d_mlp > 0) {
      put(b + "mlp.b_in", {cfg.d_mlp});
      put(b + "mlp.b_out", {cfg.d_model});
    }
  }
  put("unembed.b_U", {cfg.d_vocab});
}

at::Tensor unembed_from(const HfTensors& t, const std::string& lm_head, const at::Tensor& W_E,
                        bool tied) {
  if (tied) return W_E.t().contiguous();
  return t.get(lm_head, {W_E.size(0), W_E.size(1)}).t().contiguous();
}

}  // namespace detail

StateDict convert_hf_weights(const ModelConfig& cfg, const StateDict& hf,
                             const std::string& where) {
  using namespace detail;
  StateDict sd;
  if (cfg.family == "gpt2")
    sd = convert_gpt2(cfg, HfTensors(hf, where, {"transformer.", ""}));
  else if (cfg.family == "gpt_neo")
    sd = convert_gpt_neo(cfg, HfTensors(hf, where, {"transformer.", ""}));
  else if (cfg.family == "llama" || cfg.family == "mistral" || cfg.family == "qwen2")
    sd = convert_llama(cfg, HfTensors(hf, where, {"model.", ""}));
  else if (cfg.family == "gemma2")
    sd = convert_gemma2(cfg, HfTensors(hf, where, {"model.", ""}));
  else
    fail("{}: no weight conversion for family '{}'", where, cfg.family);
  add_zero_biases(cfg, sd);
  return sd;
}

}  // namespace saelab
