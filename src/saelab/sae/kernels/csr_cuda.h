// The CSR kernels on a CUDA stream (csr_cuda.cu, compiled only when LibTorch has CUDA and
// SAELAB_HAVE_CUDA_KERNELS is then defined). Raw device pointers, contiguous rows of D elements;
// `stream` is a cudaStream_t. What each thread computes is in csr_kernel_bodies.h; fast_kernels.cpp
// calls these for CUDA tensors. T is float or double.
#pragma once
#include <cstdint>

namespace saelab::fast::cuda {

// out[n] += Σ_e coef[e] · W[col[e]] for the N tokens' CSR rows.
template <typename T>
void csr_decode(const int64_t* row_ptr, const int64_t* col, const T* coef, const T* W, T* out,
                int64_t N, int64_t D, void* stream);

// out[e] = W[col[e]] · v[n] for every entry e of token n.
template <typename T>
void csr_gather_dot(const int64_t* row_ptr, const int64_t* col, const T* W, const T* v, T* out,
                    int64_t N, int64_t D, void* stream);

// out[s] += Σ coef[e] · v[rows[e]] over latent s's entries perm[col_ptr[s] .. col_ptr[s+1]), and
// sums[s] += Σ coef[e] when sums is not null, for the S latents.
template <typename T>
void csc_scatter_rows(const int64_t* col_ptr, const int64_t* perm, const int64_t* rows,
                      const T* coef, const T* v, T* out, T* sums, int64_t S, int64_t D,
                      void* stream);

}  // namespace saelab::fast::cuda
