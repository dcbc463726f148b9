// What an SAE directory holds, as `saelab info SAE_DIR` reports it: its config fields, parameter
// count, norm statistics of the decoder rows and encoder columns, thresholds, and the feature
// density summary when sparsity.safetensors is present.
#pragma once
#include <string>

#include "saelab/core/json.h"

namespace saelab {

// {"path", "architecture", "d_in", "d_sae", "k" (k-sparse), "model_name", "hook_name",
// "hook_layer", "hook_head_index", "dtype", "apply_b_dec_to_input", "normalize_activations",
// "num_parameters", "decoder_norms", "encoder_norms", "threshold" (when the SAE has one): each
// {"min", "mean", "max", "std"} (population std, in float64), "feature_density": {...}}.
json sae_info(const std::string& dir);

}  // namespace saelab
