// Sparse kernels of the hand-written k-sparse training step. A batch's active latents
// are kept in CSR form: token n owns entries row_ptr[n] .. row_ptr[n+1]-1, each a latent col[e]
// with a coefficient. Every kernel touches only the decoder/encoder rows of active latents, so a
// topk step costs O(N·k·d_in) here instead of the O(N·d_sae·d_in) of a dense decode.
#pragma once
#include <ATen/core/Tensor.h>

namespace saelab::fast {

// out[n] += Σ_e coef[e] · W[col[e]]          (W [S, D], out [N, D], the sparse decode)
void csr_decode(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                const at::Tensor& W, at::Tensor& out);
// returns d[e] = W[col[e]] · v[n]             (the gradient of a sparse decode w.r.t. coef)
at::Tensor csr_gather_dot(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& W,
                          const at::Tensor& v);
// out[col[e]] += coef[e] · v[n]               (out [S, D]; threads own disjoint latent ranges)
// and, when coef_sums is given, coef_sums[col[e]] += coef[e]   (db_enc from dz)
void csr_scatter_rows(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& coef,
                      const at::Tensor& v, at::Tensor& out, at::Tensor* coef_sums = nullptr);

// The token of each CSR entry: n repeated row_ptr[n+1] − row_ptr[n] times (ATen ops, any device).
at::Tensor entry_rows(const at::Tensor& row_ptr);

// On CUDA tensors the kernels of csr_cuda.h run when the build has them (a CUDA LibTorch and
// nvcc: SAELAB_HAVE_CUDA_KERNELS), with no atomics. Otherwise, off the CPU, every kernel is a few
// ATen gathers and index_add_ calls (atomic on a GPU); tests switch that version on for CPU tensors
// too, to compare it with the loops, and on CUDA tensors to compare it with the CUDA kernels.
void set_force_aten_kernels(bool on);
bool force_aten_kernels();  // the k-sparse step then also uses its ATen selection (fast_sparse.cpp)
bool have_cuda_kernels();   // true when this build compiled csr_cuda.cu

}  // namespace saelab::fast
