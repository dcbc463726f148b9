// JumpReLUTrainingSae: jumprelu's parameters, encode, export (log_threshold → threshold) and
// autograd step (sae_jumprelu.cpp). The fast step (fast_jumprelu.cpp) derives from it and replaces
// forward_backward only.
#pragma once
#include "saelab/sae/training_sae.h"

namespace saelab {

class JumpReLUTrainingSae : public TrainingSae {
 public:
  explicit JumpReLUTrainingSae(TrainingSaeConfig cfg);
  at::Tensor encode(const at::Tensor& x) const override;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override;

 protected:
  void export_params(std::map<std::string, at::Tensor>& out) const override;
  void import_params(const std::map<std::string, at::Tensor>& in,
                     const std::string& where) override;
};

}  // namespace saelab
