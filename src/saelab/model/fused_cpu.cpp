// fused_cpu.h's loops. This file is compiled with -fopenmp (and, with SAELAB_NATIVE, for the
// building CPU) and without the shared precompiled header (CMakeLists.txt): its loops are
// `omp simd` loops the compiler vectorises, exp included.
#include "saelab/model/fused_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace saelab {

namespace {

int num_threads() { return std::max(1, at::get_num_threads()); }

bool applies(const at::Tensor& in, const at::Tensor& out) {
  return fused_cpu_applies(in) && fused_cpu_applies(out) && in.sizes() == out.sizes();
}

// exp(x) within ~2 ulp (Cephes's expf): x = n ln2 + r with n an integer and |r| <= ln2/2, exp(r)
// by a degree-7 polynomial, 2^n built in the exponent bits. Below -87.3 it returns 0 (e^x is
// below float's smallest normal there; e^-inf = 0); above 88 it returns e^88 = 1.7e38, not inf.
// NaN stays NaN (every comparison is false for it). Plain arithmetic, so calling loops vectorise.
inline float exp_f32(float x) {
  const bool underflow = x < -87.3f;
  x = underflow ? -87.3f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (|x / ln2| < 2^22 here).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n ln2, with ln2 split in two so that n * 0.693359375 is exact.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : p * scale;
}

// Keys row i may attend: [lo, hi).
struct Band {
  int64_t lo, hi;
};
inline Band band(int64_t i, int64_t window) {
  return {window > 0 ? std::max<int64_t>(0, i - window + 1) : 0, i + 1};
}

// Divided, not multiplied by 1/scale: the same rounding as ATen's scores / scale.
inline void scale_and_mask_row(float* row, int64_t k, Band b, float scale, bool divide) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  std::fill(row, row + b.lo, kNegInf);
  if (divide) {
#pragma omp simd
    for (int64_t j = b.lo; j < b.hi; ++j) row[j] = row[j] / scale;
  }
  std::fill(row + b.hi, row + k, kNegInf);
}

// Over the whole row (masked entries are -inf and add exact zeros), so the sums' order is the
// same whichever path produced the row.
inline void softmax_row(const float* in, float* out, int64_t k) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < k; ++j) m = std::max(m, in[j]);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(out, out + k, 0.0f);
    return;
  }
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < k; ++j) {
    const float e = exp_f32(in[j] - m);
    out[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < k; ++j) out[j] *= inv;
}

bool square_scores(const at::Tensor& s) {
  return s.dim() >= 2 && s.size(-1) == s.size(-2) && s.size(-1) > 0;
}

// f(row, i, k) on every row of square scores [..., k, k] in place, i the row's query position;
// false when the scores do not apply.
template <typename F>
bool for_each_score_row(const at::Tensor& scores, F&& f) {
  if (!fused_cpu_applies(scores) || !square_scores(scores)) return false;
  const int64_t k = scores.size(-1), rows = scores.numel() / k;
  float* base = scores.data_ptr<float>();
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) f(base + r * k, r % k, k);
  return true;
}

}  // namespace

// Weights that require grad are read freely under a NoGradGuard.
bool fused_cpu_applies(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
         !(at::GradMode::is_enabled() && t.requires_grad());
}

bool gelu_tanh_cpu(const at::Tensor& x, const at::Tensor& out) {
  if (!applies(x, out)) return false;
  const float* in = x.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n = x.numel();
  // -2 sqrt(2/pi) and -2 sqrt(2/pi) 0.044715.
  const float a = -1.5957691216057308f, b = -0.07135481627159562f;
#pragma omp parallel for simd num_threads(num_threads()) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float v = in[i], t = v * (a + b * (v * v));
    // Past exp_f32's clamp the factor 1 / (1 + e^t) is below 1e-38: the result is v * 0 (a
    // signed zero; NaN for -inf, as the tanh form gives).
    o[i] = t > 88.0f ? v * 0.0f : v / (1.0f + exp_f32(t));
  }
  return true;
}

bool layer_norm_stats_cpu(const at::Tensor& x, double eps, at::Tensor& mean, at::Tensor& scale) {
  if (!fused_cpu_applies(x) || x.dim() < 1 || x.size(-1) == 0) return false;
  std::vector<int64_t> stat_shape = x.sizes().vec();
  stat_shape.back() = 1;
  mean = at::empty(stat_shape, x.options());
  scale = at::empty(stat_shape, x.options());
  const int64_t d = x.size(-1), rows = x.numel() / d;
  const float* in = x.data_ptr<float>();
  float *mp = mean.data_ptr<float>(), *sp = scale.data_ptr<float>();
  const float e = float(eps);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * d;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) sum += row[j];
    const float mu = float(sum / double(d));
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < d; ++j) {
      const float c = row[j] - mu;  // the centred value the output divides
      sq += double(c) * double(c);
    }
    mp[r] = mu;
    sp[r] = std::sqrt(float(sq / double(d)) + e);
  }
  return true;
}

bool layer_norm_apply_cpu(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& scale,
                          const at::Tensor& w, const at::Tensor& b, const at::Tensor& out) {
  if (!applies(x, out) || x.dim() < 1 || x.size(-1) == 0) return false;
  const int64_t d = x.size(-1), rows = x.numel() / d;
  if (!fused_cpu_applies(mean) || !fused_cpu_applies(scale) || mean.numel() != rows ||
      scale.numel() != rows)
    return false;
  if ((w.defined() && (!fused_cpu_applies(w) || w.numel() != d)) ||
      (b.defined() && (!fused_cpu_applies(b) || b.numel() != d)))
    return false;
  const float *in = x.data_ptr<float>(), *mp = mean.data_ptr<float>(),
              *sp = scale.data_ptr<float>();
  const float* wp = w.defined() ? w.data_ptr<float>() : nullptr;
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * d;
    float* orow = o + r * d;
    const float mu = mp[r], s = sp[r];
    if (wp && bp) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) orow[j] = (row[j] - mu) / s * wp[j] + bp[j];
    } else if (wp) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) orow[j] = (row[j] - mu) / s * wp[j];
    } else if (bp) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) orow[j] = (row[j] - mu) / s + bp[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) orow[j] = (row[j] - mu) / s;
    }
  }
  return true;
}

bool scale_and_mask_scores_cpu(const at::Tensor& scores, double scale, int64_t window) {
  const float s = float(scale);
  return for_each_score_row(scores, [&](float* row, int64_t i, int64_t k) {
    scale_and_mask_row(row, k, band(i, window), s, scale != 1.0);
  });
}

bool softmax_scores_cpu(const at::Tensor& scores, const at::Tensor& out) {
  if (!applies(scores, out) || !square_scores(scores)) return false;
  const int64_t k = scores.size(-1), rows = scores.numel() / k;
  const float* in = scores.data_ptr<float>();
  float* o = out.data_ptr<float>();
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) softmax_row(in + r * k, o + r * k, k);
  return true;
}

bool causal_softmax_cpu(const at::Tensor& scores, double scale, int64_t window) {
  const float s = float(scale);
  return for_each_score_row(scores, [&](float* row, int64_t i, int64_t k) {
    scale_and_mask_row(row, k, band(i, window), s, scale != 1.0);
    softmax_row(row, row, k);
  });
}

}  // namespace saelab
