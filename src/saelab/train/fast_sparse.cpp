// The topk and batchtopk training steps written out by hand (issue 7), with a sparse decoder and
// a sparse backward. With x̃ = x − b_dec, z = x̃ W_enc + b_enc (the one dense matmul left), the
// active set A (topk: the k largest z per token; batchtopk: the k·N largest of the batch) is kept
// as CSR entries e = (n, j, a_e = ReLU(z_nj)):
//   x̂_n = b_dec + Σ_{e∈A(n)} a_e W_dec[j]              csr_decode, N·k·d_in work
//   L_mse = (1/N) Σ (x̂ − x)²,  g = 2(x̂ − x)/N
// AuxK (dead latents, REFERENCE §2): the k_aux largest dead z per token (entries (n, j, v_e), no
// ReLU) decode the detached residual e = x − x̂: q_n = Σ v_e W_dec[j] − e_n (sparse, no second
// dense decode), L_aux = c·s·(1/N) Σ q², h = 2·c·s·q/N.
// Backward, only on active entries:
//   dz_e    = (W_dec[j] · g_n) [a_e > 0]  (+ W_dec[j] · h_n for AuxK entries)   csr_gather_dot
//   dW_dec[j] += a_e g_n  (+ v_e h_n)                                          csr_scatter_rows
//   dW_enc[:, j] += dz_e x̃_n,  db_enc[j] += dz_e,  db_dec = Σ_n g − W_enc db_enc
// The [N, d_sae] buffer holds z, then (after selection) the dense feature_acts the trainer reads.
#include <torch/torch.h>

#include <algorithm>

#include "saelab/train/fast_kernels.h"
#include "saelab/train/fast_training_sae.h"
#include "saelab/train/sae_batchtopk.h"

namespace saelab {
namespace {

struct SparseSet {
  at::Tensor row_ptr, col, val, flat;  // flat = n·d_sae + j, for writing feature_acts
};

struct SparseBuffers {
  at::Tensor z;        // [N, d_sae]
  at::Tensor gW_enc_t; // [d_sae, d_in]: dW_encᵀ, scattered by rows then transposed once
};

SparseSet select_topk(const at::Tensor& z, int64_t k) {
  const int64_t N = z.size(0), S = z.size(1);
  auto top = z.topk(k, -1, /*largest=*/true, /*sorted=*/false);
  SparseSet s;
  auto idx = std::get<1>(top);
  s.col = idx.reshape({-1});
  s.val = std::get<0>(top).relu_().reshape({-1});
  s.row_ptr = at::arange(0, N * k + 1, k, idx.options());
  s.flat = (at::arange(N, idx.options()) * S).unsqueeze(1).add(idx).reshape({-1});
  return s;
}

SparseSet select_batch_topk(const at::Tensor& z, int64_t k) {
  const int64_t N = z.size(0), S = z.size(1);
  // topk of z then ReLU keeps the same values as topk of ReLU(z): both are 0 beyond the positives.
  int64_t keep = std::min<int64_t>(k * N, z.numel());
  auto top = z.view({-1}).topk(keep, -1, /*largest=*/true, /*sorted=*/false);
  auto sorted = std::get<1>(top).sort();
  SparseSet s;
  s.flat = std::get<0>(sorted);
  s.val = std::get<0>(top).index_select(0, std::get<1>(sorted)).relu_();
  auto row = at::div(s.flat, S, "floor");
  s.col = s.flat - row * S;
  auto counts = at::bincount(row, {}, N);
  s.row_ptr = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
  return s;
}

TrainStepOutput sparse_step(TrainingSae& sae, SparseBuffers& buf, const at::Tensor& x_in,
                            const StepContext& ctx, bool batch) {
  torch::NoGradGuard ng;
  const auto& cfg = sae.cfg();
  auto& P = sae.params();
  const auto& W_enc = P.at("W_enc");
  const auto& W_dec = P.at("W_dec");
  const auto& b_enc = P.at("b_enc");
  const auto& b_dec = P.at("b_dec");
  auto x = x_in.to(W_enc.scalar_type()).contiguous();
  const int64_t N = x.size(0), S = cfg.d_sae, D = cfg.d_in;
  const double inv_n = 1.0 / static_cast<double>(N);
  if (!buf.z.defined() || buf.z.size(0) != N || buf.z.scalar_type() != W_enc.scalar_type()) {
    buf.z = at::empty({N, S}, W_enc.options());
    buf.gW_enc_t = at::empty({S, D}, W_enc.options());
  }
  auto& z = buf.z;
  auto xt = cfg.apply_b_dec_to_input ? x - b_dec : x;
  at::addmm_out(z, b_enc, xt, W_enc);
  SparseSet A = batch ? select_batch_topk(z, cfg.k) : select_topk(z, std::min(cfg.k, S));

  auto x_hat = b_dec.unsqueeze(0).expand({N, D}).contiguous();
  fast::csr_decode(A.row_ptr, A.col, A.val, W_dec, x_hat);
  auto g = x_hat - x;
  auto g_flat = g.view({-1});
  const double mse = g_flat.dot(g_flat).item<double>() * inv_n;
  g.mul_(2.0 * inv_n);

  // AuxK on the dead latents' columns of z only.
  double aux = 0.0;
  SparseSet Z;
  at::Tensor h;
  int64_t num_dead = ctx.dead_mask.defined() ? ctx.dead_mask.sum().item<int64_t>() : 0;
  if (num_dead > 0) {
    auto dead_idx = ctx.dead_mask.nonzero().squeeze(1);
    int64_t k_aux = std::max<int64_t>(D / 2, 1);
    double scale = std::min(static_cast<double>(num_dead) / k_aux, 1.0);
    k_aux = std::min(k_aux, num_dead);
    auto top = z.index_select(1, dead_idx).topk(k_aux, -1, true, false);
    Z.col = dead_idx.index_select(0, std::get<1>(top).reshape({-1}));
    Z.val = std::get<0>(top).reshape({-1}).contiguous();
    Z.row_ptr = at::arange(0, N * k_aux + 1, k_aux, Z.col.options());
    h = g * (0.5 * N);  // q starts at −e = x̂ − x
    fast::csr_decode(Z.row_ptr, Z.col, Z.val, W_dec, h);
    auto h_flat = h.view({-1});
    const double c = cfg.aux_loss_coefficient * scale;
    aux = c * h_flat.dot(h_flat).item<double>() * inv_n;
    h.mul_(2.0 * c * inv_n);
  }

  auto dz = fast::csr_gather_dot(A.row_ptr, A.col, W_dec, g).mul_(A.val > 0);
  at::Tensor dz_aux = num_dead > 0 ? fast::csr_gather_dot(Z.row_ptr, Z.col, W_dec, h) : at::Tensor();

  auto& gW_dec = fast_grad_buffer(sae, "W_dec");
  gW_dec.zero_();
  fast::csr_scatter_rows(A.row_ptr, A.col, A.val, g, gW_dec);
  auto& gWt = buf.gW_enc_t;
  gWt.zero_();
  fast::csr_scatter_rows(A.row_ptr, A.col, dz, xt, gWt);
  auto& gb_enc = fast_grad_buffer(sae, "b_enc");
  gb_enc.zero_().index_add_(0, A.col, dz);
  if (num_dead > 0) {
    fast::csr_scatter_rows(Z.row_ptr, Z.col, Z.val, h, gW_dec);
    fast::csr_scatter_rows(Z.row_ptr, Z.col, dz_aux, xt, gWt);
    gb_enc.index_add_(0, Z.col, dz_aux);
  }
  fast_grad_buffer(sae, "W_enc").copy_(gWt.t());
  auto& gb_dec = fast_grad_buffer(sae, "b_dec");
  gb_dec.copy_(g.sum(0));
  if (cfg.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(gb_enc));

  // z is spent: the buffer becomes the dense activations the trainer's statistics read.
  z.zero_().view({-1}).scatter_(0, A.flat, A.val);
  TrainStepOutput out;
  out.loss = mse + aux;
  out.losses["mse_loss"] = mse;
  out.losses["auxiliary_reconstruction_loss"] = aux;
  out.feature_acts = z;
  out.sae_out = x_hat;
  return out;
}

class FastTopKTrainingSae : public TopKTrainingSae {
 public:
  using TopKTrainingSae::TopKTrainingSae;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override {
    return sparse_step(*this, buf_, x, ctx, false);
  }

 private:
  SparseBuffers buf_;
};

class FastBatchTopKTrainingSae : public BatchTopKTrainingSae {
 public:
  using BatchTopKTrainingSae::BatchTopKTrainingSae;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override {
    return sparse_step(*this, buf_, x, ctx, true);
  }

 private:
  SparseBuffers buf_;
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_sparse_training_sae(const TrainingSaeConfig& cfg) {
  if (cfg.architecture == "batchtopk") return std::make_unique<FastBatchTopKTrainingSae>(cfg);
  return std::make_unique<FastTopKTrainingSae>(cfg);
}

}  // namespace saelab
