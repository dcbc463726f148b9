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
// matryoshka_batchtopk adds inner levels of widths w_0 < … < w_{L-2} < w_{L-1} = d_sae over the
// same selection A (one BatchTopK over all latents): level l decodes the entries of the latents
// j < w_l, x̂_l = b_dec + Σ_{e∈A, j<w_l} a_e W_dec[j], with L_l = (1/N) Σ (x̂_l − x)² and
// g_l = 2(x̂_l − x)/N (the outer level l = L−1 is the x̂ and g above). Splitting A by latent into
// the segments [w_{l-1}, w_l) decodes each entry once, level by level. An entry of segment l is in
// levels l .. L−1, so it sees G_l = Σ_{m≥l} g_m where the formulas below say g.
// Backward, only on active entries:
//   dz_e    = W_dec[j] · G_l(n)  (W_dec[j] · h_n for AuxK entries)                csr_gather_dot
//   dW_dec[j] = Σ a_e G_l(n) (+ Σ v_e h_n),  dW_enc[:, j] = Σ dz_e x̃_n,  db_enc[j] = Σ dz_e
//                      (sparse_weight_grads: entries grouped by latent, each row written once)
//   db_dec = Σ_n G_0(n) − W_enc db_enc
// On the CPU (select_loops.cpp) the selection runs row-parallel in one streaming pass per row (a
// k-heap with vectorised block skipping; batchtopk: the values above a sampled bound, then the
// exact boundary among them) and turns the [N, d_sae] buffer that held z into the dense
// feature_acts the trainer reads in the same pass. Other devices use ATen's topk.
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

// CSR row pointers of entries whose tokens are `rows` (sorted), for a batch of N tokens.
at::Tensor row_ptr_of(const at::Tensor& rows, int64_t N) {
  auto counts = at::bincount(rows, {}, N);
  return at::cat({at::zeros({1}, counts.options()), counts.cumsum(0)});
}

// ATen versions (non-CPU devices): topk, ReLU, positive entries only; z becomes feature_acts.
SparseRows to_rows(const at::Tensor& flat_idx, const at::Tensor& vals, int64_t N, int64_t S) {
  auto keep = vals > 0;
  auto idx = flat_idx.masked_select(keep);
  SparseRows s;
  s.val = vals.masked_select(keep);
  auto row = at::div(idx, S, "floor");
  s.col = idx - row * S;
  s.row_ptr = row_ptr_of(row, N);
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

// t, reallocated only when its shape or options differ from what this step needs.
at::Tensor& reuse(at::Tensor& t, at::IntArrayRef shape, const at::TensorOptions& o) {
  if (!t.defined() || t.sizes() != shape || t.scalar_type() != o.dtype() ||
      t.device() != o.device())
    t = at::empty(shape, o);
  return t;
}

// A's entries split by latent into the levels' segments [w_{l-1}, w_l) (w_{-1} = 0; the last
// width is d_sae), each a CSR set of the same batch with columns still increasing within a row.
std::vector<SparseRows> split_by_latent(const SparseRows& A, const std::vector<int64_t>& widths,
                                        int64_t N) {
  if (widths.size() == 1) return {A};
  auto row = fast::entry_rows(A.row_ptr);
  std::vector<SparseRows> parts;
  int64_t lo = 0;
  for (int64_t hi : widths) {
    auto in = A.col.ge(lo).logical_and_(A.col.lt(hi));
    SparseRows p;
    p.col = A.col.masked_select(in);
    p.val = A.val.masked_select(in);
    p.row_ptr = row_ptr_of(row.masked_select(in), N);
    parts.push_back(std::move(p));
    lo = hi;
  }
  return parts;
}

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
  auto& z = reuse(buf.z, {N, S}, W_enc.options());
  auto xt =
      cfg.apply_b_dec_to_input ? at::sub_out(reuse(buf.x_in, {N, D}, x.options()), x, b_dec) : x;
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

  // Levels: matryoshka's inner widths, then d_sae (the only level of topk and batchtopk). Level l
  // decodes the selected entries of the latents below its width, x̂_l = x̂_{l-1} + Σ_{e ∈ part l}
  // a_e W_dec[j] (x̂_{-1} = b_dec), so the outer x̂ is the last one; g_l = 2(x̂_l − y)/N.
  std::vector<int64_t> widths(inner_widths);
  widths.push_back(S);
  const size_t L = widths.size();
  auto parts = split_by_latent(A, widths, N);
  buf.grad.resize(L);
  auto& G = buf.grad;  // g_l, then Σ_{m ≥ l} g_m
  std::vector<double> level_mse(L);
  auto& x_hat = reuse(buf.x_hat, {N, D_out}, x.options());
  x_hat.copy_(b_dec.unsqueeze(0).expand({N, D_out}));
  for (size_t l = 0; l < L; ++l) {
    fast::csr_decode(parts[l].row_ptr, parts[l].col, parts[l].val, W_dec, x_hat);
    at::sub_out(reuse(G[l], {N, D_out}, x.options()), x_hat, y);
    auto flat = G[l].view({-1});
    level_mse[l] = flat.dot(flat).item<double>() * inv_n;
    G[l].mul_(2.0 * inv_n);
  }
  const double mse = level_mse[L - 1];

  double aux = 0.0;
  at::Tensor h;
  if (num_dead > 0) {
    // q starts at −e = x̂ − x (the outer level's residual).
    h = at::mul_out(reuse(buf.aux, {N, D_out}, x.options()), G[L - 1],
                    at::scalar_tensor(0.5 * N, x.options()));
    fast::csr_decode(Z.row_ptr, Z.col, Z.val, W_dec, h);
    auto h_flat = h.view({-1});
    const double c = cfg.aux_loss_coefficient * aux_scale;
    aux = c * h_flat.dot(h_flat).item<double>() * inv_n;
    h.mul_(2.0 * c * inv_n);
  }

  // A latent of part l is in levels l .. L−1: its entries see G_l = Σ_{m ≥ l} g_m.
  for (size_t l = L - 1; l-- > 0;) G[l].add_(G[l + 1]);
  std::vector<at::Tensor> dz(L);
  for (size_t l = 0; l < L; ++l)
    dz[l] = fast::csr_gather_dot(parts[l].row_ptr, parts[l].col, W_dec, G[l]);
  at::Tensor dz_aux =
      num_dead > 0 ? fast::csr_gather_dot(Z.row_ptr, Z.col, W_dec, h) : at::Tensor();

  auto& gW_dec = fast_grad_buffer(sae, "W_dec");
  auto& gW_enc = fast_grad_buffer(sae, "W_enc");
  auto& gb_enc = fast_grad_buffer(sae, "b_enc");
  auto xtc = xt.contiguous();
  std::vector<fast::GradGroup> groups;
  for (size_t l = 0; l < L; ++l) groups.push_back({parts[l], parts[l].val, G[l], dz[l]});
  if (num_dead > 0) groups.push_back({Z, Z.val, h, dz_aux});
  if (raw && fast::raw_loop_ok(gW_dec) && fast::raw_loop_ok(gW_enc) && fast::raw_loop_ok(gb_enc)) {
    fast::sparse_weight_grads(groups, xtc, gW_dec, gW_enc, gb_enc);
  } else {
    gW_dec.zero_();
    gb_enc.zero_();
    auto gWt = at::zeros({S, D}, W_enc.options());
    for (const auto& gr : groups) {
      fast::csr_scatter_rows(gr.rows.row_ptr, gr.rows.col, gr.coef, gr.v, gW_dec);
      fast::csr_scatter_rows(gr.rows.row_ptr, gr.rows.col, gr.dz, xtc, gWt, &gb_enc);
    }
    gW_enc.copy_(gWt.t());
  }
  auto& gb_dec = fast_grad_buffer(sae, "b_dec");
  gb_dec.copy_(G[0].sum(0));  // Σ_n Σ_l g_l
  if (cfg.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(gb_enc));

  TrainStepOutput out;
  out.loss = mse + aux;
  out.losses["mse_loss"] = mse;
  out.losses["auxiliary_reconstruction_loss"] = aux;
  for (size_t l = 0; l + 1 < L; ++l) {
    out.loss += level_mse[l];
    out.losses["inner_mse_loss_" + std::to_string(widths[l])] = level_mse[l];
  }
  out.feature_acts = z;
  out.fire_counts = at::bincount(A.col, {}, S);  // every entry of A is > 0
  out.sae_out = x_hat;
  return out;
}

}  // namespace saelab
