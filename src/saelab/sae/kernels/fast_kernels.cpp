// CPU loops of the CSR kernels (see fast_kernels.h). Contiguous rows, dispatch on float/double,
// parallel over tokens (decode, gather) or over latent ranges (scatter: no two threads write the
// same row, so no atomics). This file is built with -fopenmp (CMakeLists.txt), so at::parallel_for
// runs on LibTorch's OpenMP threads; compiled without it, at::parallel_for is a plain serial call.
#include "saelab/sae/kernels/fast_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "saelab/sae/kernels/prefetch.h"

#ifndef SAELAB_HAVE_CUDA_KERNELS
#define SAELAB_HAVE_CUDA_KERNELS 0
#endif
#if SAELAB_HAVE_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>

#include "saelab/sae/kernels/csr_cuda.h"
#endif

namespace saelab::fast {
namespace {

// The inner loops, vectorised by OpenMP's simd (a pragma may not stand inside the
// AT_DISPATCH macro's argument, so they live here).
template <typename T>
__attribute__((always_inline)) inline void axpy(T* __restrict out, const T* __restrict x, T a,
                                                int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] += a * x[i];
}
template <typename T>
__attribute__((always_inline)) inline T dot(const T* __restrict a, const T* __restrict b,
                                            int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

bool g_force_aten = false;

// Columns per pass of the kernels that read rows of W [R, D] in the entries' order. A decoder row
// is read by N·k/R entries on average (16 at batch 4096, k 32, d_sae 8192), but at d_in 2304 the
// 75 MB decoder does not stay in the last-level cache between them, so every entry's row comes
// from memory. Passes over equal column slices (multiples of 16) whose [R, slice] blocks fit in
// about 16 MiB read each block from memory about once (8 and 32 did worse at d_in 2304).
int64_t column_slice(int64_t R, int64_t D, int64_t elem_bytes) {
  return slice_width(D, passes_for(R * D * elem_bytes, int64_t{16} << 20));
}

#if SAELAB_HAVE_CUDA_KERNELS
// The CUDA kernels take contiguous rows of float or double on one CUDA device.
bool cuda_kernels_apply(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts)
    if (!t->is_cuda() || !t->is_contiguous()) return false;
  const at::ScalarType st = (*ts.begin())->scalar_type();
  return !g_force_aten && (st == at::kFloat || st == at::kDouble);
}

void* cuda_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// The entries grouped by latent for the scatter kernel: perm sorts them by column, stably (so each
// latent's entries stay in token order); latent s owns perm[col_ptr[s] .. col_ptr[s+1]).
struct ByLatent {
  at::Tensor col_ptr, perm, rows;
};
ByLatent by_latent(const at::Tensor& row_ptr, const at::Tensor& col, int64_t S) {
  auto sorted = at::sort(col, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor col_ptr = at::searchsorted(std::get<0>(sorted), at::arange(S + 1, col.options()));
  return {col_ptr.contiguous(), std::get<1>(sorted).contiguous(), entry_rows(row_ptr).contiguous()};
}
#endif

}  // namespace

bool have_cuda_kernels() { return SAELAB_HAVE_CUDA_KERNELS != 0; }

// Off CPU without the CUDA kernels: ATen gathers and index_add_ (atomics there) over entry_rows.
at::Tensor entry_rows(const at::Tensor& row_ptr) {
  const int64_t n = row_ptr.numel() - 1;
  return at::repeat_interleave(row_ptr.narrow(0, 1, n).sub(row_ptr.narrow(0, 0, n)));
}

void set_force_aten_kernels(bool on) { g_force_aten = on; }
bool force_aten_kernels() { return g_force_aten; }

void csr_decode(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                const at::Tensor& W, at::Tensor& out) {
#if SAELAB_HAVE_CUDA_KERNELS
  if (out.scalar_type() == W.scalar_type() && cuda_kernels_apply({&out, &W, &coef}) &&
      row_ptr.is_contiguous() && col.is_contiguous()) {
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "csr_decode", [&] {
      cuda::csr_decode<scalar_t>(row_ptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                                 coef.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(),
                                 out.data_ptr<scalar_t>(), out.size(0), out.size(1), cuda_stream());
    });
    return;
  }
#endif
  if (!out.is_cpu() || g_force_aten) {
    out.index_add_(0, entry_rows(row_ptr), W.index_select(0, col).mul_(coef.unsqueeze(1)));
    return;
  }
  const int64_t N = out.size(0), D = out.size(1);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), cf = coef.contiguous(), w = W.contiguous();
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  const int64_t E = cl.numel();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "csr_decode", [&] {
    const scalar_t* a = cf.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t DC = column_slice(w.size(0), D, sizeof(scalar_t));
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      for (int64_t q0 = 0; q0 < D; q0 += DC) {
        const int64_t dc = std::min(DC, D - q0);
        const scalar_t* wq = wp + q0;
        for (int64_t n = b; n < e; ++n) {
          scalar_t* on = o + n * D + q0;
          for (int64_t i = r[n]; i < r[n + 1]; ++i) {
            if (i + kPrefetchAhead < E) prefetch_row(wq + c[i + kPrefetchAhead] * D, dc);
            axpy(on, wq + c[i] * D, a[i], dc);
          }
        }
      }
    });
  });
}

at::Tensor csr_gather_dot(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& W,
                          const at::Tensor& v) {
#if SAELAB_HAVE_CUDA_KERNELS
  if (v.scalar_type() == W.scalar_type() && cuda_kernels_apply({&v, &W}) &&
      row_ptr.is_contiguous() && col.is_contiguous()) {
    auto out = at::empty({col.numel()}, v.options());
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "csr_gather_dot", [&] {
      cuda::csr_gather_dot<scalar_t>(row_ptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                                     W.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(), v.size(0), v.size(1), cuda_stream());
    });
    return out;
  }
#endif
  if (!v.is_cpu() || g_force_aten)
    return W.index_select(0, col).mul_(v.index_select(0, entry_rows(row_ptr))).sum(1);
  const int64_t N = v.size(0), D = v.size(1);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), w = W.contiguous(), vc = v.contiguous();
  auto out = at::empty({col.numel()}, v.options());
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  const int64_t E = cl.numel();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "csr_gather_dot", [&] {
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t DC = column_slice(w.size(0), D, sizeof(scalar_t));
    at::parallel_for(0, N, 16, [&](int64_t b, int64_t e) {
      for (int64_t q0 = 0; q0 < D; q0 += DC) {
        const int64_t dc = std::min(DC, D - q0);
        const scalar_t* wq = wp + q0;
        for (int64_t n = b; n < e; ++n) {
          const scalar_t* vn = vp + n * D + q0;
          for (int64_t i = r[n]; i < r[n + 1]; ++i) {
            if (i + kPrefetchAhead < E) prefetch_row(wq + c[i + kPrefetchAhead] * D, dc);
            const scalar_t part = dot(wq + c[i] * D, vn, dc);
            o[i] = q0 == 0 ? part : o[i] + part;
          }
        }
      }
    });
  });
  return out;
}

void csr_scatter_rows(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                      const at::Tensor& v, at::Tensor& out, at::Tensor* coef_sums) {
#if SAELAB_HAVE_CUDA_KERNELS
  if (out.scalar_type() == v.scalar_type() && out.scalar_type() == coef.scalar_type() &&
      cuda_kernels_apply({&out, &v, &coef}) &&
      (!coef_sums ||
       (coef_sums->is_contiguous() && coef_sums->scalar_type() == out.scalar_type()))) {
    const ByLatent g = by_latent(row_ptr, col, out.size(0));
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "csr_scatter_rows", [&] {
      cuda::csc_scatter_rows<scalar_t>(g.col_ptr.data_ptr<int64_t>(), g.perm.data_ptr<int64_t>(),
                                       g.rows.data_ptr<int64_t>(), coef.data_ptr<scalar_t>(),
                                       v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                       coef_sums ? coef_sums->data_ptr<scalar_t>() : nullptr,
                                       out.size(0), out.size(1), cuda_stream());
    });
    return;
  }
#endif
  if (!out.is_cpu() || g_force_aten) {
    out.index_add_(0, col, v.index_select(0, entry_rows(row_ptr)).mul_(coef.unsqueeze(1)));
    if (coef_sums) coef_sums->index_add_(0, col, coef);
    return;
  }
  if (coef_sums && (!coef_sums->is_contiguous() || coef_sums->scalar_type() != v.scalar_type())) {
    coef_sums->index_add_(0, col, coef);
    coef_sums = nullptr;
  }
  const int64_t N = v.size(0), D = v.size(1), S = out.size(0);
  auto rp = row_ptr.contiguous(), cl = col.contiguous(), cf = coef.contiguous(),
       vc = v.contiguous();
  const int64_t* r = rp.data_ptr<int64_t>();
  const int64_t* c = cl.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "csr_scatter_rows", [&] {
    const scalar_t* a = cf.data_ptr<scalar_t>();
    const scalar_t* vp = vc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* sums = coef_sums ? coef_sums->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, S, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* vn = vp + n * D;
        for (int64_t i = r[n]; i < r[n + 1]; ++i) {
          if (c[i] < lo || c[i] >= hi) continue;
          const scalar_t s = a[i];
          scalar_t* row = o + c[i] * D;
          axpy(row, vn, s, D);
          if (sums) sums[c[i]] += s;
        }
      }
    });
  });
}

}  // namespace saelab::fast
