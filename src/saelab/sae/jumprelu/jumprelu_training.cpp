// The jumprelu training SAE (Rajamanoharan et al. 2024, GemmaScope): f = z · 1[z > θ] with
// θ = exp(log_threshold), trained with an L0 penalty. The step function has zero gradient almost
// everywhere, so θ gets straight-through pseudo-gradients with a rectangle kernel of width ε =
// jumprelu_bandwidth, rect(u) = 1[|u| < 1/2] (SAELens's JumpReLU and Step):
//   ∂f/∂θ   = −(θ/ε) · rect((z − θ)/ε)          (z itself gets the plain gradient 1[z > θ])
//   ∂H/∂θ   = −(1/ε) · rect((z − θ)/ε)          for L0 = Σ_i H(z_i − θ_i)
// summed over the batch. The chain through θ = exp(log_threshold) is left to autograd.
#include "saelab/sae/jumprelu/jumprelu_training.h"

#include <torch/torch.h>

#include <cmath>

namespace saelab {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor rectangle(const at::Tensor& u) { return ((u > -0.5) & (u < 0.5)).to(u.scalar_type()); }

struct JumpReLUFn : public torch::autograd::Function<JumpReLUFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& theta,
                            double bandwidth) {
    ctx->save_for_backward({z, theta});
    ctx->saved_data["bandwidth"] = bandwidth;
    return z * (z > theta).to(z.scalar_type());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto& z = saved[0];
    const auto& theta = saved[1];
    double eps = ctx->saved_data["bandwidth"].toDouble();
    const auto& g = grad_out[0];
    auto z_grad = (z > theta).to(g.scalar_type()) * g;
    auto theta_grad = (-(theta / eps) * rectangle((z - theta) / eps) * g).sum(0);
    return {z_grad, theta_grad, at::Tensor()};
  }
};

struct StepFn : public torch::autograd::Function<StepFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& theta,
                            double bandwidth) {
    ctx->save_for_backward({z, theta});
    ctx->saved_data["bandwidth"] = bandwidth;
    return (z > theta).to(z.scalar_type());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto& z = saved[0];
    const auto& theta = saved[1];
    double eps = ctx->saved_data["bandwidth"].toDouble();
    auto theta_grad = (-(1.0 / eps) * rectangle((z - theta) / eps) * grad_out[0]).sum(0);
    return {at::Tensor(), theta_grad, at::Tensor()};
  }
};

}  // namespace

JumpReLUTrainingSae::JumpReLUTrainingSae(TrainingSaeConfig cfg) : TrainingSae(std::move(cfg)) {
  params_["b_enc"] = torch::zeros({cfg_.d_sae}, cfg_.dtype);
  params_["log_threshold"] =
      torch::full({cfg_.d_sae}, std::log(cfg_.jumprelu_init_threshold), cfg_.dtype);
}

at::Tensor JumpReLUTrainingSae::encode(const at::Tensor& x) const {
  torch::NoGradGuard ng;
  auto z = sae_in(x, params_.at("b_dec")).mm(params_.at("W_enc")) + params_.at("b_enc");
  return z * (z > torch::exp(params_.at("log_threshold"))).to(z.scalar_type());
}

TrainStepOutput JumpReLUTrainingSae::forward_backward(const at::Tensor& x, const StepContext& ctx) {
  auto L = leaves();
  auto& W_dec = L["W_dec"];
  auto& b_dec = L["b_dec"];
  auto z = sae_in(x, b_dec).mm(L["W_enc"]) + L["b_enc"];
  auto theta = torch::exp(L["log_threshold"]);
  double eps = cfg_.jumprelu_bandwidth;
  auto f = JumpReLUFn::apply(z, theta, eps);
  auto x_hat = f.mm(W_dec) + b_dec;
  auto mse = mse_elements(x_hat, target(x, ctx)).sum(-1).mean();
  auto l0 = StepFn::apply(z, theta, eps).sum(-1);
  auto l0_loss = (ctx.l0_coefficient * l0).mean();
  auto loss = mse + l0_loss;
  loss.backward();
  collect_grads(L);

  TrainStepOutput out;
  out.loss = loss.item<double>();
  out.losses["mse_loss"] = mse.item<double>();
  out.losses["l0_loss"] = l0_loss.item<double>();
  out.feature_acts = f.detach();
  out.sae_out = x_hat.detach();
  return out;
}

void JumpReLUTrainingSae::export_params(std::map<std::string, at::Tensor>& out) const {
  for (const auto& [name, p] : params_) {
    if (name == "log_threshold")
      out["threshold"] = torch::exp(p).detach().clone();
    else
      out[name] = p.detach().clone();
  }
}

void JumpReLUTrainingSae::import_params(const std::map<std::string, at::Tensor>& in,
                                        const std::string& where) {
  auto p = in;
  if (auto it = p.find("threshold"); it != p.end()) p["log_threshold"] = torch::log(it->second);
  TrainingSae::import_params(p, where);
}

std::unique_ptr<TrainingSae> make_jumprelu_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<JumpReLUTrainingSae>(cfg);
}

}  // namespace saelab
