// GatedTrainingSae: gated's parameters, encode and autograd step (sae_gated.cpp). The fast step
// (fast_gated.cpp) derives from it and replaces forward_backward only.
#pragma once
#include "saelab/sae/training_sae.h"

namespace saelab {

class GatedTrainingSae : public TrainingSae {
 public:
  explicit GatedTrainingSae(TrainingSaeConfig cfg);
  at::Tensor encode(const at::Tensor& x) const override;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override;
};

}  // namespace saelab
