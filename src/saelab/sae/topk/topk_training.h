// The k-sparse training SAEs share one class: topk keeps the k largest pre-activations per token,
// batchtopk (sae_batchtopk.cpp) keeps the k·N largest of the whole batch, matryoshka_batchtopk
// (sae_matryoshka.cpp) adds nested reconstruction losses. All train dead latents with AuxK.
#pragma once
#include <ATen/core/Tensor.h>

#include "saelab/sae/training_sae.h"

namespace saelab {

class TopKTrainingSae : public TrainingSae {
 public:
  explicit TopKTrainingSae(TrainingSaeConfig cfg);

  at::Tensor encode(const at::Tensor& x) const override;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override;

  // AuxK (Gao et al. 2024): the top k_aux = d_in/2 dead pre-activations decode the
  // detached residual e = x − x̂; scaled by min(num_dead / k_aux, 1). Zero without dead latents.
  at::Tensor aux_k_loss(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& hidden_pre,
                        const at::Tensor& W_dec, const at::Tensor& dead_mask) const;

 protected:
  // The sparse activation of pre-activations z [N, width] (differentiable in z).
  virtual at::Tensor activation(const at::Tensor& z) const;
  // Extra loss terms of subclasses against the target y, given the step's feature activations f
  // [N, d_sae] (differentiable), added to the total (matryoshka's inner losses).
  virtual at::Tensor extra_losses(const at::Tensor& y, const at::Tensor& f,
                                  std::map<std::string, at::Tensor>& L, TrainStepOutput& out);

  Collectives* step_dist_ = nullptr;  // the current forward_backward's StepContext::dist
};

// BatchTopK's activation: ReLU, then the k·N largest values of the flattened [N, width] batch
// (with dist: of the global batch of N·W rows; see kernels/global_select.h).
at::Tensor batch_topk(const at::Tensor& z, int64_t k, Collectives* dist = nullptr);

}  // namespace saelab
