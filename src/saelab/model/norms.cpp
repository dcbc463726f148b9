// LayerNorm and RMSNorm with TransformerLens's hook points. LN: hook_scale = sqrt(var + eps) of
// the centred input, hook_normalized = (x - mean) / scale * w + b. RMS: hook_scale =
// sqrt(mean(x^2) + eps), hook_normalized = x / scale (before the weight), output = that * w.
#include <torch/torch.h>

#include "saelab/core/error.h"
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
    at::Tensor centred = x - x.mean(-1, /*keepdim=*/true);
    at::Tensor scale = (centred.pow(2).mean(-1, true) + cfg.eps).sqrt();
    scale = run_hook(hs, prefix, "hook_scale", scale);
    at::Tensor out = centred / scale;
    if (nw.w.defined()) out = out * nw.w;
    if (nw.b.defined()) out = out + nw.b;
    return run_hook(hs, prefix, "hook_normalized", out);
  }
  at::Tensor scale = (x.pow(2).mean(-1, true) + cfg.eps).sqrt();
  scale = run_hook(hs, prefix, "hook_scale", scale);
  at::Tensor normalized = run_hook(hs, prefix, "hook_normalized", x / scale);
  return nw.w.defined() ? normalized * nw.w : normalized;
}

}  // namespace saelab
