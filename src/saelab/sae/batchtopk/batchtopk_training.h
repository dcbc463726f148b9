// BatchTopKTrainingSae: shared by batchtopk and matryoshka_batchtopk (see sae_batchtopk.cpp).
#pragma once
#include "saelab/sae/topk/topk_training.h"

namespace saelab {

class BatchTopKTrainingSae : public TopKTrainingSae {
 public:
  explicit BatchTopKTrainingSae(TrainingSaeConfig cfg);
  void after_step(const TrainStepOutput& out) override;

 protected:
  at::Tensor activation(const at::Tensor& z) const override;
  void export_params(std::map<std::string, at::Tensor>& out) const override;
  // The inference SAE holds θ once per latent (all equal): θ is their mean.
  void import_params(const std::map<std::string, at::Tensor>& in,
                     const std::string& where) override;
};

}  // namespace saelab
