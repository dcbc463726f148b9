// Internal to the runtime: the prepared weights of each block and the functions that compute one
// part of a block (norms.cpp, attention.cpp, mlp.cpp, rotary.cpp). transformer.cpp wires them up.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "saelab/model/hooks.h"
#include "saelab/model/model_config.h"

namespace saelab {

enum class NormKind { LN, RMS, None };
NormKind norm_kind(const ModelConfig& cfg);

struct NormWeights {
  at::Tensor w, b;  // b undefined for RMS (and for an LN without bias)
};

struct AttnWeights {
  // Heads flattened so that one matmul computes all of them: W_Q [d_model, n_heads*d_head], ...
  at::Tensor W_Q, b_Q, W_K, b_K, W_V, b_V;  // b_* undefined when absent
  at::Tensor W_QKV, b_QKV;                  // the three fused, when q/k/v read the same input
  at::Tensor W_O;                           // [n_heads, d_head, d_model] (for hook_result)
  at::Tensor W_O_flat;                      // [n_heads*d_head, d_model]
  at::Tensor b_O;                           // undefined when absent
  bool local = false;
};

struct MlpWeights {
  at::Tensor W_in, b_in, W_gate, W_out, b_out;  // W_gate only for gated MLPs; b_* may be undefined
};

struct BlockWeights {
  NormWeights ln1, ln2, ln1_post, ln2_post;
  AttnWeights attn;
  MlpWeights mlp;
};

struct TransformerWeights {
  at::Tensor W_E, W_pos, W_U, b_U;
  NormWeights ln_final;
  std::vector<BlockWeights> blocks;
};

// transformer_weights.cpp: checks cfg (filling n_key_value_heads 0 -> n_heads) and the weights
// (missing / mis-shaped / unexpected names, dtype unified, TL buffers dropped), then flattens them.
void validate_model(ModelConfig& cfg, std::map<std::string, at::Tensor>& weights);
std::unique_ptr<TransformerWeights> prepare_weights(const ModelConfig& cfg,
                                                    const std::map<std::string, at::Tensor>& w);

// Calls the hook at prefix + name only when a hook or the cache is active (saves string building).
inline at::Tensor run_hook(HookState& hs, const std::string& prefix, const char* name,
                           at::Tensor x) {
  if (hs.empty()) return x;
  return hs(prefix + name, std::move(x));
}

// LayerNorm / RMSNorm / identity with hooks prefix + "hook_scale" and prefix + "hook_normalized"
// (prefix e.g. "blocks.0.ln1."). LN: hook_normalized is after w and b; RMS: before w.
at::Tensor apply_norm(const ModelConfig& cfg, NormKind kind, const NormWeights& nw,
                      const at::Tensor& x, HookState& hs, const std::string& prefix);

// Rotary tables for positions 0..pos-1: sin and cos [pos, rotary_dim].
struct RotaryTables {
  at::Tensor sin, cos;
};

// The attention sub-layer of block `prefix` ("blocks.L."): x [batch, pos, d_model] is ln1's
// output; shortformer_pos (or undefined) is added to the query and key inputs only.
// Returns the attention output before any post-norm, [batch, pos, d_model].
at::Tensor attention_forward(const ModelConfig& cfg, const AttnWeights& w, const at::Tensor& x,
                             const at::Tensor& shortformer_pos, const RotaryTables* rotary,
                             HookState& hs, const std::string& prefix);

// x W + b over the last dimension of x [..., d_in] (W [d_in, d_out]; b [d_out] or undefined):
// with a bias, one addmm, whose GEMM writes the output once with the bias in it; a matmul and then
// add_ write it twice, and OpenBLAS zeroes a β = 0 output before the product (mlp.cpp).
at::Tensor linear(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b);

// The MLP sub-layer (plain or gated) of block `prefix`, before any post-norm.
at::Tensor mlp_forward(const ModelConfig& cfg, const MlpWeights& w, const at::Tensor& x,
                       HookState& hs, const std::string& prefix);
// act_fn by TransformerLens/HF name; unknown names are an error.
at::Tensor apply_activation(const std::string& act_fn, const at::Tensor& x);
void check_activation_name(const std::string& act_fn);

}  // namespace saelab
