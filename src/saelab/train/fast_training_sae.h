// Hand-written training steps (issue 7): the same losses and gradients as the autograd bodies in
// sae_*.cpp, with no autograd graph, buffers reused across steps and, for the k-sparse
// architectures, a sparse decoder and backward. make_training_sae picks these when
// TrainingSaeConfig::use_fast_path is set and the configuration is one they implement.
// Note: TrainStepOutput::feature_acts of a fast SAE is a reused buffer, valid until the next step.
#pragma once
#include <memory>

#include "saelab/train/training_sae.h"

namespace saelab {

// The fast SAE for cfg, or nullptr where only the autograd version implements it
// (mse_loss_normalization, standard with ghost grads or lp_norm != 1).
std::unique_ptr<TrainingSae> make_fast_training_sae(const TrainingSaeConfig& cfg);

std::unique_ptr<TrainingSae> make_fast_standard_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_sparse_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_gated_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_jumprelu_training_sae(const TrainingSaeConfig& cfg);

// A gradient buffer of params()[name]'s shape and dtype, reused while it still fits.
at::Tensor& fast_grad_buffer(TrainingSae& sae, const std::string& name);

}  // namespace saelab
