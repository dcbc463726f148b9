// The activation source a run config asks for: the toy model (dataset_path = "toy"), cached
// activations (use_cached_activations), or a model's activations (ActivationsStore over
// model_name / hook_name / dataset_path).
#pragma once
#include <functional>
#include <memory>

#include "saelab/config/runner_config.h"
#include "saelab/core/json.h"
#include "saelab/data/activation_source.h"
#include "saelab/data/toy_model.h"
#include "saelab/store/activations_store.h"

namespace saelab {

class Collectives;

// The toy_* keys as a ToyModelConfig (feature_seed = toy_seed, stream_seed = seed).
ToyModelConfig toy_model_config(const RunnerConfig& cfg);

// Loads model_name, opens dataset_path and builds the store; checks d_in against the hook's width.
// Reads nothing yet. exchange: data-parallel ranks that share the model's work
// (ActivationsStoreOptions::exchange).
// more_hook_names: a sweep over hook_name's other hooks (ActivationsStoreOptions::more_hook_names);
// exchange_hook_names: the whole sweep's hooks when its members are spread over the ranks
// (ActivationsStoreOptions::exchange_hook_names).
std::unique_ptr<ActivationsStore> make_activations_store(
    const RunnerConfig& cfg, bool background = true,
    std::shared_ptr<Collectives> exchange = nullptr,
    const std::vector<std::string>& more_hook_names = {},
    const std::vector<std::string>& exchange_hook_names = {});

// Throws saelab::Error when the config asks for a source that is not available. A model source has
// read its first buffer (so a dataset that does not match the model fails here, before training).
// With data-parallel ranks every rank's source yields the same (global) stream; a model source
// splits the model's work over them through `exchange`.
std::unique_ptr<ActivationSource> make_activation_source(
    const RunnerConfig& cfg, std::shared_ptr<Collectives> exchange = nullptr,
    const std::vector<std::string>& more_hook_names = {},
    const std::vector<std::string>& exchange_hook_names = {});

class Sae;

// The model-based evals the trainer runs every eval_every_n_wandb_logs log steps and at the end
// (TrainerOptions::model_eval): evaluate_sae_on_model (eval/evaluator.h) with the model the store
// already holds (never loaded twice) on n_eval_batches batches of eval_batch_size_prompts prompts
// (default store_batch_size_prompts), excluding the token ids the store excludes. Returns an empty
// function when n_eval_batches = 0.
// The eval prompts come from a second token source opened like the store's (same dataset,
// context_size, prepend_bos, tokenizer, separator), read once at the first call and reused at every
// eval, so that evals at different steps are comparable. Held out: the source first skips the
// windows the run will read, ceil((training_tokens + max(train_batch_size_tokens, 8192)) /
// context_size) + n_batches_in_buffer × store_batch_size_prompts (the training tokens, the
// initialisation sample and the store's read-ahead); when the dataset is shorter than that, the
// skip wraps around (modulo the dataset's windows) and the evals use data the run also trains on.
// An infinite source (Othello) is reopened with seed + 1 instead (other games). At most one pass
// over the dataset is evaluated (a short dataset gives fewer prompts).
std::function<json(const Sae&)> make_model_eval(const RunnerConfig& cfg,
                                                const ActivationsStore& store);

// The windows make_model_eval skips before its eval prompts (see above).
int64_t model_eval_skip_windows(const RunnerConfig& cfg);

}  // namespace saelab
