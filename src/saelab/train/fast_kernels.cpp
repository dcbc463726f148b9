// CPU loops of the CSR kernels (see fast_kernels.h). Contiguous rows, dispatch on float/double,
// parallel over tokens (decode, gather) or over latent ranges (scatter: no two threads write the
// same row, so no atomics).
#include "saelab/train/fast_kernels.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace saelab::fast {

void csr_decode(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                const at::Tensor& W, at::Tensor& out) {
  const int64_t N = out.size(0), D = out.size(1);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), cf = coef.contiguous(), w = W.contiguous();
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "csr_decode", [&] {
    const scalar_t* a = cf.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        scalar_t* on = o + n * D;
        for (int64_t i = r[n]; i < r[n + 1]; ++i) {
          const scalar_t s = a[i];
          const scalar_t* row = wp + c[i] * D;
          for (int64_t d = 0; d < D; ++d) on[d] += s * row[d];
        }
      }
    });
  });
}

at::Tensor csr_gather_dot(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& W,
                          const at::Tensor& v) {
  const int64_t N = v.size(0), D = v.size(1);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), w = W.contiguous(), vc = v.contiguous();
  auto out = at::empty({col.numel()}, v.options());
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "csr_gather_dot", [&] {
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* vn = vp + n * D;
        for (int64_t i = r[n]; i < r[n + 1]; ++i) {
          const scalar_t* row = wp + c[i] * D;
          scalar_t acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += row[d] * vn[d];
          o[i] = acc;
        }
      }
    });
  });
  return out;
}

void csr_scatter_rows(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                      const at::Tensor& v, at::Tensor& out) {
  const int64_t N = v.size(0), D = v.size(1), S = out.size(0);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), cf = coef.contiguous(), vc = v.contiguous();
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "csr_scatter_rows", [&] {
    const scalar_t* a = cf.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, S, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* vn = vp + n * D;
        for (int64_t i = r[n]; i < r[n + 1]; ++i) {
          if (c[i] < lo || c[i] >= hi) continue;
          const scalar_t s = a[i];
          scalar_t* row = o + c[i] * D;
          for (int64_t d = 0; d < D; ++d) row[d] += s * vn[d];
        }
      }
    });
  });
}

}  // namespace saelab::fast
