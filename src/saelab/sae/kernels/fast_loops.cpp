// Raw OpenMP loops of the k-sparse training step and of Adam (see fast_loops.h). This file is
// compiled with -fopenmp and without the shared precompiled header (CMakeLists.txt), so it
// includes only the ATen headers it needs. Threads: at::get_num_threads() (LibTorch sets the same
// OpenMP runtime's thread count); rows or latent blocks are split between threads, and every
// output element is written by exactly one thread, so results do not depend on timing.
#include "saelab/sae/kernels/fast_loops.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "saelab/sae/kernels/prefetch.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace saelab::fast {
namespace {

int num_threads() { return std::max(1, at::get_num_threads()); }
#ifdef _OPENMP
int thread_id() { return omp_get_thread_num(); }
#else
int thread_id() { return 0; }
#endif

// AT_DISPATCH_FLOATING_TYPES takes the body as a macro argument, where #pragma omp is not
// allowed: this is the same dispatch as a function.
template <typename F>
void dispatch_float(at::ScalarType t, const char* what, F&& f) {
  if (t == at::kFloat)
    f(float{});
  else if (t == at::kDouble)
    f(double{});
  else
    TORCH_CHECK(false, what, ": expected float32 or float64, got ", t);
}

at::TensorOptions long_opts() { return at::TensorOptions().dtype(at::kLong); }

// A candidate of a selection: value and column (or flat index). "better" orders the selection
// rule: larger value first, then lower index.
template <typename T>
struct Cand {
  T v;
  int64_t j;
};
template <typename T>
inline bool better(const Cand<T>& a, const Cand<T>& b) {
  return a.v > b.v || (a.v == b.v && a.j < b.j);
}

// The selections keep their k best candidates in a heap whose top is the worst kept one. The
// comparison is a function object, so that it is inlined into the heap operations (a function
// pointer to better was a call per comparison).
template <typename T>
struct WorseOnTop {
  bool operator()(const Cand<T>& a, const Cand<T>& b) const { return better(a, b); }
};
template <typename T>
inline void heap_push(Cand<T>* heap, int64_t& cnt, const Cand<T>& c) {
  heap[cnt++] = c;
  std::push_heap(heap, heap + cnt, WorseOnTop<T>{});
}
// Replaces the top (the worst) of the full heap heap[0..k) by c, which is better than it: one
// sift-down instead of a pop and a push.
template <typename T>
inline void heap_replace_top(Cand<T>* heap, int64_t k, const Cand<T>& c) {
  int64_t i = 0;
  while (true) {
    int64_t w = 2 * i + 1;  // the worse child
    if (w >= k) break;
    if (w + 1 < k && better(heap[w], heap[w + 1])) ++w;
    if (!better(c, heap[w])) break;  // c is worse than both children: its place
    heap[i] = heap[w];
    i = w;
  }
  heap[i] = c;
}

// Whether any value p[i] + b[i] (b null: p[i]) of [i0, i1) is above bar (at or above it when
// Inclusive): the one vectorised comparison with which the selections skip a 64-wide block.
// Always inlined: GCC kept it a call per block, as it had the selection loops around it.
template <typename T, bool Inclusive = false>
[[gnu::always_inline]] inline bool block_has_above(const T* p, const T* b, int64_t i0, int64_t i1,
                                                   T bar) {
  int any = 0;
  if (b) {
#pragma omp simd reduction(| : any)
    for (int64_t i = i0; i < i1; ++i)
      any |= (Inclusive ? p[i] + b[i] >= bar : p[i] + b[i] > bar) ? 1 : 0;
  } else {
#pragma omp simd reduction(| : any)
    for (int64_t i = i0; i < i1; ++i) any |= (Inclusive ? p[i] >= bar : p[i] > bar) ? 1 : 0;
  }
  return any != 0;
}

// The (at most) k best entries of row[0..S) that are > floor, into heap[0..return). A heap whose
// top is the worst kept entry; 64-wide blocks whose maximum is not above the current bar are
// skipped with one vectorised comparison, so a row costs about one streaming read.
// The values are row[j] + bias[j] (bias may be null: none).
template <typename T>
int64_t row_topk(const T* row, const T* bias, int64_t S, int64_t k, T floor, Cand<T>* heap) {
  int64_t cnt = 0;
  T bar = floor;
  constexpr int64_t B = 64;
  for (int64_t j0 = 0; j0 < S; j0 += B) {
    const int64_t j1 = std::min(S, j0 + B);
    if (!block_has_above(row, bias, j0, j1, bar)) continue;
    for (int64_t j = j0; j < j1; ++j) {
      const T v = bias ? row[j] + bias[j] : row[j];
      if (!(v > bar)) continue;  // equal to the bar: the earlier (kept) entry wins
      if (cnt < k) {
        heap_push(heap, cnt, {v, j});
        if (cnt == k) bar = heap[0].v;
      } else {
        heap_replace_top(heap, k, {v, j});
        bar = heap[0].v;
      }
    }
  }
  return cnt;
}

// Padded per-row results [N, k] with counts → CSR (no copy when every row is full).
template <typename T>
SparseRows compact(const std::vector<int64_t>& counts, at::Tensor cols, at::Tensor vals,
                   int64_t k) {
  const int64_t N = static_cast<int64_t>(counts.size());
  SparseRows s;
  s.row_ptr = at::empty({N + 1}, long_opts());
  int64_t* rp = s.row_ptr.data_ptr<int64_t>();
  rp[0] = 0;
  for (int64_t n = 0; n < N; ++n) rp[n + 1] = rp[n] + counts[n];
  const int64_t E = rp[N];
  if (E == N * k) {
    s.col = std::move(cols);
    s.val = std::move(vals);
    return s;
  }
  s.col = at::empty({E}, long_opts());
  s.val = at::empty({E}, vals.options());
  const int64_t* ci = cols.data_ptr<int64_t>();
  const T* vi = vals.data_ptr<T>();
  int64_t* co = s.col.data_ptr<int64_t>();
  T* vo = s.val.data_ptr<T>();
  for (int64_t n = 0; n < N; ++n) {
    std::copy(ci + n * k, ci + n * k + counts[n], co + rp[n]);
    std::copy(vi + n * k, vi + n * k + counts[n], vo + rp[n]);
  }
  return s;
}

// Monotone bucket of a positive value: its top 16 bits (sign 0, so < 32768 buckets).
template <typename T>
inline uint32_t bucket(T v) {
  if constexpr (std::is_same_v<T, float>) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b >> 16;
  } else {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    return static_cast<uint32_t>(b >> 48);
  }
}
template <typename T>
inline T bucket_floor(uint32_t b) {  // the smallest value of bucket b
  if constexpr (std::is_same_v<T, float>) {
    uint32_t u = b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    uint64_t u = static_cast<uint64_t>(b) << 48;
    double d;
    std::memcpy(&d, &u, 8);
    return d;
  }
}
constexpr int64_t kBuckets = 32768;

// Over one row p[0..S) with values p[i] + b[i] (b null: none), blocks of 64 with no value above
// bar are skipped; f(i, v) for every v > bar (or >= bar).
template <typename T, bool Inclusive, typename F>
inline void scan_above(const T* p, const T* b, int64_t S, T bar, F&& f) {
  constexpr int64_t B = 64;
  for (int64_t i0 = 0; i0 < S; i0 += B) {
    const int64_t i1 = std::min(S, i0 + B);
    if (!block_has_above<T, Inclusive>(p, b, i0, i1, bar)) continue;
    for (int64_t i = i0; i < i1; ++i) {
      const T v = b ? p[i] + b[i] : p[i];
      if (Inclusive ? v >= bar : v > bar) f(i, v);
    }
  }
}

// The candidates v > L of the [N, S] prefix of zp (row stride ld), in row-major order: thread t
// scans rows [N·t/nt, N·(t+1)/nt) and the per-thread lists are concatenated. False, and nothing
// kept, when there would be more than cap of them. A 64-wide block with no value above L is
// skipped with one vectorised comparison; in the others (about 40% of them at the bound the
// batch selection sets) every value is written and the end of the list advances only past those
// above L, so there is no branch per value to mispredict.
template <typename T>
bool candidates_above(const T* zp, int64_t N, int64_t S, int64_t ld, const T* bp, T L, int nt,
                      int64_t cap, std::vector<Cand<T>>& all) {
  constexpr int64_t B = 64;
  std::vector<std::vector<Cand<T>>> cand(nt);
  std::vector<char> full(nt, 0);
  const int64_t cap_t = cap / nt + 1;
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_id();
    auto& out = cand[t];
    out.resize(4096);
    int64_t cnt = 0;
    for (int64_t n = N * t / nt; n < N * (t + 1) / nt; ++n) {
      const T* p = zp + n * ld;
      for (int64_t i0 = 0; i0 < S; i0 += B) {
        const int64_t i1 = std::min(S, i0 + B);
        if (!block_has_above(p, bp, i0, i1, L)) continue;
        if (cnt + B > static_cast<int64_t>(out.size())) out.resize(2 * out.size());
        Cand<T>* o = out.data() + cnt;
        for (int64_t i = i0; i < i1; ++i) {
          const T v = bp ? p[i] + bp[i] : p[i];
          *o = {v, n * S + i};
          o += v > L ? 1 : 0;
        }
        cnt = o - out.data();
      }
      if (cnt > cap_t) {
        full[t] = 1;
        break;
      }
    }
    out.resize(cnt);
  }
  for (int t = 0; t < nt; ++t)
    if (full[t]) return false;
  size_t n_all = 0;
  for (auto& c : cand) n_all += c.size();
  all.clear();
  all.reserve(n_all);
  for (auto& c : cand) {
    all.insert(all.end(), c.begin(), c.end());
    std::vector<Cand<T>>().swap(c);
  }
  return true;
}

// The selection over the first S columns of the N rows of zp (row stride ld >= S): flat indices,
// CSR columns and the row-major order all refer to the [N, S] prefix.
template <typename T>
SparseRows batch_topk_impl(T* zp, int64_t N, int64_t S, int64_t ld, const at::TensorOptions& opts,
                           const T* bp, int64_t keep, bool write_back) {
  const int64_t total = N * S;
  const int nt = static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(1, N)));
  // 1. A lower bound L below the boundary from a sample (aiming at ~2·keep values above it), so
  //    that one scan collects the candidates and touches only blocks that hold some. Sample s
  //    reads row s·N/ns at a scattered column: a strided walk of the flat index would see only
  //    the few columns that are multiples of its stride whenever S is (8192 / 512: 16 columns),
  //    and latents differ in scale.
  T L = 0;
  const double frac = static_cast<double>(keep) / static_cast<double>(std::max<int64_t>(total, 1));
  const int64_t ns = std::min<int64_t>(total, 16384);
  if (frac < 0.05 && ns >= 1024) {
    std::vector<T> sample(ns);
    for (int64_t s = 0; s < ns; ++s) {
      const int64_t n = (s * N) / ns;
      const int64_t j = static_cast<int64_t>((static_cast<uint64_t>(s) * 2654435761u) % S);
      sample[s] = bp ? zp[n * ld + j] + bp[j] : zp[n * ld + j];
    }
    const double expect = frac * ns;
    int64_t r = static_cast<int64_t>(std::ceil(2 * expect + 4 * std::sqrt(expect) + 16));
    if (r < ns) {
      std::nth_element(sample.begin(), sample.begin() + r, sample.end(), std::greater<T>());
      L = std::max<T>(0, sample[r]);
    }
  }
  // 2. Usually one scan: every value > L is a candidate. It is redone by histogram when the
  //    sample misjudged: fewer than keep above L, or so many that their list would be large.
  std::vector<Cand<T>> all;
  const bool collected = L > 0 &&
                         candidates_above(zp, N, S, ld, bp, L, nt, 8 * keep + 65536, all) &&
                         static_cast<int64_t>(all.size()) >= keep;
  if (!collected) {
    // Bucket counts of the values > L (per thread, then summed); if fewer than keep, again at 0.
    std::vector<int64_t> hist(kBuckets, 0);
    int64_t above = 0;
    for (;;) {
      std::vector<int64_t> local(static_cast<size_t>(nt) * kBuckets, 0);
#pragma omp parallel num_threads(nt)
      {
        const int t = thread_id();
        int64_t* h = local.data() + static_cast<size_t>(t) * kBuckets;
        for (int64_t n = N * t / nt; n < N * (t + 1) / nt; ++n)
          scan_above<T, false>(zp + n * ld, bp, S, L, [&](int64_t, T v) { ++h[bucket(v)]; });
      }
      std::fill(hist.begin(), hist.end(), 0);
      for (int t = 0; t < nt; ++t)
        for (int64_t b = 0; b < kBuckets; ++b)
          hist[b] += local[static_cast<size_t>(t) * kBuckets + b];
      above = 0;
      for (auto c : hist) above += c;
      if (above >= keep || L == 0) break;
      L = 0;
    }
    // The boundary bucket: entries in buckets above it are all kept.
    T lb = L;  // when above <= keep, every value > L is kept
    int64_t cum = 0;
    if (above > keep) {
      for (int64_t b = kBuckets - 1; b >= 0; --b) {
        if (cum + hist[b] >= keep) {
          lb = std::max(bucket_floor<T>(static_cast<uint32_t>(b)), lb);
          break;
        }
        cum += hist[b];
      }
    }
    // The candidates: v >= lb, all of them > L (at most keep plus the boundary bucket).
    std::vector<std::vector<Cand<T>>> cand(nt);
#pragma omp parallel num_threads(nt)
    {
      const int t = thread_id();
      auto& out = cand[t];
      for (int64_t n = N * t / nt; n < N * (t + 1) / nt; ++n)
        scan_above<T, true>(zp + n * ld, bp, S, lb, [&](int64_t i, T v) {
          if (v > L) out.push_back({v, n * S + i});
        });
    }
    size_t n_all = 0;
    for (auto& c : cand) n_all += c.size();
    all.clear();
    all.reserve(n_all);
    for (auto& c : cand) {
      all.insert(all.end(), c.begin(), c.end());
      std::vector<Cand<T>>().swap(c);
    }
  }
  T bar = L;
  // 3. The exact boundary value and how many entries equal to it are kept (first in order).
  int64_t tie_quota = std::numeric_limits<int64_t>::max();
  if (static_cast<int64_t>(all.size()) > keep) {
    std::vector<T> vals(all.size());
    for (size_t i = 0; i < all.size(); ++i) vals[i] = all[i].v;
    std::nth_element(vals.begin(), vals.begin() + (keep - 1), vals.end(), std::greater<T>());
    bar = vals[keep - 1];
    int64_t gt = 0;
    for (const auto& c : all) gt += c.v > bar ? 1 : 0;
    tie_quota = keep - gt;
  }
  // 4. CSR from the candidates (already in row-major order).
  SparseRows s;
  s.row_ptr = at::empty({N + 1}, long_opts());
  int64_t* rp = s.row_ptr.data_ptr<int64_t>();
  std::fill(rp, rp + N + 1, 0);
  std::vector<Cand<T>> kept;
  kept.reserve(std::min<size_t>(all.size(), static_cast<size_t>(keep)));
  for (const auto& c : all) {
    if (!(c.v > bar)) {
      if (!(c.v == bar) || tie_quota <= 0) continue;
      --tie_quota;
    }
    kept.push_back(c);
    ++rp[c.j / S + 1];
  }
  std::vector<Cand<T>>().swap(all);
  for (int64_t n = 0; n < N; ++n) rp[n + 1] += rp[n];
  const int64_t E = static_cast<int64_t>(kept.size());
  s.col = at::empty({E}, long_opts());
  s.val = at::empty({E}, opts);
  int64_t* co = s.col.data_ptr<int64_t>();
  T* vo = s.val.data_ptr<T>();
  for (int64_t e = 0; e < E; ++e) {
    co[e] = kept[e].j % S;
    vo[e] = kept[e].v;
  }
  // 5. z becomes the dense activations: one row-parallel zeroing and write.
  if (write_back) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      T* row = zp + n * ld;
      std::memset(row, 0, sizeof(T) * S);
      for (int64_t e = rp[n]; e < rp[n + 1]; ++e) row[co[e]] = vo[e];
    }
  }
  return s;
}

}  // namespace

bool raw_loop_ok(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.is_contiguous() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

namespace {
// bias's data (float type of z, [S]) or null when undefined.
template <typename T>
const T* bias_ptr(const at::Tensor& bias, const at::Tensor& z) {
  if (!bias.defined()) return nullptr;
  TORCH_CHECK(
      raw_loop_ok(bias) && bias.scalar_type() == z.scalar_type() && bias.numel() == z.size(1),
      "fast selection: expected a contiguous bias of d_sae entries and z's dtype");
  return bias.data_ptr<T>();
}
}  // namespace

SparseRows topk_rows_positive(at::Tensor& z, const at::Tensor& bias, int64_t k, bool write_back) {
  TORCH_CHECK(raw_loop_ok(z) && z.dim() == 2,
              "topk_rows_positive: expected a contiguous 2-D CPU float tensor");
  const int64_t N = z.size(0), S = z.size(1);
  k = std::max<int64_t>(0, std::min(k, S));
  auto cols = at::empty({N * k}, long_opts());
  auto vals = at::empty({N * k}, z.options());
  std::vector<int64_t> counts(N, 0);
  SparseRows out;
  dispatch_float(z.scalar_type(), "topk_rows_positive", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* bp = bias_ptr<scalar_t>(bias, z);
    int64_t* cp = cols.data_ptr<int64_t>();
    scalar_t* vp = vals.data_ptr<scalar_t>();
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<Cand<scalar_t>> heap(std::max<int64_t>(k, 1));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        scalar_t* row = zp + n * S;
        const int64_t c = row_topk<scalar_t>(row, bp, S, k, scalar_t(0), heap.data());
        std::sort(heap.begin(), heap.begin() + c,
                  [](const Cand<scalar_t>& a, const Cand<scalar_t>& b) { return a.j < b.j; });
        for (int64_t i = 0; i < c; ++i) {
          cp[n * k + i] = heap[i].j;
          vp[n * k + i] = heap[i].v;
        }
        counts[n] = c;
        if (write_back) {
          std::memset(row, 0, sizeof(scalar_t) * S);
          for (int64_t i = 0; i < c; ++i) row[heap[i].j] = heap[i].v;
        }
      }
    }
    out = compact<scalar_t>(counts, cols, vals, k);
  });
  return out;
}

SparseRows topk_batch_positive(at::Tensor& z, const at::Tensor& bias, int64_t keep,
                               bool write_back) {
  TORCH_CHECK(raw_loop_ok(z) && z.dim() == 2,
              "topk_batch_positive: expected a contiguous 2-D CPU float tensor");
  keep = std::max<int64_t>(0, std::min(keep, z.numel()));
  SparseRows out;
  dispatch_float(z.scalar_type(), "topk_batch_positive", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    out = batch_topk_impl<scalar_t>(z.data_ptr<scalar_t>(), z.size(0), z.size(1), z.size(1),
                                    z.options(), bias_ptr<scalar_t>(bias, z), keep, write_back);
  });
  return out;
}

SparseRows topk_batch_positive_prefix(const at::Tensor& z, const at::Tensor& bias, int64_t width,
                                      int64_t keep) {
  TORCH_CHECK(raw_loop_ok(z) && z.dim() == 2 && width >= 0 && width <= z.size(1),
              "topk_batch_positive_prefix: expected a contiguous 2-D CPU float tensor and 0 <= "
              "width <= its columns");
  keep = std::max<int64_t>(0, std::min(keep, z.size(0) * width));
  SparseRows out;
  dispatch_float(z.scalar_type(), "topk_batch_positive_prefix", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    out = batch_topk_impl<scalar_t>(z.data_ptr<scalar_t>(), z.size(0), width, z.size(1),
                                    z.options(), bias_ptr<scalar_t>(bias, z), keep, false);
  });
  return out;
}

SparseRows topk_rows_of_columns(const at::Tensor& z, const at::Tensor& bias,
                                const at::Tensor& cols_in, int64_t k) {
  TORCH_CHECK(raw_loop_ok(z) && z.dim() == 2,
              "topk_rows_of_columns: expected a contiguous 2-D CPU float tensor");
  const int64_t N = z.size(0), S = z.size(1);
  auto cols_t = cols_in.to(at::kLong).contiguous();
  const int64_t C = cols_t.numel();
  const int64_t* cl = cols_t.data_ptr<int64_t>();
  k = std::max<int64_t>(0, std::min(k, C));
  auto cols = at::empty({N * k}, long_opts());
  auto vals = at::empty({N * k}, z.options());
  std::vector<int64_t> counts(N, 0);
  SparseRows out;
  dispatch_float(z.scalar_type(), "topk_rows_of_columns", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* bp = bias_ptr<scalar_t>(bias, z);
    int64_t* cp = cols.data_ptr<int64_t>();
    scalar_t* vp = vals.data_ptr<scalar_t>();
    const scalar_t lowest = -std::numeric_limits<scalar_t>::infinity();
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<Cand<scalar_t>> heap(std::max<int64_t>(k, 1));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* row = zp + n * S;
        int64_t cnt = 0;
        scalar_t bar = lowest;
        for (int64_t c = 0; c < C && k > 0; ++c) {
          const scalar_t v = bp ? row[cl[c]] + bp[cl[c]] : row[cl[c]];
          if (!(v > bar) && cnt == k) continue;
          if (cnt < k) {
            if (!(v > lowest)) continue;
            heap_push(heap.data(), cnt, {v, cl[c]});
            if (cnt == k) bar = heap[0].v;
          } else {
            heap_replace_top(heap.data(), k, {v, cl[c]});
            bar = heap[0].v;
          }
        }
        std::sort(heap.begin(), heap.begin() + cnt,
                  [](const Cand<scalar_t>& a, const Cand<scalar_t>& b) { return a.j < b.j; });
        for (int64_t i = 0; i < cnt; ++i) {
          cp[n * k + i] = heap[i].j;
          vp[n * k + i] = heap[i].v;
        }
        counts[n] = cnt;
      }
    }
    out = compact<scalar_t>(counts, cols, vals, k);
  });
  return out;
}

void sparse_weight_grads(const SparseRows& A, const at::Tensor& dz, const at::Tensor& g,
                         const SparseRows& Z, const at::Tensor& dzz, const at::Tensor& h,
                         const at::Tensor& x, at::Tensor& gW_dec, at::Tensor& gW_enc,
                         at::Tensor& gb_enc) {
  std::vector<GradGroup> groups{{A, A.val, g, dz}};
  if (Z.col.defined() && Z.col.numel() > 0) groups.push_back({Z, Z.val, h, dzz});
  sparse_weight_grads(groups, x, gW_dec, gW_enc, gb_enc);
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
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<T> enc(JB * Di);
#pragma omp for schedule(dynamic, 4)
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t j0 = blk * JB, j1 = std::min(S, j0 + JB);
        for (int64_t j = j0; j < j1; ++j) {
          T* dr = gd + j * D;
          T* er = enc.data() + (j - j0) * Di;
          std::fill(dr, dr + D, T(0));
          std::fill(er, er + Di, T(0));
          T bsum = 0;
          for (int64_t p = cptr[j]; p < cptr[j + 1]; ++p) {
            const int64_t id = ent[p], n = tok[p];
            const int32_t gi = grp[p];
            // The rows of a later entry (tokens are scattered): fetched while this one is summed.
            if (p + kPrefetchAhead < E) {
              const int64_t na = tok[p + kPrefetchAhead];
              const int32_t ga = grp[p + kPrefetchAhead];
              if (cp[ga]) prefetch_row(vp[ga] + na * D, D);
              if (dp[ga]) prefetch_row(xp + na * Di, Di);
            }
            if (cp[gi]) {
              const T c = cp[gi][id];
              const T* vv = vp[gi] + n * D;
#pragma omp simd
              for (int64_t q = 0; q < D; ++q) dr[q] += c * vv[q];
            }
            if (dp[gi]) {
              const T d = dp[gi][id];
              const T* xv = xp + n * Di;
#pragma omp simd
              for (int64_t q = 0; q < Di; ++q) er[q] += d * xv[q];
              bsum += d;
            }
          }
          gb[j] = bsum;
        }
        const int64_t w = j1 - j0;
        for (int64_t q = 0; q < Di; ++q) {
          T* dst = ge + q * S + j0;
          for (int64_t jj = 0; jj < w; ++jj) dst[jj] = enc[jj * Di + q];
        }
      }
    }
  });
}

SparseRows sum_rows(const std::vector<SparseRows>& parts) {
  TORCH_CHECK(!parts.empty(), "sum_rows: expected at least one part");
  const int64_t N = parts[0].row_ptr.numel() - 1;
  struct P {
    const int64_t *rp, *col;
  };
  std::vector<P> ps;
  for (const auto& r : parts) {
    TORCH_CHECK(r.row_ptr.numel() == N + 1 && raw_loop_ok(r.val),
                "sum_rows: expected CSR rows of one batch");
    if (r.col.numel() > 0) ps.push_back({r.row_ptr.data_ptr<int64_t>(), r.col.data_ptr<int64_t>()});
  }
  SparseRows out;
  out.row_ptr = at::empty({N + 1}, long_opts());
  int64_t* rp = out.row_ptr.data_ptr<int64_t>();
  dispatch_float(parts[0].val.scalar_type(), "sum_rows", [&](auto tag_) {
    using T = decltype(tag_);
    std::vector<const T*> vs;
    for (const auto& r : parts)
      if (r.col.numel() > 0) vs.push_back(r.val.data_ptr<T>());
    // Row n's entries of every part, sorted by column (stable: parts in order), duplicates summed.
    auto merge_row = [&](int64_t n, std::vector<Cand<T>>& buf) {
      buf.clear();
      for (size_t q = 0; q < ps.size(); ++q)
        for (int64_t e = ps[q].rp[n]; e < ps[q].rp[n + 1]; ++e)
          buf.push_back({vs[q][e], ps[q].col[e]});
      std::stable_sort(buf.begin(), buf.end(),
                       [](const Cand<T>& a, const Cand<T>& b) { return a.j < b.j; });
      size_t m = 0;
      for (size_t i = 0; i < buf.size(); ++i) {
        if (m > 0 && buf[m - 1].j == buf[i].j)
          buf[m - 1].v += buf[i].v;
        else
          buf[m++] = buf[i];
      }
      buf.resize(m);
    };
    rp[0] = 0;
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<Cand<T>> buf;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        merge_row(n, buf);
        rp[n + 1] = static_cast<int64_t>(buf.size());
      }
    }
    for (int64_t n = 0; n < N; ++n) rp[n + 1] += rp[n];
    out.col = at::empty({rp[N]}, long_opts());
    out.val = at::empty({rp[N]}, parts[0].val.options());
    int64_t* co = out.col.data_ptr<int64_t>();
    T* vo = out.val.data_ptr<T>();
#pragma omp parallel num_threads(num_threads())
    {
      std::vector<Cand<T>> buf;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        merge_row(n, buf);
        for (size_t i = 0; i < buf.size(); ++i) {
          co[rp[n] + static_cast<int64_t>(i)] = buf[i].j;
          vo[rp[n] + static_cast<int64_t>(i)] = buf[i].v;
        }
      }
    }
  });
  return out;
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
