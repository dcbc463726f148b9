// The k-sparse training step shared by topk, batchtopk and matryoshka_batchtopk, written out by
// hand, with a sparse decoder and a sparse backward. With x̃ = x − b_dec, z = x̃ W_enc + b_enc (the
// one dense matmul left), the active set A (topk: the k largest z per token; batchtopk: the k·N
// largest of the batch; in both only entries with z > 0, since ReLU zeroes the rest and they carry
// no gradient) is kept as CSR entries e = (n, j, a_e = z_nj):
//   x̂_n = b_dec + Σ_{e∈A(n)} a_e W_dec[j]              csr_decode, N·k·d_in work
//   L_mse = (1/N) Σ (x̂ − x)²,  g = 2(x̂ − x)/N
// AuxK (dead latents): the k_aux largest dead z per token (entries (n, j, v_e), no
// ReLU) decode the detached residual e = x − x̂: q_n = Σ v_e W_dec[j] − e_n (sparse, no second
// dense decode), L_aux = c·s·(1/N) Σ q², h = 2·c·s·q/N.
// Backward, only on active entries:
//   dz_e    = W_dec[j] · g_n  (W_dec[j] · h_n for AuxK entries)                csr_gather_dot
//   dW_dec[j] = Σ a_e g_n (+ Σ v_e h_n),  dW_enc[:, j] = Σ dz_e x̃_n,  db_enc[j] = Σ dz_e
//                      (sparse_weight_grads: entries grouped by latent, each row written once)
//   db_dec = Σ_n g − W_enc db_enc
// On the CPU (fast_loops.cpp) the selection runs row-parallel in one streaming pass per row (a
// k-heap with vectorised block skipping; batchtopk: a sampled bound, a bucket histogram and an
// exact selection inside the boundary bucket) and turns the [N, d_sae] buffer that held z into
// the dense feature_acts the trainer reads in the same pass. Other devices use ATen's topk.
// matryoshka_batchtopk adds inner levels w (widths below d_sae): A_w = BatchTopK of the prefix
// z[:, :w] (selected from z before the outer selection overwrites it; topk_batch_positive_prefix,
// no copy of the prefix), decoded sparsely x̂_w = b_dec + Σ_{e∈A_w} a_e W_dec[j] (j < w),
// L_w = (1/N) Σ (x̂_w − x)², g_w = 2(x̂_w − x)/N; each level adds Σ a_e g_w,n to dW_dec[j] and
// Σ_n g_w to db_dec, and its dz_e = W_dec[j] · g_w,n is summed with the dz of the same (token,
// latent) in the other levels and AuxK (sum_rows), so dW_enc / db_enc are one latent-grouped
// scatter over the union of the entries.
#include "saelab/sae/kernels/sparse_step.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "saelab/core/collectives.h"
#include "saelab/sae/kernels/fast_kernels.h"
#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/sae/kernels/global_select.h"

namespace saelab {
namespace {

using fast::SparseRows;

// ATen versions (non-CPU devices): topk, ReLU, positive entries only; z becomes feature_acts.
SparseRows to_rows(const at::Tensor& flat_idx, const at::Tensor& vals, int64_t N, int64_t S) {
  auto keep = vals > 0;
  auto idx = flat_idx.masked_select(keep);
  SparseRows s;
  s.val = vals.masked_select(keep);
  auto row = at::div(idx, S, "floor");
  s.col = idx - row * S;
  auto counts = at::bincount(row, {}, N);
  s.row_ptr = at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
  return s;
}

SparseRows select_topk_aten(at::Tensor& z, int64_t k) {
  const int64_t N = z.size(0), S = z.size(1);
  auto top = z.topk(k, -1, /*largest=*/true, /*sorted=*/false);
  auto idx = std::get<1>(top).sort(-1);  // columns increasing within a row
  auto vals = std::get<0>(top).gather(-1, std::get<1>(idx));
  auto flat = (at::arange(N, z.options().dtype(at::kLong)) * S)
                  .unsqueeze(1)
                  .add(std::get<0>(idx))
                  .reshape({-1});
  auto s = to_rows(flat, vals.reshape({-1}), N, S);
  z.zero_().view({-1}).index_put_({flat.masked_select(vals.reshape({-1}) > 0)}, s.val);
  return s;
}

SparseRows select_batch_topk_aten(at::Tensor& z, int64_t keep) {
  const int64_t N = z.size(0), S = z.size(1);
  auto top = z.view({-1}).topk(keep, -1, /*largest=*/true, /*sorted=*/false);
  auto sorted = std::get<1>(top).sort();
  auto vals = std::get<0>(top).index_select(0, std::get<1>(sorted));
  auto s = to_rows(std::get<0>(sorted), vals, N, S);
  z.zero_().view({-1}).index_put_({std::get<0>(sorted).masked_select(vals > 0)}, s.val);
  return s;
}

// matryoshka's inner level of width w: BatchTopK over z[:, :w] (z still holds the pre-activations,
// bias included on this path), read through a copy of the prefix.
SparseRows select_batch_topk_prefix_aten(const at::Tensor& z, int64_t width, int64_t keep) {
  const int64_t N = z.size(0);
  auto top = z.narrow(1, 0, width).reshape({-1}).topk(keep, -1, /*largest=*/true, /*sorted=*/false);
  auto sorted = std::get<1>(top).sort();
  auto vals = std::get<0>(top).index_select(0, std::get<1>(sorted));
  return to_rows(std::get<0>(sorted), vals, N, width);
}

// An inner matryoshka level: its entries, residual gradient g_w = 2(x̂_w − x)/N and dz.
struct InnerLevel {
  int64_t width;
  SparseRows A;
  at::Tensor g, dz;
  double mse;
};

}  // namespace

TrainStepOutput sparse_step(TrainingSae& sae, SparseBuffers& buf, const at::Tensor& x_in,
                            const StepContext& ctx, bool batch,
                            const std::vector<int64_t>& inner_widths) {
  torch::NoGradGuard ng;
  const auto& cfg = sae.cfg();
  auto& P = sae.params();
  const auto& W_enc = P.at("W_enc");
  const auto& W_dec = P.at("W_dec");
  const auto& b_enc = P.at("b_enc");
  const auto& b_dec = P.at("b_dec");
  auto x = x_in.to(W_enc.scalar_type()).contiguous();
  const int64_t N = x.size(0), S = cfg.d_sae, D = cfg.d_in, D_out = cfg.out_dim();
  // What x̂ is compared with: x, or a transcoder's output activations [N, D_out].
  auto y = TrainingSae::target(x, ctx).to(x.scalar_type()).contiguous();
  const double inv_n = 1.0 / static_cast<double>(N);
  if (!buf.z.defined() || buf.z.size(0) != N || buf.z.scalar_type() != W_enc.scalar_type() ||
      buf.z.device() != W_enc.device())
    buf.z = at::empty({N, S}, W_enc.options());
  auto& z = buf.z;
  auto xt = cfg.apply_b_dec_to_input ? x - b_dec : x;
  // On the CPU z holds x̃ W_enc only (mm_out, β = 0) and the selections add b_enc as they read:
  // addmm_out would first broadcast-copy b_enc into all of z and then have the gemm read it back.
  const bool raw = !fast::force_aten_kernels() && fast::raw_loop_ok(z) &&
                   fast::raw_loop_ok(b_enc) && b_enc.scalar_type() == z.scalar_type();
  if (raw)
    at::mm_out(z, xt, W_enc);
  else
    at::addmm_out(z, b_enc, xt, W_enc);
  const at::Tensor bias = raw ? b_enc : at::Tensor();

  // AuxK's selection reads the dead columns of z before z is turned into feature_acts.
  SparseRows Z;
  int64_t num_dead = ctx.dead_mask.defined() ? ctx.dead_mask.sum().item<int64_t>() : 0;
  int64_t k_aux = std::max<int64_t>(D / 2, 1);
  const double aux_scale = std::min(static_cast<double>(num_dead) / k_aux, 1.0);
  k_aux = std::min(k_aux, num_dead);
  if (num_dead > 0) {
    auto dead_idx = ctx.dead_mask.nonzero().squeeze(1);
    if (raw) {
      Z = fast::topk_rows_of_columns(z, bias, dead_idx, k_aux);
    } else {
      auto top = z.index_select(1, dead_idx).topk(k_aux, -1, true, false);
      Z.col = dead_idx.index_select(0, std::get<1>(top).reshape({-1}));
      Z.val = std::get<0>(top).reshape({-1}).contiguous();
      Z.row_ptr = at::arange(0, N * k_aux + 1, k_aux, Z.col.options());
    }
  }
  // A batch split over data-parallel ranks selects over the global batch of N·W tokens: each
  // rank first finds its own candidates, then keeps its share of the global selection
  // (global_select.h).
  Collectives* dist = batch && distributed(ctx.dist) ? ctx.dist : nullptr;
  const int64_t W = dist ? dist->world_size() : 1;
  // The inner levels' selections read z's prefixes before the outer one overwrites z.
  std::vector<InnerLevel> inner(inner_widths.size());
  for (size_t i = 0; i < inner.size(); ++i) {
    const int64_t w = inner_widths[i], keep_w = std::min<int64_t>(cfg.k * N * W, N * W * w);
    auto select = [&](int64_t keep) {
      return raw ? fast::topk_batch_positive_prefix(z, bias, w, keep)
                 : select_batch_topk_prefix_aten(z, w, std::min(keep, N * w));
    };
    inner[i].width = w;
    inner[i].A = select(keep_w);
    if (dist) inner[i].A = select(global_keep_count(inner[i].A.val, keep_w, *dist));
  }
  const int64_t keep_global =
      batch ? std::min<int64_t>(cfg.k * N * W, z.numel() * W) : std::min(cfg.k, S);
  int64_t keep = std::min(keep_global, z.numel());
  if (dist) {
    at::Tensor candidates;
    if (raw) {
      candidates = fast::topk_batch_positive(z, bias, keep, false).val;
    } else {
      candidates = std::get<0>(z.view({-1}).topk(keep, -1, /*largest=*/true, /*sorted=*/false));
      candidates = candidates.masked_select(candidates > 0);
    }
    keep = global_keep_count(candidates, keep_global, *dist);
  }
  SparseRows A = raw ? (batch ? fast::topk_batch_positive(z, bias, keep, true)
                              : fast::topk_rows_positive(z, bias, keep, true))
                     : (batch ? select_batch_topk_aten(z, keep) : select_topk_aten(z, keep));
  buf.min_active =
      A.val.numel() > 0 ? A.val.min().item<double>() : std::numeric_limits<double>::quiet_NaN();
  if (dist) buf.min_active = global_min(buf.min_active, *dist);

  auto x_hat = b_dec.unsqueeze(0).expand({N, D_out}).contiguous();
  fast::csr_decode(A.row_ptr, A.col, A.val, W_dec, x_hat);
  auto g = x_hat - y;
  auto g_flat = g.view({-1});
  const double mse = g_flat.dot(g_flat).item<double>() * inv_n;
  g.mul_(2.0 * inv_n);

  double aux = 0.0;
  at::Tensor h;
  if (num_dead > 0) {
    h = g * (0.5 * N);  // q starts at −e = x̂ − x
    fast::csr_decode(Z.row_ptr, Z.col, Z.val, W_dec, h);
    auto h_flat = h.view({-1});
    const double c = cfg.aux_loss_coefficient * aux_scale;
    aux = c * h_flat.dot(h_flat).item<double>() * inv_n;
    h.mul_(2.0 * c * inv_n);
  }

  // Inner level w: x̂_w = b_dec + Σ a_e W_dec[j] over its entries (all j < w), L_w = (1/N) Σ (x̂_w −
  // x)².
  for (auto& lv : inner) {
    lv.g = b_dec.unsqueeze(0).expand({N, D_out}).contiguous();
    fast::csr_decode(lv.A.row_ptr, lv.A.col, lv.A.val, W_dec, lv.g);
    lv.g.sub_(y);
    auto flat = lv.g.view({-1});
    lv.mse = flat.dot(flat).item<double>() * inv_n;
    lv.g.mul_(2.0 * inv_n);
  }

  auto dz = fast::csr_gather_dot(A.row_ptr, A.col, W_dec, g);
  at::Tensor dz_aux =
      num_dead > 0 ? fast::csr_gather_dot(Z.row_ptr, Z.col, W_dec, h) : at::Tensor();
  for (auto& lv : inner) lv.dz = fast::csr_gather_dot(lv.A.row_ptr, lv.A.col, W_dec, lv.g);

  auto& gW_dec = fast_grad_buffer(sae, "W_dec");
  auto& gW_enc = fast_grad_buffer(sae, "W_enc");
  auto& gb_enc = fast_grad_buffer(sae, "b_enc");
  auto xtc = xt.contiguous();
  if (raw && fast::raw_loop_ok(gW_dec) && fast::raw_loop_ok(gW_enc) && fast::raw_loop_ok(gb_enc) &&
      !inner.empty()) {
    // Decoder terms per level (each its own residual); the encoder's over the union of the
    // entries, with dz of a (token, latent) in several levels (and AuxK) summed first.
    std::vector<fast::GradGroup> groups{{A, A.val, g, at::Tensor()}};
    std::vector<SparseRows> dz_parts{{A.row_ptr, A.col, dz}};
    if (num_dead > 0) {
      groups.push_back({Z, Z.val, h, at::Tensor()});
      dz_parts.push_back({Z.row_ptr, Z.col, dz_aux});
    }
    for (auto& lv : inner) {
      groups.push_back({lv.A, lv.A.val, lv.g, at::Tensor()});
      dz_parts.push_back({lv.A.row_ptr, lv.A.col, lv.dz});
    }
    auto U = fast::sum_rows(dz_parts);
    groups.push_back({U, at::Tensor(), at::Tensor(), U.val});
    fast::sparse_weight_grads(groups, xtc, gW_dec, gW_enc, gb_enc);
  } else if (raw && fast::raw_loop_ok(gW_dec) && fast::raw_loop_ok(gW_enc) &&
             fast::raw_loop_ok(gb_enc)) {
    fast::sparse_weight_grads(A, dz, g, Z, dz_aux, h, xtc, gW_dec, gW_enc, gb_enc);
  } else {
    gW_dec.zero_();
    fast::csr_scatter_rows(A.row_ptr, A.col, A.val, g, gW_dec);
    auto gWt = at::zeros({S, D}, W_enc.options());
    fast::csr_scatter_rows(A.row_ptr, A.col, dz, xtc, gWt);
    gb_enc.zero_().index_add_(0, A.col, dz);
    if (num_dead > 0) {
      fast::csr_scatter_rows(Z.row_ptr, Z.col, Z.val, h, gW_dec);
      fast::csr_scatter_rows(Z.row_ptr, Z.col, dz_aux, xtc, gWt);
      gb_enc.index_add_(0, Z.col, dz_aux);
    }
    for (auto& lv : inner) {
      fast::csr_scatter_rows(lv.A.row_ptr, lv.A.col, lv.A.val, lv.g, gW_dec);
      fast::csr_scatter_rows(lv.A.row_ptr, lv.A.col, lv.dz, xtc, gWt);
      gb_enc.index_add_(0, lv.A.col, lv.dz);
    }
    gW_enc.copy_(gWt.t());
  }
  auto& gb_dec = fast_grad_buffer(sae, "b_dec");
  gb_dec.copy_(g.sum(0));
  for (auto& lv : inner) gb_dec.add_(lv.g.sum(0));
  if (cfg.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(gb_enc));

  TrainStepOutput out;
  out.loss = mse + aux;
  out.losses["mse_loss"] = mse;
  out.losses["auxiliary_reconstruction_loss"] = aux;
  for (auto& lv : inner) {
    out.loss += lv.mse;
    out.losses["inner_mse_loss_" + std::to_string(lv.width)] = lv.mse;
  }
  out.feature_acts = z;
  out.fire_counts = at::bincount(A.col, {}, S);  // every entry of A is > 0
  out.sae_out = x_hat;
  return out;
}

}  // namespace saelab
