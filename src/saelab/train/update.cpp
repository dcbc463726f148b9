// The parameter update after forward_backward (update.h).
#include "saelab/train/update.h"

#include "saelab/train/init.h"

namespace saelab {

void apply_update(TrainingSae& sae, Adam& adam, const TrainStepOutput& out, double lr,
                  bool normalize_sae_decoder) {
  if (normalize_sae_decoder) remove_gradient_parallel_to_decoder_directions(sae);
  clip_grad_norm(sae.grads(), 1.0);
  adam.step(sae.params(), sae.grads(), lr);
  if (normalize_sae_decoder) set_decoder_norm_to_unit_norm(sae);
  sae.after_step(out);
}

}  // namespace saelab
