// LayerNorm and RMSNorm with TransformerLens's hook points. LN: hook_scale = sqrt(var + eps) of
// the centred input, hook_normalized = (x - mean) / scale * w + b. RMS: hook_scale =
// sqrt(mean(x^2) + eps), hook_normalized = x / scale (before the weight), output = that * w.
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/model/fused_cpu.h"
#include "saelab/model/transformer_parts.h"

namespace saelab {

NormKind norm_kind(const ModelConfig& cfg) {
  const std::string& t = cfg.normalization_type;
  if (t == "LN" || t == "LNPre") return NormKind::LN;
  if (t == "RMS" || t == "RMSPre") return NormKind::RMS;
  if (t == "none" || t.empty()) return NormKind::None;
  fail("model config: normalization_type '{}' is not supported; expected LN, RMS or none", t);
}

at::Tensor apply_norm(const ModelConfig& cfg, NormKind kind, const NormWeights& nw,
                      const at::Tensor& x, HookState& hs, const std::string& prefix) {
  if (kind == NormKind::None) return x;
  if (kind == NormKind::LN) {
    // On the CPU in float32, fused_cpu.h's two loops (statistics, then the output), whether or
    // not hooks want the scale or the output: the same bits either way. Elsewhere ATen's ops.
    at::Tensor mean, scale, centred, out;
    const bool fused = layer_norm_stats_cpu(x, cfg.eps, mean, scale);
    if (!fused) {
      centred = x - x.mean(-1, /*keepdim=*/true);
      scale = (centred.pow(2).mean(-1, true) + cfg.eps).sqrt();
    }
    scale = run_hook(hs, prefix, "hook_scale", scale);
    if (fused) {
      out = at::empty_like(x, at::MemoryFormat::Contiguous);
      // False only when a hook returned a scale the loop does not take (another layout).
      if (!layer_norm_apply_cpu(x, mean, scale, nw.w, nw.b, out)) out = at::Tensor();
    }
    if (!out.defined()) {
      out = (centred.defined() ? centred : x - mean) / scale;
      if (nw.w.defined()) out = out * nw.w;
      if (nw.b.defined()) out = out + nw.b;
    }
    return run_hook(hs, prefix, "hook_normalized", out);
  }
  at::Tensor scale = (x.pow(2).mean(-1, true) + cfg.eps).sqrt();
  scale = run_hook(hs, prefix, "hook_scale", scale);
  at::Tensor normalized = run_hook(hs, prefix, "hook_normalized", x / scale);
  return nw.w.defined() ? normalized * nw.w : normalized;
}

}  // namespace saelab
