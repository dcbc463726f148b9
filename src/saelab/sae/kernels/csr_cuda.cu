// csr_cuda.h's kernels: one block per token (decode, gather-dot) or per latent (scatter), the
// per-thread work of csr_kernel_bodies.h, no atomics. The gather-dot gives each entry one warp
// and sums the lanes' shares with the shuffle-down tree that warp_tree_sum replays on the host.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "saelab/sae/kernels/csr_cuda.h"
#include "saelab/sae/kernels/csr_kernel_bodies.h"

namespace saelab::fast::cuda {
namespace {

constexpr int kThreads = 256;        // decode and scatter: threads over the D columns
constexpr int kGatherThreads = 128;  // gather-dot: 4 warps, one entry each at a time

// Up to kThreads, a whole number of warps, no more than D needs.
int threads_for(int64_t D) {
  const int64_t warps =
      std::min<int64_t>(kThreads / csr_body::kWarp, (D + csr_body::kWarp - 1) / csr_body::kWarp);
  return int(std::max<int64_t>(1, warps) * csr_body::kWarp);
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) +
                             ": CUDA launch failed: " + cudaGetErrorString(err));
}

template <typename T>
__global__ void decode_kernel(const int64_t* row_ptr, const int64_t* col, const T* coef, const T* W,
                              T* out, int64_t D) {
  csr_body::decode<T>(blockIdx.x, threadIdx.x, blockDim.x, row_ptr, col, coef, W, out, D);
}

template <typename T>
__global__ void gather_dot_kernel(const int64_t* row_ptr, const int64_t* col, const T* W,
                                  const T* v, T* out, int64_t D) {
  const int64_t n = blockIdx.x;
  const int lane = threadIdx.x % csr_body::kWarp, warp = threadIdx.x / csr_body::kWarp;
  const int warps = blockDim.x / csr_body::kWarp;
  for (int64_t i = row_ptr[n] + warp; i < row_ptr[n + 1]; i += warps) {
    T acc = csr_body::gather_dot_lane<T>(i, n, lane, col, W, v, D);
    for (int offset = csr_body::kWarp / 2; offset > 0; offset /= 2)
      acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) out[i] = acc;
  }
}

template <typename T>
__global__ void scatter_kernel(const int64_t* col_ptr, const int64_t* perm, const int64_t* rows,
                               const T* coef, const T* v, T* out, T* sums, int64_t D) {
  csr_body::scatter<T>(blockIdx.x, threadIdx.x, blockDim.x, col_ptr, perm, rows, coef, v, out, sums,
                       D);
}

}  // namespace

template <typename T>
void csr_decode(const int64_t* row_ptr, const int64_t* col, const T* coef, const T* W, T* out,
                int64_t N, int64_t D, void* stream) {
  if (N == 0 || D == 0) return;
  decode_kernel<T><<<unsigned(N), threads_for(D), 0, static_cast<cudaStream_t>(stream)>>>(
      row_ptr, col, coef, W, out, D);
  check_launch("csr_decode");
}

template <typename T>
void csr_gather_dot(const int64_t* row_ptr, const int64_t* col, const T* W, const T* v, T* out,
                    int64_t N, int64_t D, void* stream) {
  if (N == 0) return;
  gather_dot_kernel<T><<<unsigned(N), kGatherThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      row_ptr, col, W, v, out, D);
  check_launch("csr_gather_dot");
}

template <typename T>
void csc_scatter_rows(const int64_t* col_ptr, const int64_t* perm, const int64_t* rows,
                      const T* coef, const T* v, T* out, T* sums, int64_t S, int64_t D,
                      void* stream) {
  if (S == 0) return;
  scatter_kernel<T><<<unsigned(S), threads_for(D), 0, static_cast<cudaStream_t>(stream)>>>(
      col_ptr, perm, rows, coef, v, out, sums, D);
  check_launch("csc_scatter_rows");
}

#define SAELAB_CSR_CUDA_INSTANTIATE(T)                                                             \
  template void csr_decode<T>(const int64_t*, const int64_t*, const T*, const T*, T*, int64_t,     \
                              int64_t, void*);                                                     \
  template void csr_gather_dot<T>(const int64_t*, const int64_t*, const T*, const T*, T*, int64_t, \
                                  int64_t, void*);                                                 \
  template void csc_scatter_rows<T>(const int64_t*, const int64_t*, const int64_t*, const T*,      \
                                    const T*, T*, T*, int64_t, int64_t, void*);
SAELAB_CSR_CUDA_INSTANTIATE(float)
SAELAB_CSR_CUDA_INSTANTIATE(double)
#undef SAELAB_CSR_CUDA_INSTANTIATE

}  // namespace saelab::fast::cuda
