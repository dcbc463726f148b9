// The batchtopk training SAE (Bussmann et al. 2024): the k·N largest activations of the batch
// survive, so k holds on average per token. After each step a global threshold follows the
// smallest surviving activation, θ ← (1 − lr)θ + lr·min(f > 0), in float64; at inference the SAE is
// a JumpReLU with that threshold for every latent.
#include "saelab/sae/batchtopk/batchtopk_training.h"

#include <torch/torch.h>

#include <cmath>

#include "saelab/core/collectives.h"
#include "saelab/sae/kernels/global_select.h"

namespace saelab {

BatchTopKTrainingSae::BatchTopKTrainingSae(TrainingSaeConfig cfg)
    : TopKTrainingSae(std::move(cfg)) {
  buffers_["topk_threshold"] = torch::zeros({}, torch::kFloat64);
}

at::Tensor BatchTopKTrainingSae::activation(const at::Tensor& z) const {
  return batch_topk(z, cfg_.k, step_dist_);
}

void BatchTopKTrainingSae::after_step(const TrainStepOutput& out) {
  auto positive = out.feature_acts.masked_select(out.feature_acts > 0);
  double min_active = positive.numel() > 0 ? positive.min().item<double>() : std::nan("");
  if (distributed(step_dist_)) min_active = global_min(min_active, *step_dist_);
  if (std::isnan(min_active)) return;
  double lr = cfg_.topk_threshold_lr;
  auto& theta = buffers_["topk_threshold"];
  theta = (1.0 - lr) * theta + lr * torch::full({}, min_active, theta.options());
}

void BatchTopKTrainingSae::export_params(std::map<std::string, at::Tensor>& out) const {
  TopKTrainingSae::export_params(out);
  out["threshold"] =
      torch::full({cfg_.d_sae}, buffers_.at("topk_threshold").item<double>(), cfg_.dtype);
}

void BatchTopKTrainingSae::import_params(const std::map<std::string, at::Tensor>& in,
                                         const std::string& where) {
  TopKTrainingSae::import_params(in, where);
  auto it = in.find("threshold");
  if (it == in.end())
    fail("{}: no parameter 'threshold' for architecture {}", where, cfg_.architecture);
  buffers_["topk_threshold"] =
      torch::full({}, it->second.to(torch::kFloat64).mean().item<double>(), torch::kFloat64);
}

std::unique_ptr<TrainingSae> make_batchtopk_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<BatchTopKTrainingSae>(cfg);
}

}  // namespace saelab
