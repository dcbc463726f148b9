// Helpers shared by the per-family Hugging Face -> TransformerLens weight converters
// (convert_<family>.cpp). Internal to model/.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

#include "saelab/model/loader.h"

namespace saelab::detail {

// Looks up Hugging Face tensors by name, trying each prefix in turn ("transformer.", "model.", "")
// since checkpoints saved from the base model drop the prefix. Missing tensors are an error
// naming the file and the tensor.
class HfTensors {
 public:
  HfTensors(const StateDict& sd, std::string where, std::vector<std::string> prefixes);
  bool has(const std::string& name) const;
  // The tensor, float32 and contiguous, checked against `shape` when it is given.
  at::Tensor get(const std::string& name, std::vector<int64_t> shape = {}) const;
  const std::string& where() const { return where_; }

 private:
  const at::Tensor* find(const std::string& name) const;
  const StateDict& sd_;
  std::string where_;
  std::vector<std::string> prefixes_;
};

// nn.Linear weight [n*h, m] of a projection into heads -> [n, m, h] (einops "(n h) m -> n m h").
at::Tensor heads_in_from_linear(const at::Tensor& w, int64_t n, int64_t h);
// nn.Linear weight [m, n*h] of the output projection -> [n, h, m] (einops "m (n h) -> n h m").
at::Tensor heads_out_from_linear(const at::Tensor& w, int64_t n, int64_t h);
// Adds the zero biases the runtime expects where the family has none.
void add_zero_biases(const ModelConfig& cfg, StateDict& sd);
// The unembedding: lm_head.weight transposed, or W_E transposed when the embeddings are tied
// (or the checkpoint omits lm_head).
at::Tensor unembed_from(const HfTensors& t, const std::string& lm_head,
                        const at::Tensor& W_E_unscaled, bool tied);

StateDict convert_gpt2(const ModelConfig& cfg, const HfTensors& t);
StateDict convert_gpt_neo(const ModelConfig& cfg, const HfTensors& t);
StateDict convert_llama(const ModelConfig& cfg, const HfTensors& t);  // llama, mistral, qwen2
StateDict convert_gemma2(const ModelConfig& cfg, const HfTensors& t);

}  // namespace saelab::detail
