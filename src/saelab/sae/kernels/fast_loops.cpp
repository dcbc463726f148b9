// Raw OpenMP loops of the k-sparse step's gradients and of the optimiser and trainer passes (see
// fast_loops.h; the selections are in select_loops.cpp). This file is compiled with -fopenmp and
// without the shared precompiled header (CMakeLists.txt), so it includes only the ATen headers it
// needs. Rows or latent blocks are split between threads, and every output element is written by
// exactly one thread, so results do not depend on timing.
#include "saelab/sae/kernels/fast_loops.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "saelab/sae/kernels/loop_common.h"
#include "saelab/sae/kernels/prefetch.h"

namespace saelab::fast {
using namespace loops;

bool raw_loop_ok(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.is_contiguous() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

void sparse_weight_grads(const std::vector<GradGroup>& groups, const at::Tensor& x,
                         at::Tensor& gW_dec, at::Tensor& gW_enc, at::Tensor& gb_enc) {
  // D: the decoder's width (d_out for a transcoder); Di: the encoder's input width.
  const int64_t S = gW_dec.size(0), D = gW_dec.size(1), Di = gW_enc.size(0);
  TORCH_CHECK(raw_loop_ok(x) && raw_loop_ok(gW_dec) && raw_loop_ok(gW_enc) && raw_loop_ok(gb_enc),
              "sparse_weight_grads: expected contiguous CPU float tensors");
  // Groups with entries, and each group's first position in the entry numbering.
  struct Src {
    const int64_t *rp, *col;
    int64_t N, E;
    const GradGroup* g;
  };
  std::vector<Src> src;
  for (const auto& gr : groups) {
    if (!gr.rows.col.defined() || gr.rows.col.numel() == 0) continue;
    TORCH_CHECK((!gr.coef.defined() || (raw_loop_ok(gr.coef) && raw_loop_ok(gr.v))) &&
                    (!gr.dz.defined() || raw_loop_ok(gr.dz)),
                "sparse_weight_grads: expected contiguous CPU float tensors");
    src.push_back({gr.rows.row_ptr.data_ptr<int64_t>(), gr.rows.col.data_ptr<int64_t>(),
                   gr.rows.row_ptr.numel() - 1, gr.rows.col.numel(), &gr});
  }
  // Entries grouped by latent (a counting sort): token, group and entry within the group.
  int64_t E = 0;
  for (const auto& s : src) E += s.E;
  std::vector<int64_t> cptr(S + 1, 0);
  for (const auto& s : src)
    for (int64_t e = 0; e < s.E; ++e) ++cptr[s.col[e] + 1];
  for (int64_t j = 0; j < S; ++j) cptr[j + 1] += cptr[j];
  std::vector<int64_t> next(cptr.begin(), cptr.end() - 1);
  std::vector<int64_t> ent(E), tok(E);
  std::vector<int32_t> grp(E);
  for (size_t gi = 0; gi < src.size(); ++gi) {
    const auto& s = src[gi];
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t e = s.rp[n]; e < s.rp[n + 1]; ++e) {
        const int64_t p = next[s.col[e]]++;
        ent[p] = e;
        tok[p] = n;
        grp[p] = static_cast<int32_t>(gi);
      }
  }
  dispatch_float(gW_dec.scalar_type(), "sparse_weight_grads", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using T = scalar_t;
    const size_t G = src.size();
    std::vector<const T*> cp(G, nullptr), vp(G, nullptr), dp(G, nullptr);
    for (size_t gi = 0; gi < G; ++gi) {
      const GradGroup& gr = *src[gi].g;
      if (gr.coef.defined()) {
        cp[gi] = gr.coef.data_ptr<T>();
        vp[gi] = gr.v.data_ptr<T>();
      }
      if (gr.dz.defined()) dp[gi] = gr.dz.data_ptr<T>();
    }
    const T* xp = x.data_ptr<T>();
    T* gd = gW_dec.data_ptr<T>();
    T* ge = gW_enc.data_ptr<T>();
    T* gb = gb_enc.data_ptr<T>();
    constexpr int64_t JB = 16;  // latents per block: one 64-byte line of a gW_enc row (float)
    const int64_t nblk = (S + JB - 1) / JB;
    // Each token's rows of v and x are read by its k entries, at scattered times; at d_in 2304 the
    // two [N, d] blocks (75 MB at batch 4096) do not stay in the last-level cache between them.
    // Passes over column slices of both whose [N, slice] blocks fit in about 8 MiB read each
    // block from memory about once (8 did better than 4 or 16 here: gradient pass 30-40% less).
    const int64_t rows = src.empty() ? 1 : src[0].N;
    const int64_t want =
        passes_for(rows * (D + Di) * static_cast<int64_t>(sizeof(T)), int64_t{8} << 20);
    const int64_t DS = slice_width(D, want), ES = slice_width(Di, want);
    const int64_t passes = std::max((D + DS - 1) / DS, (Di + ES - 1) / ES);
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<T> enc(JB * Di);
      for (int64_t pass = 0; pass < passes; ++pass) {
        const int64_t d0 = std::min(D, pass * DS), d1 = std::min(D, d0 + DS);
        const int64_t e0 = std::min(Di, pass * ES), e1 = std::min(Di, e0 + ES);
#pragma omp for schedule(dynamic, 4)
        for (int64_t blk = 0; blk < nblk; ++blk) {
          const int64_t j0 = blk * JB, j1 = std::min(S, j0 + JB);
          for (int64_t j = j0; j < j1; ++j) {
            T* dr = gd + j * D;
            T* er = enc.data() + (j - j0) * Di;
            std::fill(dr + d0, dr + d1, T(0));
            std::fill(er + e0, er + e1, T(0));
            T bsum = 0;
            for (int64_t p = cptr[j]; p < cptr[j + 1]; ++p) {
              const int64_t id = ent[p], n = tok[p];
              const int32_t gi = grp[p];
              // The rows of a later entry (tokens are scattered): fetched while this one is summed.
              if (p + kPrefetchAhead < E) {
                const int64_t na = tok[p + kPrefetchAhead];
                const int32_t ga = grp[p + kPrefetchAhead];
                if (cp[ga]) prefetch_row(vp[ga] + na * D + d0, d1 - d0);
                if (dp[ga]) prefetch_row(xp + na * Di + e0, e1 - e0);
              }
              if (cp[gi]) {
                const T c = cp[gi][id];
                const T* vv = vp[gi] + n * D;
#pragma omp simd
                for (int64_t q = d0; q < d1; ++q) dr[q] += c * vv[q];
              }
              if (dp[gi]) {
                const T d = dp[gi][id];
                const T* xv = xp + n * Di;
#pragma omp simd
                for (int64_t q = e0; q < e1; ++q) er[q] += d * xv[q];
                bsum += d;
              }
            }
            if (pass == 0) gb[j] = bsum;
          }
          const int64_t w = j1 - j0;
          for (int64_t q = e0; q < e1; ++q) {
            T* dst = ge + q * S + j0;
            for (int64_t jj = 0; jj < w; ++jj) dst[jj] = enc[jj * Di + q];
          }
        }
      }
    }
  });
}

void adam_update(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, double beta1,
                 double beta2, double eps, double step_size, double bias2_sqrt) {
  const int64_t n = p.numel();
  dispatch_float(p.scalar_type(), "adam_update", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using T = scalar_t;
    T* pp = p.data_ptr<T>();
    const T* gp = g.data_ptr<T>();
    T* mp = m.data_ptr<T>();
    T* vp = v.data_ptr<T>();
    // torch's kernels: mul_(β1).add_(g, 1−β1); mul_(β2).addcmul_(g, g, 1−β2);
    // denom = sqrt(v) / bias2_sqrt + eps; addcdiv_(m, denom, −step_size) = p + (−s·m) / denom.
    const T b1 = static_cast<T>(beta1), c1 = static_cast<T>(1.0 - beta1);
    const T b2 = static_cast<T>(beta2), c2 = static_cast<T>(1.0 - beta2);
    const T bs = static_cast<T>(bias2_sqrt), e = static_cast<T>(eps),
            ns = static_cast<T>(-step_size);
#pragma omp parallel for simd num_threads(num_threads()) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T gi = gp[i];
      const T mi = mp[i] * b1 + c1 * gi;
      const T vi = vp[i] * b2 + c2 * gi * gi;
      mp[i] = mi;
      vp[i] = vi;
      pp[i] = pp[i] + ns * mi / (std::sqrt(vi) / bs + e);
    }
  });
}

double sum_of_squares(const at::Tensor& t) {
  const int64_t n = t.numel();
  double total = 0;
  dispatch_float(t.scalar_type(), "sum_of_squares", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* p = t.data_ptr<scalar_t>();
    double acc = 0;
#pragma omp parallel for simd num_threads(num_threads()) schedule(static) reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) {
      const double x = static_cast<double>(p[i]);
      acc += x * x;
    }
    total = acc;
  });
  return total;
}

bool all_finite(const at::Tensor& t) {
  const int64_t n = t.numel();
  bool finite = true;
  dispatch_float(t.scalar_type(), "all_finite", [&](auto tag_) {
    using T = decltype(tag_);
    const T* p = t.data_ptr<T>();
    // x − x is 0 for every finite x and NaN for ±inf and NaN, so the sum is 0 exactly when all
    // are finite (a branch-free loop the compiler vectorises). One thread: the trainer checks
    // each batch while the read-ahead thread reads the next, and a parallel loop then waits at
    // its barrier for whichever thread the reader displaced (measured 0.3-8 ms a batch, against
    // ~0.5 ms for one thread over 2M floats).
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += p[i] - p[i];
    finite = acc == T(0);
  });
  return finite;
}

at::Tensor explained_variance_sums(const at::Tensor& x, const at::Tensor& x_hat) {
  TORCH_CHECK(raw_loop_ok(x) && raw_loop_ok(x_hat) && x.dim() == 2 && x.sizes() == x_hat.sizes() &&
                  x.scalar_type() == x_hat.scalar_type(),
              "explained_variance_sums: expected two contiguous CPU float tensors [N, d] of one "
              "dtype");
  const int64_t N = x.size(0), d = x.size(1);
  auto out = at::zeros({d + 2}, at::TensorOptions().dtype(at::kDouble));
  double* o = out.data_ptr<double>();
  dispatch_float(x.scalar_type(), "explained_variance_sums", [&](auto tag_) {
    using T = decltype(tag_);
    const T* xp = x.data_ptr<T>();
    const T* hp = x_hat.data_ptr<T>();
    const int nt = static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(N, 1)));
    // Block t of the rows is summed into its own [d + 2]; the blocks are added in order, so the
    // result does not depend on how many threads ran them.
    std::vector<double> part(static_cast<size_t>(nt) * (d + 2), 0.0);
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; ++t) {
      double* acc = part.data() + static_cast<size_t>(t) * (d + 2);
      double* col = acc + 1;
      double resid = 0, sq = 0;
      const int64_t r0 = N * t / nt, r1 = N * (t + 1) / nt;
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * d;
        const T* hr = hp + r * d;
#pragma omp simd reduction(+ : resid, sq)
        for (int64_t q = 0; q < d; ++q) {
          const double xv = static_cast<double>(xr[q]);
          const double e = xv - static_cast<double>(hr[q]);
          resid += e * e;
          sq += xv * xv;
          col[q] += xv;
        }
      }
      acc[0] = resid;
      acc[d + 1] = sq;
    }
    for (int t = 0; t < nt; ++t)
      for (int64_t q = 0; q < d + 2; ++q) o[q] += part[static_cast<size_t>(t) * (d + 2) + q];
  });
  return out;
}

void remove_row_parallel(at::Tensor& g, const at::Tensor& W) {
  const int64_t S = g.size(0), D = g.numel() / std::max<int64_t>(S, 1);
  dispatch_float(g.scalar_type(), "remove_row_parallel", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using T = scalar_t;
    T* gp = g.data_ptr<T>();
    const T* wp = W.data_ptr<T>();
#pragma omp parallel for num_threads(num_threads()) schedule(static)
    for (int64_t r = 0; r < S; ++r) {
      T* gr = gp + r * D;
      const T* wr = wp + r * D;
      double dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t q = 0; q < D; ++q)
        dot += static_cast<double>(gr[q]) * static_cast<double>(wr[q]);
      const T d = static_cast<T>(dot);
#pragma omp simd
      for (int64_t q = 0; q < D; ++q) gr[q] -= d * wr[q];
    }
  });
}

}  // namespace saelab::fast
