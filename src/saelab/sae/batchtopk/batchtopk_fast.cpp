// batchtopk's hand-written step (batchtopk_fast.h).
#include "saelab/sae/batchtopk/batchtopk_fast.h"

#include <torch/torch.h>

#include <cmath>

#include "saelab/sae/batchtopk/batchtopk.h"

namespace saelab {

TrainStepOutput FastBatchTopKTrainingSae::forward_backward(const at::Tensor& x,
                                                           const StepContext& ctx) {
  step_dist_ = ctx.dist;
  return sparse_step(*this, buf_, x, ctx, true, inner_widths_);
}

void FastBatchTopKTrainingSae::after_step(const TrainStepOutput& out) {
  if (!buf_.z.defined() || !out.feature_acts.defined() || !out.feature_acts.is_same(buf_.z))
    return BatchTopKTrainingSae::after_step(out);
  if (std::isnan(buf_.min_active)) return;
  const double lr = cfg_.topk_threshold_lr;
  auto& theta = buffers_["topk_threshold"];
  theta = torch::full({}, (1.0 - lr) * theta.item<double>() + lr * buf_.min_active,
                      theta.options().dtype(torch::kFloat64));
}

std::unique_ptr<TrainingSae> make_fast_batchtopk_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<FastBatchTopKTrainingSae>(cfg);
}

}  // namespace saelab
