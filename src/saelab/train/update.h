// The parameter update that follows a step's forward_backward, in SAELens's order: the gradient
// parallel to the decoder rows removed (normalize_sae_decoder), gradients clipped to norm 1, Adam,
// decoder rows renormalised (normalize_sae_decoder), then the architecture's after_step
// (batchtopk's threshold). The Trainer and `saelab bench` both call it, so the bench times the
// trainer's own step.
#pragma once
#include "saelab/sae/training_sae.h"
#include "saelab/train/adam.h"

namespace saelab {

void apply_update(TrainingSae& sae, Adam& adam, const TrainStepOutput& out, double lr,
                  bool normalize_sae_decoder);

}  // namespace saelab
