// What one GPU thread of each CSR kernel computes (csr_cuda.cu launches them; fast_kernels.h has
// the kernels' contracts). Plain functions of the thread's coordinates, compiled for the device by
// nvcc and for the host by the tests, which run every thread of a grid in turn and compare the
// result with the CPU loops and the ATen versions: the kernels' arithmetic is tested on machines
// without a GPU.
//
// None of them uses atomics: the decode and the gather-dot give each token's entries to one block,
// and the scatter gives each latent's entries (grouped by a stable sort of the columns) to one
// block, so every output element has exactly one writer.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SAELAB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SAELAB_HOST_DEVICE inline
#endif

namespace saelab::fast::csr_body {

// The gather-dot's lanes per entry: one warp.
constexpr int kWarp = 32;

// Thread t of the `threads` of token n's block: for its columns j = t, t + threads, ... < D,
// out[n, j] += Σ_{e in row n} coef[e] · W[col[e], j], the entries in CSR order.
template <typename T>
SAELAB_HOST_DEVICE void decode(int64_t n, int64_t t, int64_t threads, const int64_t* row_ptr,
                               const int64_t* col, const T* coef, const T* W, T* out, int64_t D) {
  const int64_t b = row_ptr[n], e = row_ptr[n + 1];
  T* o = out + n * D;
  for (int64_t j = t; j < D; j += threads) {
    T acc = o[j];
    for (int64_t i = b; i < e; ++i) acc += coef[i] * W[col[i] * D + j];
    o[j] = acc;
  }
}

// Lane `lane` of the warp that handles entry i (a token-n entry): its share of W[col[i]] · v[n],
// the columns j = lane, lane + kWarp, ... < D.
template <typename T>
SAELAB_HOST_DEVICE T gather_dot_lane(int64_t i, int64_t n, int lane, const int64_t* col, const T* W,
                                     const T* v, int64_t D) {
  const T* w = W + col[i] * D;
  const T* x = v + n * D;
  T acc = 0;
  for (int64_t j = lane; j < D; j += kWarp) acc += w[j] * x[j];
  return acc;
}

// The warp's sum of its lanes' shares, in the order of the device's shuffle-down tree
// (offsets 16, 8, 4, 2, 1: lane l adds lane l + offset): the host's version of that reduction.
template <typename T>
SAELAB_HOST_DEVICE T warp_tree_sum(T* lanes) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    for (int l = 0; l < offset; ++l) lanes[l] += lanes[l + offset];
  return lanes[0];
}

// Thread t of latent s's block: for its columns j, out[s, j] += Σ_p coef[e] · v[rows[e], j] over
// the latent's entries e = perm[p], p in [col_ptr[s], col_ptr[s+1]) (perm sorts the entries by
// column, stably, so they come in token order). Thread 0 also adds Σ_p coef[e] to sums[s] when
// sums is given (db_enc from dz).
template <typename T>
SAELAB_HOST_DEVICE void scatter(int64_t s, int64_t t, int64_t threads, const int64_t* col_ptr,
                                const int64_t* perm, const int64_t* rows, const T* coef, const T* v,
                                T* out, T* sums, int64_t D) {
  const int64_t b = col_ptr[s], e = col_ptr[s + 1];
  T* o = out + s * D;
  for (int64_t j = t; j < D; j += threads) {
    T acc = o[j];
    for (int64_t p = b; p < e; ++p) acc += coef[perm[p]] * v[rows[perm[p]] * D + j];
    o[j] = acc;
  }
  if (t == 0 && sums != nullptr) {
    T acc = sums[s];
    for (int64_t p = b; p < e; ++p) acc += coef[perm[p]];
    sums[s] = acc;
  }
}

}  // namespace saelab::fast::csr_body
