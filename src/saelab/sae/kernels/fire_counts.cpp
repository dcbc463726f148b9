// Column counts of f > 0 (fire_counts.h).
#include "saelab/sae/kernels/fire_counts.h"

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace saelab {
namespace {

// Threads split the columns; each walks every row over its own stripe, adding 0/1 into int32
// counters that stay in cache (no thread writes another's, nothing to reduce afterwards).
template <typename T>
void count_rows(const T* f, int64_t N, int64_t S, int64_t* out) {
  constexpr int64_t kStripe = 4096;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < S; c0 += kStripe) {
    const int64_t w = std::min(kStripe, S - c0);
    std::vector<int32_t> acc(static_cast<size_t>(w), 0);
    int32_t* a = acc.data();
    for (int64_t n = 0; n < N; ++n) {
      const T* row = f + n * S + c0;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) a[j] += row[j] > T(0) ? 1 : 0;
    }
    for (int64_t j = 0; j < w; ++j) out[c0 + j] = a[j];
  }
}

}  // namespace

at::Tensor count_positive_per_column(const at::Tensor& f) {
  const bool raw = f.device().is_cpu() && f.dim() == 2 && f.is_contiguous() &&
                   (f.scalar_type() == at::kFloat || f.scalar_type() == at::kDouble) &&
                   f.size(0) < (int64_t(1) << 31);
  if (!raw) return (f > 0).sum(0).to(at::kLong);
  const int64_t N = f.size(0), S = f.size(1);
  at::Tensor out = at::empty({S}, f.options().dtype(at::kLong));
  if (f.scalar_type() == at::kFloat)
    count_rows(f.data_ptr<float>(), N, S, out.data_ptr<int64_t>());
  else
    count_rows(f.data_ptr<double>(), N, S, out.data_ptr<int64_t>());
  return out;
}

}  // namespace saelab
