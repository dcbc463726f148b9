// The gated training step written out by hand. With x̃ = x − b_dec
// (apply_b_dec_to_input), s = exp(r_mag), w_j = ‖W_dec[j]‖, λ the l1 coefficient and N tokens:
//   P = x̃ W_enc                           the one encoder matmul: x̃ (W_enc ⊙ s) = P ⊙ s, since s
//                                          scales columns
//   π = P + b_gate,  a = ReLU(π),  mag = P ⊙ s + b_mag,  f = 1[π > 0] · ReLU(mag)
//   x̂ = f W_dec + b_dec,  r = x̂ − x,  v = a sg(W_dec) + sg(b_dec),  q = v − x
//   L = (1/N) Σ r²  +  (λ/N) Σ_n Σ_j a_nj w_j  +  (1/N) Σ q²        (mse, l1, auxiliary)
// Backward (g = 2r/N, h = 2q/N, c_j = Σ_n a_nj; the gate's Heaviside passes no gradient):
//   dL/df   = g W_decᵀ;  dmag = dL/df ⊙ [f > 0]                   ([f > 0] ⇔ [π > 0][mag > 0])
//   dL/da   = h W_decᵀ + (λ/N) w;  dπ = dL/da ⊙ [π > 0]          (aux through the detached decoder)
//   db_mag  = Σ_n dmag,  dr_mag_j = s_j Σ_n dmag_nj P_nj,  db_gate = Σ_n dπ
//   dW_enc  = x̃ᵀ dπ + (x̃ᵀ dmag) ⊙ s = x̃ᵀ (dπ + dmag ⊙ s)       one matmul for both paths
//   dW_dec  = fᵀ g + (λ/N) c_j W_dec[j] / w_j                     (0 where w_j = 0; v's decoder is
//                                                                   detached)
//   db_dec  = Σ_n g − W_enc (db_gate + s ⊙ db_mag)               (x̃'s gradient summed over tokens)
// Seven N·d_in·d_sae matmuls per step (encoder, two decodes, two products with W_decᵀ, dW_dec,
// dW_enc) against PyTorch eager's eleven (two encoder products and two decodes; dW_dec, dL/df,
// dL/da, and each encoder product's weight and input gradients).
// Three fused passes over [N, d_sae], parallel over latent ranges (no atomics):
//   forward:   P → a in place; f; [π > 0] into a bool buffer; c
//   magnitude: dL/df → dmag ⊙ s in place; db_mag; Σ_n dmag P (P = a − b_gate where f > 0)
//   gate:      dL/da (written over a) → dπ, added into the dmag ⊙ s buffer; db_gate
// Buffers allocated once: a, f, dL/df [N, d_sae] in the parameters' dtype, [π > 0] bool.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "saelab/sae/gated/gated.h"
#include "saelab/sae/gated/gated_training.h"
#include "saelab/sae/kernels/fast_dense.h"
#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

// The loops of the three passes over latents [lo, hi) of every token row, written so that the
// compiler vectorises them (restrict pointers, selects instead of branches, the bool buffer as
// bytes): per-latent sums accumulate in double, acc[j − lo].
template <typename T>
void forward_rows(T* __restrict A, T* __restrict F, uint8_t* __restrict M, const T* __restrict bg,
                  const T* __restrict bm, const T* __restrict s, int64_t N, int64_t S, int64_t lo,
                  int64_t hi, double* __restrict a_acc) {
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict ar = A + n * S;
    T* __restrict fr = F + n * S;
    uint8_t* __restrict mr = M + n * S;
#pragma omp simd
    for (int64_t j = lo; j < hi; ++j) {
      const T p = ar[j];
      const T pi = p + bg[j];
      const T mag = p * s[j] + bm[j];
      const T a = pi > T(0) ? pi : T(0);
      const T fm = mag > T(0) ? mag : T(0);
      mr[j] = static_cast<uint8_t>(pi > T(0));
      fr[j] = pi > T(0) ? fm : T(0);
      ar[j] = a;
      a_acc[j - lo] += static_cast<double>(a);
    }
  }
}

template <typename T>
void magnitude_rows(T* __restrict C, const T* __restrict F, const T* __restrict A,
                    const T* __restrict bg, const T* __restrict s, int64_t N, int64_t S, int64_t lo,
                    int64_t hi, double* __restrict b_acc, double* __restrict p_acc) {
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict cr = C + n * S;
    const T* __restrict fr = F + n * S;
    const T* __restrict ar = A + n * S;
#pragma omp simd
    for (int64_t j = lo; j < hi; ++j) {
      const T dm = fr[j] > T(0) ? cr[j] : T(0);
      b_acc[j - lo] += static_cast<double>(dm);
      p_acc[j - lo] += static_cast<double>(dm * (ar[j] - bg[j]));
      cr[j] = dm * s[j];
    }
  }
}

template <typename T>
void gate_rows(T* __restrict C, const T* __restrict A, const uint8_t* __restrict M, int64_t N,
               int64_t S, int64_t lo, int64_t hi, double* __restrict acc) {
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict cr = C + n * S;
    const T* __restrict ar = A + n * S;
    const uint8_t* __restrict mr = M + n * S;
#pragma omp simd
    for (int64_t j = lo; j < hi; ++j) {
      const T dpi = ar[j] * static_cast<T>(mr[j]);  // a product: GCC does not vectorise the select
      acc[j - lo] += static_cast<double>(dpi);
      cr[j] += dpi;
    }
  }
}

// A [N, S]: P → a; F ← f; M ← [π > 0]. Returns c = Σ_n a [S].
at::Tensor forward_pass(at::Tensor& A, at::Tensor& F, at::Tensor& M, const at::Tensor& b_gate,
                        const at::Tensor& b_mag, const at::Tensor& s) {
  const int64_t N = A.size(0), S = A.size(1);
  if (!fast::use_cpu_loops(A)) {
    auto pi = A + b_gate;
    M.copy_(pi > 0);
    at::addcmul_out(F, b_mag, A, s).relu_().mul_(M);
    A.copy_(pi.relu_());
    return A.sum(0);
  }
  auto c = at::empty({S}, A.options());
  auto bg = b_gate.contiguous(), bm = b_mag.contiguous(), sc = s.contiguous();
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "gated_forward_pass", [&] {
    scalar_t* ap = A.data_ptr<scalar_t>();
    scalar_t* fp = F.data_ptr<scalar_t>();
    bool* mp = M.data_ptr<bool>();
    const scalar_t* bgp = bg.data_ptr<scalar_t>();
    const scalar_t* bmp = bm.data_ptr<scalar_t>();
    const scalar_t* sp = sc.data_ptr<scalar_t>();
    scalar_t* cp = c.data_ptr<scalar_t>();
    fast::parallel_latents(S, [&](int64_t lo, int64_t hi) {
      std::vector<double> acc(hi - lo, 0.0);
      forward_rows<scalar_t>(ap, fp, reinterpret_cast<uint8_t*>(mp), bgp, bmp, sp, N, S, lo, hi,
                             acc.data());
      for (int64_t j = lo; j < hi; ++j) cp[j] = static_cast<scalar_t>(acc[j - lo]);
    });
  });
  return c;
}

struct MagSums {
  at::Tensor db_mag;  // Σ_n dmag
  at::Tensor dmag_p;  // Σ_n dmag P
};

// C [N, S]: dL/df → dmag ⊙ s in place.
MagSums magnitude_pass(at::Tensor& C, const at::Tensor& F, const at::Tensor& A,
                       const at::Tensor& b_gate, const at::Tensor& s) {
  const int64_t N = C.size(0), S = C.size(1);
  MagSums out;
  if (!fast::use_cpu_loops(C)) {
    C.mul_(F > 0);
    out.db_mag = C.sum(0);
    out.dmag_p = (C * (A - b_gate)).sum(0);
    C.mul_(s);
    return out;
  }
  out.db_mag = at::empty({S}, C.options());
  out.dmag_p = at::empty({S}, C.options());
  auto bg = b_gate.contiguous(), sc = s.contiguous();
  AT_DISPATCH_FLOATING_TYPES(C.scalar_type(), "gated_magnitude_pass", [&] {
    scalar_t* cp = C.data_ptr<scalar_t>();
    const scalar_t* fp = F.data_ptr<scalar_t>();
    const scalar_t* ap = A.data_ptr<scalar_t>();
    const scalar_t* bgp = bg.data_ptr<scalar_t>();
    const scalar_t* sp = sc.data_ptr<scalar_t>();
    scalar_t* dbm = out.db_mag.data_ptr<scalar_t>();
    scalar_t* dmp = out.dmag_p.data_ptr<scalar_t>();
    fast::parallel_latents(S, [&](int64_t lo, int64_t hi) {
      std::vector<double> b_acc(hi - lo, 0.0), p_acc(hi - lo, 0.0);
      magnitude_rows<scalar_t>(cp, fp, ap, bgp, sp, N, S, lo, hi, b_acc.data(), p_acc.data());
      for (int64_t j = lo; j < hi; ++j) {
        dbm[j] = static_cast<scalar_t>(b_acc[j - lo]);
        dmp[j] = static_cast<scalar_t>(p_acc[j - lo]);
      }
    });
  });
  return out;
}

// A [N, S] holds dL/da: dπ = dL/da ⊙ M is added into C. Returns db_gate = Σ_n dπ.
at::Tensor gate_pass(const at::Tensor& A, const at::Tensor& M, at::Tensor& C) {
  const int64_t N = C.size(0), S = C.size(1);
  if (!fast::use_cpu_loops(C)) {
    auto dpi = A * M;
    C.add_(dpi);
    return dpi.sum(0);
  }
  auto db = at::empty({S}, C.options());
  AT_DISPATCH_FLOATING_TYPES(C.scalar_type(), "gated_gate_pass", [&] {
    scalar_t* cp = C.data_ptr<scalar_t>();
    const scalar_t* ap = A.data_ptr<scalar_t>();
    const bool* mp = M.data_ptr<bool>();
    scalar_t* dbp = db.data_ptr<scalar_t>();
    fast::parallel_latents(S, [&](int64_t lo, int64_t hi) {
      std::vector<double> acc(hi - lo, 0.0);
      gate_rows<scalar_t>(cp, ap, reinterpret_cast<const uint8_t*>(mp), N, S, lo, hi, acc.data());
      for (int64_t j = lo; j < hi; ++j) dbp[j] = static_cast<scalar_t>(acc[j - lo]);
    });
  });
  return db;
}

// Parameters and encode are the autograd SAE's; only the step is hand-written.
class FastGatedTrainingSae : public GatedTrainingSae {
 public:
  using GatedTrainingSae::GatedTrainingSae;

  TrainStepOutput forward_backward(const at::Tensor& x_in, const StepContext& ctx) override {
    torch::NoGradGuard ng;
    const auto& W_enc = params_.at("W_enc");
    const auto& W_dec = params_.at("W_dec");
    const auto& b_dec = params_.at("b_dec");
    const auto& b_gate = params_.at("b_gate");
    const auto& b_mag = params_.at("b_mag");
    auto x = x_in.to(W_enc.scalar_type()).contiguous();
    const int64_t N = x.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    const double lam = ctx.l1_coefficient;
    if (!a_.defined() || a_.size(0) != N || a_.scalar_type() != W_enc.scalar_type() ||
        a_.device() != W_enc.device()) {
      a_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      f_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      c_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      on_ = at::empty({N, cfg_.d_sae}, W_enc.options().dtype(at::kBool));
    }
    auto s = params_.at("r_mag").exp();
    auto xt = sae_in(x, b_dec);
    at::mm_out(a_, xt, W_enc);
    auto a_sum = forward_pass(a_, f_, on_, b_gate, b_mag, s);

    auto x_hat = at::addmm(b_dec, f_, W_dec);
    auto r = x_hat - x;
    auto r_flat = r.view({-1});
    const double mse = r_flat.dot(r_flat).item<double>() * inv_n;
    auto q = at::addmm(b_dec, a_, W_dec).sub_(x);
    auto q_flat = q.view({-1});
    const double aux = q_flat.dot(q_flat).item<double>() * inv_n;
    auto w = W_dec.norm(2, {1});
    const double l1 = lam * inv_n * a_sum.dot(w).item<double>();

    auto g = r.mul_(2.0 * inv_n);
    auto h = q.mul_(2.0 * inv_n);
    at::mm_out(c_, g, W_dec.t());
    auto ms = magnitude_pass(c_, f_, a_, b_gate, s);
    at::addmm_out(a_, w * (lam * inv_n), h, W_dec.t());  // a is spent: dL/da
    auto db_gate = gate_pass(a_, on_, c_);

    auto& gW_dec = fast_grad_buffer(*this, "W_dec");
    at::mm_out(gW_dec, f_.t(), g);
    auto coef = (a_sum * (lam * inv_n) / w).masked_fill_(w == 0, 0.0);
    gW_dec.addcmul_(W_dec, coef.unsqueeze(1));
    at::mm_out(fast_grad_buffer(*this, "W_enc"), xt.t(), c_);
    fast_grad_buffer(*this, "b_gate").copy_(db_gate);
    fast_grad_buffer(*this, "b_mag").copy_(ms.db_mag);
    fast_grad_buffer(*this, "r_mag").copy_(ms.dmag_p.mul_(s));
    auto& gb_dec = fast_grad_buffer(*this, "b_dec");
    gb_dec.copy_(g.sum(0));
    if (cfg_.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(at::addcmul(db_gate, s, ms.db_mag)));

    TrainStepOutput out;
    out.loss = mse + l1 + aux;
    out.losses["mse_loss"] = mse;
    out.losses["l1_loss"] = l1;
    out.losses["auxiliary_reconstruction_loss"] = aux;
    out.feature_acts = f_;
    out.sae_out = x_hat;
    return out;
  }

  void release_work_buffers() override { a_ = f_ = c_ = on_ = at::Tensor(); }

 private:
  at::Tensor a_;   // [N, d_sae]: P → ReLU(π) → dL/da
  at::Tensor f_;   // [N, d_sae]: f (the feature_acts returned)
  at::Tensor c_;   // [N, d_sae]: dL/df → dmag ⊙ s → dmag ⊙ s + dπ
  at::Tensor on_;  // [N, d_sae] bool: π > 0
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_gated_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<FastGatedTrainingSae>(cfg);
}

}  // namespace saelab
