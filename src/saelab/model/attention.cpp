// The attention sub-layer, TransformerLens's AbstractAttention / GroupedQueryAttention:
//   q, k, v = x W + b                      hook_q [b,p,h,e], hook_k / hook_v [b,p,kv,e]
//   rotary models: hook_rot_q, hook_rot_k = rotate(q), rotate(k)
//   scores = q k^T / attn_scale, soft-capped cap*tanh(scores/cap), masked with -inf outside the
//            causal (or local window) band            hook_attn_scores [b,h,q,k]
//   pattern = softmax(scores)                         hook_pattern [b,h,q,k]
//   z = pattern v                                     hook_z [b,p,h,e]
//   out = sum_h z_h W_O[h] + b_O                      (hook_result [b,p,h,d_model] on request)
// GQA: query head i reads key/value head i / (n_heads / n_key_value_heads), as HF's repeat_kv.
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "saelab/core/error.h"
#include "saelab/model/fused_cpu.h"
#include "saelab/model/rotary.h"
#include "saelab/model/transformer_parts.h"

namespace saelab {

namespace {

at::Tensor project(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b, int64_t heads,
                   int64_t d_head) {
  return linear(x, W, b).view({x.size(0), x.size(1), heads, d_head});
}

// True where query i may attend key j: j <= i, and with a window (local layers) also
// j > i - window.
at::Tensor attention_mask(int64_t pos, int64_t window, const at::Device& device) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor i = at::arange(pos, opts).unsqueeze(1), j = at::arange(pos, opts).unsqueeze(0);
  at::Tensor mask = j <= i;
  if (window > 0) mask = mask.logical_and(j > i - window);
  return mask;
}

double attention_scale(const ModelConfig& cfg) {
  if (!cfg.use_attn_scale) return 1.0;
  if (cfg.attn_scale > 0) return cfg.attn_scale;
  return std::sqrt(double(cfg.d_head));
}

// scores [b, h, q, k] -> pattern (before hook_pattern), through hook_attn_scores. On the CPU in
// float32, fused_cpu.h's loops: without soft cap and with nothing wanting the scores, one pass in
// place; otherwise mask, hook, softmax, with the same bits. Elsewhere ATen's ops.
at::Tensor scores_to_pattern(const ModelConfig& cfg, at::Tensor scores, double scale,
                             int64_t window, HookState& hs, const std::string& prefix) {
  const bool no_cap = cfg.attn_scores_soft_cap <= 0;
  const bool scores_wanted = !hs.empty() && hs.wants(prefix + "attn.hook_attn_scores");
  if (no_cap && !scores_wanted && causal_softmax_cpu(scores, scale, window)) return scores;
  if (!no_cap || !scale_and_mask_scores_cpu(scores, scale, window)) {
    if (scale != 1.0) scores = scores / scale;
    if (!no_cap) scores = (scores / cfg.attn_scores_soft_cap).tanh() * cfg.attn_scores_soft_cap;
    at::Tensor mask = attention_mask(scores.size(-1), window, scores.device());
    scores = scores.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  }
  scores = run_hook(hs, prefix, "attn.hook_attn_scores", scores);
  if (fused_cpu_applies(scores)) {
    // Out of place: the cache may hold the scores.
    at::Tensor pattern = at::empty_like(scores);
    if (softmax_scores_cpu(scores, pattern)) return pattern;
  }
  at::Tensor pattern = at::softmax(scores, -1);
  if (!hs.empty()) {
    // A hook may have masked a whole row; TransformerLens turns its NaNs into zeros.
    pattern = at::where(pattern.isnan(), at::zeros_like(pattern), pattern);
  }
  return pattern;
}

}  // namespace

at::Tensor attention_forward(const ModelConfig& cfg, const AttnWeights& w, const at::Tensor& x,
                             const at::Tensor& shortformer_pos, const RotaryTables* rotary,
                             HookState& hs, const std::string& prefix) {
  const int64_t batch = x.size(0), pos = x.size(1);
  const int64_t h = cfg.n_heads, kv = cfg.n_key_value_heads, e = cfg.d_head;
  at::Tensor q, k, v;
  if (shortformer_pos.defined()) {
    // Shortformer: positions enter the query and key inputs only, never V or the residual.
    at::Tensor qk_in = x + shortformer_pos;
    q = project(qk_in, w.W_Q, w.b_Q, h, e);
    k = project(qk_in, w.W_K, w.b_K, kv, e);
    v = project(x, w.W_V, w.b_V, kv, e);
  } else {
    at::Tensor qkv = linear(x, w.W_QKV, w.b_QKV);
    auto parts = qkv.split_with_sizes({h * e, kv * e, kv * e}, -1);
    q = parts[0].view({batch, pos, h, e});
    k = parts[1].view({batch, pos, kv, e});
    v = parts[2].view({batch, pos, kv, e});
  }
  q = run_hook(hs, prefix, "attn.hook_q", q);
  k = run_hook(hs, prefix, "attn.hook_k", k);
  v = run_hook(hs, prefix, "attn.hook_v", v);
  if (rotary) {
    const int64_t r = effective_rotary_dim(cfg);
    q = run_hook(hs, prefix, "attn.hook_rot_q", apply_rotary(q, rotary->sin, rotary->cos, r));
    k = run_hook(hs, prefix, "attn.hook_rot_k", apply_rotary(k, rotary->sin, rotary->cos, r));
  }
  if (kv != h) {
    k = k.repeat_interleave(h / kv, 2);
    v = v.repeat_interleave(h / kv, 2);
  }
  at::Tensor q_ = q.permute({0, 2, 1, 3});  // [b, h, p, e]
  at::Tensor k_ = k.permute({0, 2, 3, 1});  // [b, h, e, p]
  at::Tensor scores = at::matmul(q_, k_);
  const double scale = attention_scale(cfg);
  const int64_t window = w.local ? cfg.window_size : 0;
  at::Tensor pattern = run_hook(hs, prefix, "attn.hook_pattern",
                                scores_to_pattern(cfg, scores, scale, window, hs, prefix));
  at::Tensor z = at::matmul(pattern, v.permute({0, 2, 1, 3})).permute({0, 2, 1, 3});  // [b,p,h,e]
  z = run_hook(hs, prefix, "attn.hook_z", z);
  at::Tensor out;
  if (!hs.empty() && hs.wants(prefix + "attn.hook_result")) {
    // [b,p,h,e] x [h,e,d] -> [b,p,h,d]: each head's write into the residual stream.
    at::Tensor result = at::matmul(z.unsqueeze(-2), w.W_O).squeeze(-2);
    result = run_hook(hs, prefix, "attn.hook_result", result);
    out = result.sum(2);
    if (w.b_O.defined()) out = out + w.b_O;
  } else {
    out = linear(z.reshape({batch, pos, h * e}), w.W_O_flat, w.b_O);
  }
  return out;
}

}  // namespace saelab
