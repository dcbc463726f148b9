// The jumprelu training step written out by hand. With x̃ = x − b_dec
// (apply_b_dec_to_input), θ = exp(log_threshold), ε = jumprelu_bandwidth, λ₀ the L0 coefficient,
// rect(u) = 1[−½ < u < ½] and N tokens:
//   z = x̃ W_enc + b_enc,  m = 1[z > θ],  f = z ⊙ m,  x̂ = f W_dec + b_dec,  r = x̂ − x
//   L = (1/N) Σ r²  +  (λ₀/N) Σ_n Σ_j m_nj
// Backward with SAELens's straight-through estimators (JumpReLU and Step), where
// ρ_nj = rect((z_nj − θ_j)/ε) and g = dL/dx̂ = 2r/N:
//   dL/df   = g W_decᵀ                                         one matmul
//   dz      = dL/df ⊙ m                                         (m ⇔ f > 0, as θ > 0)
//   dL/dθ_j = −(θ_j/ε) Σ_n ρ_nj (dL/df)_nj − (λ₀/(N ε)) Σ_n ρ_nj   (JumpReLU's, then Step's)
//   dlog_threshold = θ ⊙ dL/dθ                                  (θ = exp(log_threshold))
//   dW_dec  = fᵀ g,  dW_enc = x̃ᵀ dz,  db_enc = Σ_n dz
//   db_dec  = Σ_n g − W_enc db_enc                              (a mat-vec, as in fast_standard)
// Five N·d_in·d_sae matmuls per step (PyTorch eager: six) and two fused passes over [N, d_sae],
// parallel over latent ranges so the per-latent sums need no atomics:
//   forward:  z → f in place; ρ into a bool buffer; Σ_n m_nj; Σ_n ρ_nj
//   backward: dL/df → dz in place; Σ_n ρ_nj (dL/df)_nj; db_enc
// Buffers allocated once: f and dL/df [N, d_sae] in the parameters' dtype, ρ [N, d_sae] bool.
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "saelab/sae/jumprelu/jumprelu.h"
#include "saelab/sae/jumprelu/jumprelu_training.h"
#include "saelab/sae/kernels/fast_dense.h"
#include "saelab/sae/training_sae.h"

namespace saelab {

namespace fast {
namespace {
bool g_force_aten_passes = false;
}
void set_force_aten_passes(bool on) { g_force_aten_passes = on; }
bool use_cpu_loops(const at::Tensor& t) { return t.is_cpu() && !g_force_aten_passes; }
}  // namespace fast

namespace {

// The loops of the two passes over latents [lo, hi) of every token row, written so that the
// compiler vectorises them (restrict pointers, selects instead of branches, the bool buffer as
// bytes): per-latent sums accumulate in double, acc[j − lo].
template <typename T>
void forward_rows(T* __restrict z, uint8_t* __restrict rho, const T* __restrict th, T eps,
                  int64_t N, int64_t S, int64_t lo, int64_t hi, double* __restrict rho_acc,
                  double* __restrict m_acc) {
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict zr = z + n * S;
    uint8_t* __restrict rr = rho + n * S;
#pragma omp simd
    for (int64_t j = lo; j < hi; ++j) {
      const T v = zr[j], t = th[j];
      const T u = (v - t) / eps;
      const int in = (u > T(-0.5)) & (u < T(0.5));
      const int m = v > t;
      rr[j] = static_cast<uint8_t>(in);
      rho_acc[j - lo] += static_cast<double>(in);
      m_acc[j - lo] += static_cast<double>(m);
      zr[j] = m ? v : T(0);
    }
  }
}

template <typename T>
void backward_rows(T* __restrict d, const T* __restrict f, const uint8_t* __restrict rho, int64_t N,
                   int64_t S, int64_t lo, int64_t hi, double* __restrict rd_acc,
                   double* __restrict dz_acc) {
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict dr = d + n * S;
    const T* __restrict fr = f + n * S;
    const uint8_t* __restrict rr = rho + n * S;
#pragma omp simd
    for (int64_t j = lo; j < hi; ++j) {
      const T v = dr[j];
      const T dz = fr[j] > T(0) ? v : T(0);
      rd_acc[j - lo] += static_cast<double>(rr[j] != 0 ? v : T(0));
      dz_acc[j - lo] += static_cast<double>(dz);
      dr[j] = dz;
    }
  }
}

struct ForwardSums {
  double active = 0.0;  // Σ m (the batch's L0 count)
  at::Tensor rho_sum;   // [S]: Σ_n ρ_nj
};

// z [N, S] → f in place, rho [N, S] bool ← ρ.
ForwardSums forward_pass(at::Tensor& z, at::Tensor& rho, const at::Tensor& theta, double eps) {
  const int64_t N = z.size(0), S = z.size(1);
  ForwardSums out;
  if (!fast::use_cpu_loops(z)) {
    auto u = (z - theta) / eps;
    rho.copy_(at::logical_and(u > -0.5, u < 0.5));
    auto m = z > theta;
    out.active = m.sum().item<double>();
    out.rho_sum = rho.sum(0, /*keepdim=*/false, z.scalar_type());
    z.mul_(m);
    return out;
  }
  out.rho_sum = at::empty({S}, z.options());
  std::vector<double> active(S, 0.0);
  auto th = theta.contiguous();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "jumprelu_forward_pass", [&] {
    scalar_t* zp = z.data_ptr<scalar_t>();
    bool* rp = rho.data_ptr<bool>();
    const scalar_t* tp = th.data_ptr<scalar_t>();
    scalar_t* rs = out.rho_sum.data_ptr<scalar_t>();
    const scalar_t e = static_cast<scalar_t>(eps);
    fast::parallel_latents(S, [&](int64_t lo, int64_t hi) {
      std::vector<double> r_acc(hi - lo, 0.0), m_acc(hi - lo, 0.0);
      forward_rows<scalar_t>(zp, reinterpret_cast<uint8_t*>(rp), tp, e, N, S, lo, hi, r_acc.data(),
                             m_acc.data());
      for (int64_t j = lo; j < hi; ++j) {
        rs[j] = static_cast<scalar_t>(r_acc[j - lo]);
        active[j] = m_acc[j - lo];
      }
    });
  });
  for (double a : active) out.active += a;
  return out;
}

struct BackwardSums {
  at::Tensor rho_df;  // [S]: Σ_n ρ_nj (dL/df)_nj
  at::Tensor dz_sum;  // [S]: Σ_n dz_nj = db_enc
};

// d [N, S]: dL/df → dz in place (masked by f > 0).
BackwardSums backward_pass(at::Tensor& d, const at::Tensor& f, const at::Tensor& rho) {
  const int64_t N = d.size(0), S = d.size(1);
  BackwardSums out;
  if (!fast::use_cpu_loops(d)) {
    out.rho_df = (d * rho).sum(0);
    d.mul_(f > 0);
    out.dz_sum = d.sum(0);
    return out;
  }
  out.rho_df = at::empty({S}, d.options());
  out.dz_sum = at::empty({S}, d.options());
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "jumprelu_backward_pass", [&] {
    scalar_t* dp = d.data_ptr<scalar_t>();
    const scalar_t* fp = f.data_ptr<scalar_t>();
    const bool* rp = rho.data_ptr<bool>();
    scalar_t* rd = out.rho_df.data_ptr<scalar_t>();
    scalar_t* bs = out.dz_sum.data_ptr<scalar_t>();
    fast::parallel_latents(S, [&](int64_t lo, int64_t hi) {
      std::vector<double> r_acc(hi - lo, 0.0), b_acc(hi - lo, 0.0);
      backward_rows<scalar_t>(dp, fp, reinterpret_cast<const uint8_t*>(rp), N, S, lo, hi,
                              r_acc.data(), b_acc.data());
      for (int64_t j = lo; j < hi; ++j) {
        rd[j] = static_cast<scalar_t>(r_acc[j - lo]);
        bs[j] = static_cast<scalar_t>(b_acc[j - lo]);
      }
    });
  });
  return out;
}

// Parameters, encode and the export are the autograd SAE's; only the step is hand-written.
class FastJumpReLUTrainingSae : public JumpReLUTrainingSae {
 public:
  using JumpReLUTrainingSae::JumpReLUTrainingSae;

  TrainStepOutput forward_backward(const at::Tensor& x_in, const StepContext& ctx) override {
    torch::NoGradGuard ng;
    const auto& W_enc = params_.at("W_enc");
    const auto& W_dec = params_.at("W_dec");
    const auto& b_enc = params_.at("b_enc");
    const auto& b_dec = params_.at("b_dec");
    auto x = x_in.to(W_enc.scalar_type()).contiguous();
    const int64_t N = x.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    const double eps = cfg_.jumprelu_bandwidth;
    const double lam0 = ctx.l0_coefficient;
    if (!f_.defined() || f_.size(0) != N || f_.scalar_type() != W_enc.scalar_type() ||
        f_.device() != W_enc.device()) {
      f_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      df_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      rho_ = at::empty({N, cfg_.d_sae}, W_enc.options().dtype(at::kBool));
    }
    auto theta = params_.at("log_threshold").exp();
    auto xt = sae_in(x, b_dec);
    at::addmm_out(f_, b_enc, xt, W_enc);
    auto fs = forward_pass(f_, rho_, theta, eps);
    auto x_hat = at::addmm(b_dec, f_, W_dec);
    auto r = x_hat - target(x, ctx).to(x.scalar_type());
    auto r_flat = r.view({-1});
    const double mse = r_flat.dot(r_flat).item<double>() * inv_n;
    const double l0_loss = lam0 * fs.active * inv_n;

    auto g = r.mul_(2.0 * inv_n);
    at::mm_out(df_, g, W_dec.t());
    auto bs = backward_pass(df_, f_, rho_);

    auto& gW_dec = fast_grad_buffer(*this, "W_dec");
    at::mm_out(gW_dec, f_.t(), g);
    if (ctx.grad_ready) ctx.grad_ready("W_dec");  // its all-reduce overlaps dW_enc's product
    auto& gW_enc = fast_grad_buffer(*this, "W_enc");
    at::mm_out(gW_enc, xt.t(), df_);
    auto& gb_enc = fast_grad_buffer(*this, "b_enc");
    gb_enc.copy_(bs.dz_sum);
    auto& gb_dec = fast_grad_buffer(*this, "b_dec");
    gb_dec.copy_(g.sum(0));
    if (cfg_.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(gb_enc));
    // dL/dθ = −(θ/ε) Σ ρ dL/df − (λ₀/(Nε)) Σ ρ, then the chain through exp.
    auto d_theta = (theta / eps).mul_(bs.rho_df).neg_().sub_(fs.rho_sum, lam0 * inv_n / eps);
    fast_grad_buffer(*this, "log_threshold").copy_(d_theta.mul_(theta));

    TrainStepOutput out;
    out.loss = mse + l0_loss;
    out.losses["mse_loss"] = mse;
    out.losses["l0_loss"] = l0_loss;
    out.feature_acts = f_;
    out.sae_out = x_hat;
    return out;
  }

  void release_work_buffers() override { f_ = df_ = rho_ = at::Tensor(); }

 private:
  at::Tensor f_, df_;  // [N, d_sae]: z → f; dL/df → dz, both in place
  at::Tensor rho_;     // [N, d_sae] bool: rect((z − θ)/ε)
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_jumprelu_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<FastJumpReLUTrainingSae>(cfg);
}

}  // namespace saelab
