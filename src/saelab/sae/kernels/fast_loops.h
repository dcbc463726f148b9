// Raw CPU loops of the k-sparse training step and of the optimiser, compiled with OpenMP
// (fast_loops.cpp and select_loops.cpp are built with -fopenmp, without the shared precompiled
// header). Every function takes contiguous float32/float64 CPU tensors; the callers keep an ATen
// path for other devices and dtypes (the same code later runs on CUDA).
//
// Selection rule (all the selections): the largest values win; among equal values the one
// that comes first in row-major order wins (per token: the lowest latent; batchtopk: the lowest
// token, then the lowest latent). torch.topk leaves
// ties unspecified, so the selected *set* equals torch.topk's whenever the values at the
// boundary are distinct. NaN is never selected.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace saelab::fast {

// Active entries in CSR form: token n owns entries row_ptr[n] .. row_ptr[n+1]-1, each a latent
// col[e] (int64, increasing within a row) with value val[e] (z's dtype).
struct SparseRows {
  at::Tensor row_ptr, col, val;
};

// The selections read the values z[n, j] + bias[j] (bias [S] of z's dtype, or undefined: none),
// so the encoder's bias is added in the selection pass instead of a pass of its own.
//
// Per token, the (at most) k largest values that are > 0 (topk then ReLU, with the zero entries
// dropped: they carry neither activation nor gradient). If write_back, z becomes the dense
// activations (selected values kept, every other entry 0) in the same pass.
SparseRows topk_rows_positive(at::Tensor& z, const at::Tensor& bias, int64_t k, bool write_back);

// The keep largest values of the whole of z [N, S] that are > 0 (batchtopk: keep = k·N), found
// by a parallel radix histogram on the float bits of the positives and a selection inside the
// one bucket that holds the boundary (no sort of N·S values). write_back as above.
SparseRows topk_batch_positive(at::Tensor& z, const at::Tensor& bias, int64_t keep,
                               bool write_back);

// Per token, the k largest values of z [N, S] among the columns cols (int64 [C], k <= C),
// negative values included (AuxK's top-k over dead latents). z is not modified.
SparseRows topk_rows_of_columns(const at::Tensor& z, const at::Tensor& bias, const at::Tensor& cols,
                                int64_t k);

// The gradients of the sparse decode and encode, each row written exactly once (no zeroing pass,
// no [d_sae, d_in] transpose buffer), over groups of entries (the levels of the selection, AuxK).
// For the entries e of a group, token n(e), latent j(e): with a defined coef, coef_e v[n] is added
// to gW_dec[j] (gW_dec [S, D]; rows of idle latents 0); with a defined dz, dz_e x_n to
// gW_enc[:, j] (gW_enc [D, S]) and dz_e to gb_enc[j]. Groups with no entries are skipped.
struct GradGroup {
  SparseRows rows;
  at::Tensor coef, v;  // decoder term (both undefined: none)
  at::Tensor dz;       // encoder term (undefined: none)
};
void sparse_weight_grads(const std::vector<GradGroup>& groups, const at::Tensor& x,
                         at::Tensor& gW_dec, at::Tensor& gW_enc, at::Tensor& gb_enc);

// True where the raw loops below apply: a defined, contiguous float32/float64 CPU tensor.
bool raw_loop_ok(const at::Tensor& t);

// One fused pass of torch.optim.Adam (no weight decay, no amsgrad) over p, with its gradient g
// and moments m, v (all raw_loop_ok, one dtype, one size), in p's dtype and torch's order:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g·g;  p = p − step_size · m / (√v / bias2_sqrt + eps)
void adam_update(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, double beta1,
                 double beta2, double eps, double step_size, double bias2_sqrt);

// Σ t², accumulated in double from t's own dtype (raw_loop_ok t), in one pass.
double sum_of_squares(const at::Tensor& t);

// True when every element of t (raw_loop_ok) is finite: one read of t on one thread, no [N, d]
// mask.
bool all_finite(const at::Tensor& t);

// The sums behind the explained variance of a batch x [N, d] and its reconstruction x_hat (both
// raw_loop_ok, one dtype, one shape), accumulated in double in one read of each: a float64 CPU
// tensor [d + 2] holding Σ‖x_n − x̂_n‖², then Σ_n x_n (d entries), then Σ‖x_n‖². Sums, so that
// data-parallel ranks can add theirs before dividing.
at::Tensor explained_variance_sums(const at::Tensor& x, const at::Tensor& x_hat);

// For each row r of g and W ([S, D], raw_loop_ok, one dtype): g[r] −= (g[r]·W[r]) W[r], the dot
// accumulated in double (removal of the gradient parallel to unit decoder rows), one pass.
void remove_row_parallel(at::Tensor& g, const at::Tensor& W);

}  // namespace saelab::fast
