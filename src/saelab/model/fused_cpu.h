// The forward's elementwise stages as single-pass CPU loops, for float32 contiguous tensors
// outside autograd: LayerNorm, the MLP's tanh-form GELU, and the attention scores' scale, causal
// mask and softmax. ATen runs each of these as two to eight passes over tensors of 6-25 MB per
// GPT-2-small block at 2048 tokens.
//
// Each stage is split at its hook points, and the runtime calls the same functions whether or not
// a hook or the cache wants the intermediate: an activation has the same bits whichever other
// hooks a pass records (the store's cached activations equal a plain forward's).
//
// Each function returns false, touching nothing, when it does not apply (another dtype or device,
// a non-contiguous tensor, a tensor that needs a gradient); the caller then runs the ATen ops.
// `out` may be the input itself (in place).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace saelab {

// What every function below needs of each tensor it reads or writes: defined, on the CPU,
// float32, contiguous, and outside autograd (grad mode off, or no gradient needed). Callers ask it
// before allocating an output, so that other devices allocate nothing for a loop they skip.
bool fused_cpu_applies(const at::Tensor& t);

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GELU's tanh form (gelu_new, gelu_fast,
// gelu_pytorch_tanh), computed as the identical x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3))):
// one exp instead of a tanh, and no cancellation in 1 + tanh for negative x.
bool gelu_tanh_cpu(const at::Tensor& x, const at::Tensor& out);

// LayerNorm of x [..., d] over its last dimension, TransformerLens's hook_scale split:
// layer_norm_stats_cpu fills mean and scale [..., 1] (scale = sqrt(var + eps), var the biased
// variance of x - mean; sums in float64); layer_norm_apply_cpu writes
// out = (x - mean) / scale * w + b (w, b may be undefined), the same float operations in the same
// order as ATen's elementwise form.
bool layer_norm_stats_cpu(const at::Tensor& x, double eps, at::Tensor& mean, at::Tensor& scale);
bool layer_norm_apply_cpu(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& scale,
                          const at::Tensor& w, const at::Tensor& b, const at::Tensor& out);

// Attention scores [..., q, k] with q == k; row i of each [q, k] block may attend keys j <= i,
// and j > i - window too when window > 0.
// scale_and_mask_scores_cpu: in place, allowed entries divided by scale, the others -inf (the
// input of hook_attn_scores). softmax_scores_cpu: softmax of each row (a row that is -inf
// throughout gives zeros, as TransformerLens's NaN-to-zero does). causal_softmax_cpu: both, one
// row at a time, in place: the same bits as the two calls in turn.
bool scale_and_mask_scores_cpu(const at::Tensor& scores, double scale, int64_t window);
bool softmax_scores_cpu(const at::Tensor& scores, const at::Tensor& out);
bool causal_softmax_cpu(const at::Tensor& scores, double scale, int64_t window);

}  // namespace saelab
