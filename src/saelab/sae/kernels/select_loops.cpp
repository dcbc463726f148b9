// Raw OpenMP loops of the k-sparse steps' selections (see fast_loops.h): topk per token, batchtopk
// over the batch, AuxK's top-k over dead latents. Compiled
// like fast_loops.cpp (-fopenmp, no shared precompiled header, CMakeLists.txt). Rows are split
// between threads and every output element is written by exactly one thread, so results do not
// depend on timing.
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/sae/kernels/loop_common.h"

namespace saelab::fast {
using namespace loops;
namespace {

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

// The largest value p[i] + b[i] (b null: p[i]) of [i0, i1), never NaN (-inf when there is
// none): NaN entries are skipped, or at worst hide other entries of the block, which only lowers
// the result.
template <typename T>
[[gnu::always_inline]] inline T block_max(const T* p, const T* b, int64_t i0, int64_t i1) {
  T m = -std::numeric_limits<T>::infinity();
  if (b) {
#pragma omp simd reduction(max : m)
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, p[i] + b[i]);
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, p[i]);
  }
  return m == m ? m : -std::numeric_limits<T>::infinity();
}

// The (at most) k best entries of row[0..S) that are > floor, into heap[0..return). A heap whose
// top is the worst kept entry; 64-wide blocks whose maximum is not above the current bar are
// skipped with one vectorised comparison, so a row costs about one streaming read.
// The values are row[j] + bias[j] (bias may be null: none). maxima: scratch of S/64 + 1 values
// (the group maxima).
template <typename T>
int64_t row_topk(const T* row, const T* bias, int64_t S, int64_t k, T floor, Cand<T>* heap,
                 T* maxima) {
  int64_t cnt = 0;
  T bar = floor;
  constexpr int64_t B = 64;
  // The k-th largest of the maxima of disjoint groups is a lower bound of the row's k-th largest
  // value (the k groups it counts hold k distinct entries at least that large), so entries below
  // it are never kept. Starting the bar there, the heap takes about 1.4·k entries instead of the
  // k·ln(S/k) that a scan from the floor pushes (~180 at k 32, d_sae 8192). About 2k groups (of a
  // multiple of 64 entries, so at most S/64) keep the selection among the maxima short.
  const int64_t G = std::max<int64_t>(1, S / std::max<int64_t>(1, 2 * k) / B) * B;
  const int64_t ng = (S + G - 1) / G;
  if (k > 0 && ng > k) {
    for (int64_t g = 0; g < ng; ++g)
      maxima[g] = block_max(row, bias, g * G, std::min(S, g * G + G));
    std::nth_element(maxima, maxima + (k - 1), maxima + ng, std::greater<T>());
    const T lb = maxima[k - 1];  // v > bar below ⟺ v >= lb
    if (lb > floor) bar = std::nextafter(lb, -std::numeric_limits<T>::infinity());
  }
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

// A row's c selected entries (heap[0..c)) in column order into its padded slot n of the [N, k]
// results.
template <typename T>
void store_row(std::vector<Cand<T>>& heap, int64_t c, int64_t n, int64_t k, int64_t* cp, T* vp) {
  std::sort(heap.begin(), heap.begin() + c,
            [](const Cand<T>& a, const Cand<T>& b) { return a.j < b.j; });
  for (int64_t i = 0; i < c; ++i) {
    cp[n * k + i] = heap[i].j;
    vp[n * k + i] = heap[i].v;
  }
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

// The per-thread candidate lists as one, in thread order (thread t scanned the rows after thread
// t − 1's, so this is row-major order); the parts are freed as they are copied.
template <typename T>
std::vector<Cand<T>> concat(std::vector<std::vector<Cand<T>>>& parts) {
  size_t n = 0;
  for (const auto& c : parts) n += c.size();
  std::vector<Cand<T>> all;
  all.reserve(n);
  for (auto& c : parts) {
    all.insert(all.end(), c.begin(), c.end());
    std::vector<Cand<T>>().swap(c);
  }
  return all;
}

// The candidates v > L of the N rows of S values at zp, in row-major order: thread t
// scans rows [N·t/nt, N·(t+1)/nt) and the per-thread lists are concatenated. False, and nothing
// kept, when there would be more than cap of them. A 64-wide block with no value above L is
// skipped with one vectorised comparison; in the others (about 40% of them at the bound the
// batch selection sets) every value is written and the end of the list advances only past those
// above L, so there is no branch per value to mispredict.
template <typename T>
bool candidates_above(const T* zp, int64_t N, int64_t S, const T* bp, T L, int nt, int64_t cap,
                      std::vector<Cand<T>>& all) {
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
      const T* p = zp + n * S;
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
  all = concat(cand);
  return true;
}

// The selection over the N rows of S values at zp: flat indices,
// CSR columns and the row-major order all refer to the [N, S] prefix.
template <typename T>
SparseRows batch_topk_impl(T* zp, int64_t N, int64_t S, const at::TensorOptions& opts, const T* bp,
                           int64_t keep, bool write_back) {
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
      sample[s] = bp ? zp[n * S + j] + bp[j] : zp[n * S + j];
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
  const bool collected = L > 0 && candidates_above(zp, N, S, bp, L, nt, 8 * keep + 65536, all) &&
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
          scan_above<T, false>(zp + n * S, bp, S, L, [&](int64_t, T v) { ++h[bucket(v)]; });
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
        scan_above<T, true>(zp + n * S, bp, S, lb, [&](int64_t i, T v) {
          if (v > L) out.push_back({v, n * S + i});
        });
    }
    all = concat(cand);
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
      T* row = zp + n * S;
      std::memset(row, 0, sizeof(T) * S);
      for (int64_t e = rp[n]; e < rp[n + 1]; ++e) row[co[e]] = vo[e];
    }
  }
  return s;
}

}  // namespace

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
      std::vector<scalar_t> maxima(S / 64 + 1);
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        scalar_t* row = zp + n * S;
        const int64_t c =
            row_topk<scalar_t>(row, bp, S, k, scalar_t(0), heap.data(), maxima.data());
        store_row(heap, c, n, k, cp, vp);
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
    out = batch_topk_impl<scalar_t>(z.data_ptr<scalar_t>(), z.size(0), z.size(1), z.options(),
                                    bias_ptr<scalar_t>(bias, z), keep, write_back);
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
        store_row(heap, cnt, n, k, cp, vp);
        counts[n] = cnt;
      }
    }
    out = compact<scalar_t>(counts, cols, vals, k);
  });
  return out;
}

}  // namespace saelab::fast
