// The standard (ReLU + L1) training step written out by hand. With x̃ = x − b_dec
// (apply_b_dec_to_input), w_j = ‖W_dec[j]‖ (scale_sparsity_penalty_by_decoder_norm, else 1), λ the
// l1 coefficient and N tokens:
//   z = x̃ W_enc + b_enc,  f = ReLU(z),  x̂ = f W_dec + b_dec,  r = x̂ − x
//   L = (1/N) Σ r²  +  (λ/N) Σ_n Σ_j f_nj w_j
// Backward (g = dL/dx̂ = 2r/N, c_j = Σ_n f_nj):
//   dL/df   = g W_decᵀ + (λ/N) w               one matmul, the bias broadcast by addmm
//   dL/dz   = dL/df ⊙ [f > 0]                  in place (threshold_backward)
//   dW_dec  = fᵀ g + (λ/N) c_j W_dec[j] / w_j  (the decoder-norm term; 0 where w_j = 0)
//   dW_enc  = x̃ᵀ dz,  db_enc = Σ_n dz
//   db_dec  = Σ_n g − W_enc db_enc             (x̃'s gradient summed over tokens: a mat-vec, not
//                                              the N×d_sae×d_in matmul autograd spends on it)
// Five N·d_in·d_sae matmuls per step against PyTorch eager's six, and two [N, d_sae] buffers
// allocated once.
#include <torch/torch.h>

#include "saelab/sae/standard/standard.h"
#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

class FastStandardTrainingSae : public TrainingSae {
 public:
  explicit FastStandardTrainingSae(TrainingSaeConfig cfg) : TrainingSae(std::move(cfg)) {
    params_["b_enc"] = torch::zeros({cfg_.d_sae}, cfg_.dtype);
  }

  at::Tensor encode(const at::Tensor& x) const override {
    torch::NoGradGuard ng;
    return torch::relu(sae_in(x, params_.at("b_dec")).mm(params_.at("W_enc")) +
                       params_.at("b_enc"));
  }

  void release_work_buffers() override { f_ = df_ = at::Tensor(); }

  TrainStepOutput forward_backward(const at::Tensor& x_in, const StepContext& ctx) override {
    torch::NoGradGuard ng;
    const auto& W_enc = params_.at("W_enc");
    const auto& W_dec = params_.at("W_dec");
    const auto& b_enc = params_.at("b_enc");
    const auto& b_dec = params_.at("b_dec");
    auto x = x_in.to(W_enc.scalar_type()).contiguous();
    const int64_t N = x.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    if (!f_.defined() || f_.size(0) != N || f_.scalar_type() != W_enc.scalar_type()) {
      f_ = at::empty({N, cfg_.d_sae}, W_enc.options());
      df_ = at::empty({N, cfg_.d_sae}, W_enc.options());
    }
    auto xt = sae_in(x, b_dec);
    at::addmm_out(f_, b_enc, xt, W_enc);
    f_.relu_();
    auto x_hat = at::addmm(b_dec, f_, W_dec);
    auto r = x_hat - target(x, ctx).to(x.scalar_type());
    auto r_flat = r.view({-1});
    double mse = r_flat.dot(r_flat).item<double>() * inv_n;

    const double lam = ctx.l1_coefficient;
    auto c = f_.sum(0);
    at::Tensor w = cfg_.scale_sparsity_penalty_by_decoder_norm
                       ? W_dec.norm(2, {1})
                       : at::ones({cfg_.d_sae}, W_dec.options());
    double l1 = lam * inv_n * c.dot(w).item<double>();

    auto g = r.mul_(2.0 * inv_n);
    at::addmm_out(df_, w * (lam * inv_n), g, W_dec.t());
    at::threshold_backward_out(df_, df_, f_, 0);

    auto& gW_dec = fast_grad_buffer(*this, "W_dec");
    at::mm_out(gW_dec, f_.t(), g);
    if (cfg_.scale_sparsity_penalty_by_decoder_norm) {
      auto coef = (c * (lam * inv_n) / w).masked_fill_(w == 0, 0.0);
      gW_dec.addcmul_(W_dec, coef.unsqueeze(1));
    }
    if (ctx.grad_ready) ctx.grad_ready("W_dec");  // its all-reduce overlaps dW_enc's product
    auto& gb_enc = fast_grad_buffer(*this, "b_enc");
    gb_enc.copy_(df_.sum(0));
    auto& gW_enc = fast_grad_buffer(*this, "W_enc");
    at::mm_out(gW_enc, xt.t(), df_);
    auto& gb_dec = fast_grad_buffer(*this, "b_dec");
    gb_dec.copy_(g.sum(0));
    if (cfg_.apply_b_dec_to_input) gb_dec.sub_(W_enc.mv(gb_enc));

    TrainStepOutput out;
    out.loss = mse + l1;
    out.losses["mse_loss"] = mse;
    out.losses["l1_loss"] = l1;
    out.losses["ghost_grad_loss"] = 0.0;
    out.feature_acts = f_;
    out.sae_out = x_hat;
    return out;
  }

 private:
  at::Tensor f_, df_;  // [N, d_sae]: activations, then dL/df → dL/dz in place
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_standard_training_sae(const TrainingSaeConfig& cfg) {
  if (cfg.lp_norm != 1.0 || cfg.use_ghost_grads || cfg.activation_fn != "relu") return nullptr;
  return std::make_unique<FastStandardTrainingSae>(cfg);
}

}  // namespace saelab
