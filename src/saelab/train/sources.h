// The activation source a run config asks for: the toy model (dataset_path = "toy"), cached
// activations (use_cached_activations), or a model's activations (ActivationsStore over
// model_name / hook_name / dataset_path).
#pragma once
#include <memory>

#include "saelab/data/activation_source.h"
#include "saelab/data/toy_model.h"
#include "saelab/store/activations_store.h"
#include "saelab/train/config.h"

namespace saelab {

// The toy_* keys as a ToyModelConfig (feature_seed = toy_seed, stream_seed = seed).
ToyModelConfig toy_model_config(const RunnerConfig& cfg);

// Loads model_name, opens dataset_path and builds the store; checks d_in against the hook's width.
// Reads nothing yet.
std::unique_ptr<ActivationsStore> make_activations_store(const RunnerConfig& cfg, bool background = true);

// Throws saelab::Error when the config asks for a source that is not available. A model source has
// read its first buffer (so a dataset that does not match the model fails here, before training).
std::unique_ptr<ActivationSource> make_activation_source(const RunnerConfig& cfg);

}  // namespace saelab
