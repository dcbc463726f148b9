// The transformer runtime: one class for every supported family (GPT-2, GPT-Neo, Gemma-2, Llama,
// Mistral, Qwen2, TransformerLens attn-only shortformer, minGPT OthelloGPT), driven by ModelConfig
// and the canonical TransformerLens state-dict weights (model_config.h states the conventions),
// with TransformerLens hook points (hooks.h). Inference only: no KV cache, everything batched.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saelab/model/hooks.h"
#include "saelab/model/model_config.h"

namespace saelab {

struct TransformerWeights;  // prepared per-layer tensors (transformer_parts.h)

class Transformer {
 public:
  // Validates cfg and the weights: a missing, mis-shaped or unexpected weight is a saelab::Error
  // naming it. Floating weights are converted to float32 (float64 kept when W_E is float64).
  // TransformerLens buffers (*.mask, *.IGNORE, *.rotary_sin, *.rotary_cos) are ignored.
  Transformer(ModelConfig cfg, std::map<std::string, at::Tensor> weights);
  ~Transformer();
  Transformer(Transformer&&) noexcept;
  Transformer& operator=(Transformer&&) noexcept;

  const ModelConfig& cfg() const { return cfg_; }
  // The canonical weights after validation (absent optional biases are not inserted); the
  // attention W_Q / W_K / W_V are non-contiguous views of the fused q/k/v matrix the model uses.
  const std::map<std::string, at::Tensor>& weights() const { return weights_; }
  const at::Tensor& weight(const std::string& name) const;  // Error naming a missing one
  bool has_weight(const std::string& name) const { return weights_.count(name) > 0; }
  void to(const at::Device& device);
  at::Device device() const;

  // tokens: [batch, pos] (or [pos], treated as batch 1) integer ids in [0, d_vocab).
  // Returns logits [batch, pos, d_vocab].
  at::Tensor forward(const at::Tensor& tokens) const;

  // The activations at `names` (hook_names()); with return_logits also "logits". Without logits
  // the pass stops as soon as the last named activation has been computed.
  std::map<std::string, at::Tensor> run_with_cache(const at::Tensor& tokens,
                                                   const std::vector<std::string>& names,
                                                   bool return_logits = false) const;
  // Logits with the hooks applied; a hook may replace its activation (same shape).
  at::Tensor run_with_hooks(const at::Tensor& tokens, const std::vector<Hook>& hooks) const;

  // Both at once: hooks applied, then `cache_names` recorded (after the hooks), logits if asked.
  struct RunResult {
    at::Tensor logits;  // undefined when not asked for
    std::map<std::string, at::Tensor> cache;
  };
  RunResult run(const at::Tensor& tokens, const std::vector<Hook>& hooks,
                const std::vector<std::string>& cache_names, bool return_logits) const;

  std::vector<std::string> hook_names() const { return model_hook_names(cfg_); }
  std::vector<int64_t> hook_shape(const std::string& name, int64_t batch, int64_t pos) const {
    return model_hook_shape(cfg_, name, batch, pos);
  }
  int64_t hook_layer(const std::string& name) const { return model_hook_layer(cfg_, name); }
  void check_hook_name(const std::string& name) const { saelab::check_hook_name(cfg_, name); }

  // Runs are under at::NoGradGuard unless enabled here (e.g. for attribution through the model).
  void set_grad_enabled(bool on) { grad_enabled_ = on; }

 private:
  at::Tensor checked_tokens(const at::Tensor& tokens) const;
  void prepare();

  ModelConfig cfg_;
  std::map<std::string, at::Tensor> weights_;
  std::unique_ptr<TransformerWeights> prepared_;
  bool grad_enabled_ = false;
};

}  // namespace saelab
