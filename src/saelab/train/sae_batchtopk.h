// BatchTopKTrainingSae: shared by batchtopk and matryoshka_batchtopk (see sae_batchtopk.cpp).
#pragma once
#include "saelab/train/sae_topk.h"

namespace saelab {

class BatchTopKTrainingSae : public TopKTrainingSae {
 public:
  explicit BatchTopKTrainingSae(TrainingSaeConfig cfg);
  void after_step(const TrainStepOutput& out) override;

 protected:
  at::Tensor activation(const at::Tensor& z) const override;
  void export_params(std::map<std::string, at::Tensor>& out) const override;
};

}  // namespace saelab
