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

// matryoshka_batchtopk's levels: appends d_sae to cfg.matryoshka_widths where it is not the last
// width and fails unless the widths increase strictly and are all >= k (sae_matryoshka.cpp; the
// autograd and the fast SAE both call it).
void normalize_matryoshka_widths(TrainingSaeConfig& cfg);

}  // namespace saelab
