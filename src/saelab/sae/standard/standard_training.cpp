// The standard training SAE: f = ReLU(x̃ W_enc + b_enc) (or tanh(ReLU(·)) with activation_fn
// "tanh-relu", as SAELens 5 defines it), the L1 sparsity penalty with optional decoder-norm
// weighting and lp_norm, and ghost grads for dead latents.
#include <torch/torch.h>

#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

class StandardTrainingSae : public TrainingSae {
 public:
  explicit StandardTrainingSae(TrainingSaeConfig cfg) : TrainingSae(std::move(cfg)) {
    params_["b_enc"] = torch::zeros({cfg_.d_sae}, cfg_.dtype);
  }

  at::Tensor encode(const at::Tensor& x) const override {
    torch::NoGradGuard ng;
    return activation(sae_in(x, params_.at("b_dec")).mm(params_.at("W_enc")) + params_.at("b_enc"));
  }

  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override {
    auto L = leaves();
    auto& W_enc = L["W_enc"];
    auto& W_dec = L["W_dec"];
    auto& b_dec = L["b_dec"];
    auto hidden_pre = sae_in(x, b_dec).mm(W_enc) + L["b_enc"];
    auto f = activation(hidden_pre);
    auto x_hat = f.mm(W_dec) + b_dec;
    const auto& y = target(x, ctx);
    auto mse_el = mse_elements(x_hat, y);
    auto mse = mse_el.sum(-1).mean();

    // SAELens: ‖f ⊙ ‖W_dec‖‖_p per token, times λ, averaged over the batch.
    auto weighted = cfg_.scale_sparsity_penalty_by_decoder_norm ? f * W_dec.norm(2, {1}) : f;
    auto sparsity = cfg_.lp_norm == 1.0 ? weighted.sum(-1) : weighted.norm(cfg_.lp_norm, {-1});
    auto l1 = ctx.l1_coefficient * sparsity.mean();

    auto loss = mse + l1;
    double ghost_value = 0.0;
    if (cfg_.use_ghost_grads && ctx.dead_mask.defined() && ctx.dead_mask.any().item<bool>()) {
      auto ghost = ghost_grad_loss(y, x_hat, hidden_pre, W_dec, mse_el, ctx.dead_mask);
      ghost_value = ghost.item<double>();
      loss = loss + ghost;
    }
    loss.backward();
    collect_grads(L);

    TrainStepOutput out;
    out.loss = loss.item<double>();
    out.losses["mse_loss"] = mse.item<double>();
    out.losses["l1_loss"] = l1.item<double>();
    out.losses["ghost_grad_loss"] = ghost_value;
    out.feature_acts = f.detach();
    out.sae_out = x_hat.detach();
    return out;
  }

 private:
  at::Tensor activation(const at::Tensor& z) const {
    auto f = torch::relu(z);
    return cfg_.activation_fn == "tanh-relu" ? torch::tanh(f) : f;
  }

  // Ghost grads (SAELens's calculate_ghost_grad_loss): the dead latents' exp(pre-activation)
  // decode a vector rescaled to half the residual's norm, trained to predict the residual, with the
  // loss rescaled to the size of the MSE.
  at::Tensor ghost_grad_loss(const at::Tensor& x, const at::Tensor& x_hat,
                             const at::Tensor& hidden_pre, const at::Tensor& W_dec,
                             const at::Tensor& mse_el, const at::Tensor& dead_mask) {
    auto residual = x - x_hat;
    auto l2_residual = residual.norm(2, {-1});
    auto idx = dead_mask.nonzero().squeeze(1);
    auto g = torch::exp(hidden_pre.index_select(1, idx)).mm(W_dec.index_select(0, idx));
    auto l2_g = g.norm(2, {-1});
    auto scale = (l2_residual / (1e-6 + l2_g * 2)).unsqueeze(1).detach();
    g = g * scale;
    auto mse_g = mse_elements(g, residual.detach());
    auto rescale = (mse_el / (mse_g + 1e-6)).detach();
    return (rescale * mse_g).mean();
  }
};

}  // namespace

std::unique_ptr<TrainingSae> make_standard_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<StandardTrainingSae>(cfg);
}

}  // namespace saelab
