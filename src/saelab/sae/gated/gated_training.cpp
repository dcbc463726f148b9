// The gated training SAE (Rajamanoharan et al. 2024): a gate path π = x̃ W_enc + b_gate decides
// which latents fire, a magnitude path with W_enc ⊙ exp(r_mag) sets their size. The L1 penalty acts
// on ReLU(π) weighted by decoder norms; the auxiliary loss reconstructs x from ReLU(π) through a
// detached decoder so the gate gets a reconstruction signal.
#include "saelab/sae/gated/gated_training.h"

#include <torch/torch.h>

namespace saelab {

GatedTrainingSae::GatedTrainingSae(TrainingSaeConfig cfg) : TrainingSae(std::move(cfg)) {
  for (const char* n : {"b_gate", "b_mag", "r_mag"})
    params_[n] = torch::zeros({cfg_.d_sae}, cfg_.dtype);
}

at::Tensor GatedTrainingSae::encode(const at::Tensor& x) const {
  torch::NoGradGuard ng;
  auto xin = sae_in(x, params_.at("b_dec"));
  const auto& W_enc = params_.at("W_enc");
  auto pi = xin.mm(W_enc) + params_.at("b_gate");
  auto mag = xin.mm(W_enc * torch::exp(params_.at("r_mag"))) + params_.at("b_mag");
  return (pi > 0).to(x.scalar_type()) * torch::relu(mag);
}

TrainStepOutput GatedTrainingSae::forward_backward(const at::Tensor& x, const StepContext& ctx) {
  auto L = leaves();
  auto& W_enc = L["W_enc"];
  auto& W_dec = L["W_dec"];
  auto& b_dec = L["b_dec"];
  auto xin = sae_in(x, b_dec);
  auto pi = xin.mm(W_enc) + L["b_gate"];
  auto active = (pi > 0).to(x.scalar_type());  // Heaviside: no gradient through the gate here
  auto mag = xin.mm(W_enc * torch::exp(L["r_mag"])) + L["b_mag"];
  auto f = active * torch::relu(mag);
  auto x_hat = f.mm(W_dec) + b_dec;
  auto mse = mse_elements(x_hat, x).sum(-1).mean();

  auto pi_act = torch::relu(pi);
  auto l1 = ctx.l1_coefficient * (pi_act * W_dec.norm(2, {1})).sum(-1).mean();
  auto via_gate = pi_act.mm(W_dec.detach()) + b_dec.detach();
  auto aux = (via_gate - x).pow(2).sum(-1).mean();

  auto loss = mse + l1 + aux;
  loss.backward();
  collect_grads(L);

  TrainStepOutput out;
  out.loss = loss.item<double>();
  out.losses["mse_loss"] = mse.item<double>();
  out.losses["l1_loss"] = l1.item<double>();
  out.losses["auxiliary_reconstruction_loss"] = aux.item<double>();
  out.feature_acts = f.detach();
  out.sae_out = x_hat.detach();
  return out;
}

std::unique_ptr<TrainingSae> make_gated_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<GatedTrainingSae>(cfg);
}

}  // namespace saelab
