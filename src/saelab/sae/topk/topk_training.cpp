// The topk training SAE: z = x̃ W_enc + b_enc, the k largest per token through ReLU, decode, plus
// AuxK for dead latents (SAELens's TopKTrainingSAE).
#include "saelab/sae/topk/topk_training.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/sae/kernels/global_select.h"

namespace saelab {

TopKTrainingSae::TopKTrainingSae(TrainingSaeConfig cfg) : TrainingSae(std::move(cfg)) {
  if (cfg_.k <= 0 || cfg_.k > cfg_.d_sae)
    fail("activation_fn_kwargs.k: expected 0 < k <= d_sae ({}), got {}", cfg_.d_sae, cfg_.k);
  params_["b_enc"] = torch::zeros({cfg_.d_sae}, cfg_.dtype);
}

at::Tensor TopKTrainingSae::activation(const at::Tensor& z) const {
  auto top = z.topk(std::min<int64_t>(cfg_.k, z.size(-1)), -1);
  auto values = torch::relu(std::get<0>(top));
  return torch::zeros_like(z).scatter(-1, std::get<1>(top), values);
}

at::Tensor TopKTrainingSae::encode(const at::Tensor& x) const {
  torch::NoGradGuard ng;
  return activation(sae_in(x, params_.at("b_dec")).mm(params_.at("W_enc")) + params_.at("b_enc"));
}

at::Tensor TopKTrainingSae::aux_k_loss(const at::Tensor& x, const at::Tensor& x_hat,
                                       const at::Tensor& hidden_pre, const at::Tensor& W_dec,
                                       const at::Tensor& dead_mask) const {
  int64_t num_dead = dead_mask.defined() ? dead_mask.sum().item<int64_t>() : 0;
  if (num_dead == 0) return torch::zeros({}, x.options());
  auto residual = (x - x_hat).detach();
  int64_t k_aux = std::max<int64_t>(cfg_.d_in / 2, 1);
  double scale = std::min(static_cast<double>(num_dead) / k_aux, 1.0);
  k_aux = std::min(k_aux, num_dead);
  auto neg_inf = torch::full({}, -std::numeric_limits<double>::infinity(), hidden_pre.options());
  auto dead_pre = torch::where(dead_mask.unsqueeze(0), hidden_pre, neg_inf);
  auto top = dead_pre.topk(k_aux, -1, /*largest=*/true, /*sorted=*/false);
  auto acts = torch::zeros_like(hidden_pre).scatter(-1, std::get<1>(top), std::get<0>(top));
  auto loss = (acts.mm(W_dec) - residual).pow(2).sum(-1).mean();
  return cfg_.aux_loss_coefficient * scale * loss;
}

at::Tensor TopKTrainingSae::extra_losses(const at::Tensor&, const at::Tensor&,
                                         std::map<std::string, at::Tensor>&, TrainStepOutput&) {
  return {};
}

TrainStepOutput TopKTrainingSae::forward_backward(const at::Tensor& x, const StepContext& ctx) {
  step_dist_ = ctx.dist;
  auto L = leaves();
  auto& W_dec = L["W_dec"];
  auto& b_dec = L["b_dec"];
  auto hidden_pre = sae_in(x, b_dec).mm(L["W_enc"]) + L["b_enc"];
  auto f = activation(hidden_pre);
  auto x_hat = f.mm(W_dec) + b_dec;
  const auto& y = target(x, ctx);
  auto mse = mse_elements(x_hat, y).sum(-1).mean();
  auto aux = aux_k_loss(y, x_hat, hidden_pre, W_dec, ctx.dead_mask);
  TrainStepOutput out;
  auto loss = mse + aux;
  auto extra = extra_losses(y, f, L, out);
  if (extra.defined()) loss = loss + extra;
  loss.backward();
  collect_grads(L);
  out.loss = loss.item<double>();
  out.losses["mse_loss"] = mse.item<double>();
  out.losses["auxiliary_reconstruction_loss"] = aux.item<double>();
  out.feature_acts = f.detach();
  out.sae_out = x_hat.detach();
  return out;
}

at::Tensor batch_topk(const at::Tensor& z, int64_t k, Collectives* dist) {
  auto acts = torch::relu(z);
  auto flat = acts.flatten();
  int64_t keep = std::min<int64_t>(k * z.size(0), flat.numel());
  if (distributed(dist)) {
    const int64_t W = dist->world_size();
    auto candidates = std::get<0>(flat.detach().topk(keep, -1));
    keep = global_keep_count(candidates.masked_select(candidates > 0),
                             std::min<int64_t>(k * z.size(0) * W, flat.numel() * W), *dist);
  }
  auto top = flat.topk(keep, -1);
  return torch::zeros_like(flat).scatter(-1, std::get<1>(top), std::get<0>(top)).view(z.sizes());
}

std::unique_ptr<TrainingSae> make_topk_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<TopKTrainingSae>(cfg);
}

}  // namespace saelab
