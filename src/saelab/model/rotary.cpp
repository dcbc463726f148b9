// Rotary position embeddings (see rotary.h). Angles are computed in float64 so long contexts keep
// their precision, then cast to the model's dtype.
#include "saelab/model/rotary.h"

#include <torch/torch.h>

#include <cmath>

#include "saelab/core/error.h"

namespace saelab {

int64_t effective_rotary_dim(const ModelConfig& cfg) {
  return cfg.rotary_dim > 0 ? cfg.rotary_dim : cfg.d_head;
}

at::Tensor rotary_inv_freq(const ModelConfig& cfg) {
  const int64_t r = effective_rotary_dim(cfg);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor inv = 1.0 / at::pow(cfg.rotary_base, at::arange(0, r, 2, opts) / double(r));
  if (!cfg.use_NTK_by_parts_rope) return inv;
  // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between them
  // interpolated (transformers' _compute_llama3_parameters).
  const double factor = cfg.NTK_by_parts_factor;
  const double lo = cfg.NTK_by_parts_low_freq_factor, hi = cfg.NTK_by_parts_high_freq_factor;
  const double old_len = double(cfg.NTK_original_ctx_len);
  const double low_freq_wavelen = old_len / lo, high_freq_wavelen = old_len / hi;
  at::Tensor wavelen = 2.0 * M_PI / inv;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv / factor, inv);
  at::Tensor smooth = (old_len / wavelen - lo) / (hi - lo);
  at::Tensor smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
  at::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

std::pair<at::Tensor, at::Tensor> rotary_sin_cos(const ModelConfig& cfg,
                                                 const at::Tensor& positions,
                                                 at::ScalarType dtype) {
  at::Tensor inv = rotary_inv_freq(cfg).to(positions.device());
  at::Tensor angles = positions.to(at::kDouble).unsqueeze(1) * inv.unsqueeze(0);  // [n, r/2]
  angles = at::cat({angles, angles}, 1);
  return {angles.sin().to(dtype), angles.cos().to(dtype)};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& sin, const at::Tensor& cos,
                        int64_t rotary_dim) {
  const int64_t d_head = x.size(-1);
  at::Tensor x_rot = x.narrow(-1, 0, rotary_dim);
  const int64_t half = rotary_dim / 2;
  at::Tensor rotated_half = at::cat({-x_rot.narrow(-1, half, half), x_rot.narrow(-1, 0, half)}, -1);
  // sin/cos [pos, r] -> [1, pos, 1, r] against x [batch, pos, head, r]
  at::Tensor s = sin.unsqueeze(0).unsqueeze(2), c = cos.unsqueeze(0).unsqueeze(2);
  at::Tensor out = x_rot * c + rotated_half * s;
  if (rotary_dim == d_head) return out;
  return at::cat({out, x.narrow(-1, rotary_dim, d_head - rotary_dim)}, -1);
}

}  // namespace saelab
