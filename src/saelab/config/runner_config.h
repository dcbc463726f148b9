// RunnerConfig: a training run's configuration, with the flat field names and defaults of SAELens's
// v5 `LanguageModelSAERunnerConfig` plus the v6 names, plus saelab's own keys
// (marked "saelab:" below). Loaded from TOML or JSON with `--set key=value` overrides, resolved
// (d_sae, lr_end, run_name, k filled in) and validated before any work starts; every fault is one
// saelab::Error line naming the key. docs/config.md documents every key.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/sae/config.h"
#include "saelab/sae/training_sae.h"

namespace saelab {

struct RunnerConfig {
  // --- Data generation --------------------------------------------------------------------
  std::string model_name = "gelu-2l";
  std::string model_class_name = "HookedTransformer";
  std::string hook_name = "blocks.0.hook_mlp_out";
  std::string hook_eval = "NOT_IN_USE";  // unused by SAELens too; accepted for ported configs
  int64_t hook_layer = 0;
  std::optional<int64_t> hook_head_index;
  // saelab: a transcoder's output hook (e.g. blocks.0.hook_mlp_out with hook_name
  // blocks.0.ln2.hook_normalized): the SAE reads hook_name and is trained to write this hook's
  // activations. Unset: an SAE.
  std::optional<std::string> hook_name_out;
  std::string dataset_path;  // "toy" selects saelab's synthetic toy model of superposition
  bool dataset_trust_remote_code = true;
  bool streaming = true;
  bool is_dataset_tokenized = true;
  int64_t context_size = 128;
  bool use_cached_activations = false;
  std::optional<std::string> cached_activations_path;
  bool prepend_bos = true;
  // Python slice arguments: (None,) = everything; [5, -5] = positions 5..-5.
  std::vector<std::optional<int64_t>> seqpos_slice = {std::nullopt};
  json model_kwargs = json::object();
  // null = SAELens's default: {"center_writing_weights": false} for HookedTransformer, else {}.
  json model_from_pretrained_kwargs = nullptr;
  json exclude_special_tokens = false;    // bool or list of token ids
  json sequence_separator_token = "bos";  // int, "bos" | "eos" | "sep", or null
  bool disable_concat_sequences = false;

  // --- SAE architecture -------------------------------------------------------------------
  // standard | gated | topk | batchtopk | jumprelu | matryoshka_batchtopk
  std::string architecture = "standard";
  int64_t d_in = 512;
  std::optional<int64_t> d_sae;             // resolved: d_in * expansion_factor when absent
  std::optional<int64_t> expansion_factor;  // 4 when neither d_sae nor expansion_factor is given
  std::optional<int64_t> d_out;  // a transcoder's output width (resolved: d_in when absent)
  bool skip_connection =
      false;                  // a transcoder's linear skip W_skip [d_out, d_in] (sparsify's name)
  std::string activation_fn;  // resolved: "topk" for topk, "relu" otherwise (SAELens v5)
  json activation_fn_kwargs = json::object();          // {"k": 100} for topk / batchtopk
  std::string b_dec_init_method = "geometric_median";  // geometric_median | mean | zeros
  bool apply_b_dec_to_input = true;
  bool normalize_sae_decoder = true;
  bool scale_sparsity_penalty_by_decoder_norm = false;
  bool decoder_heuristic_init = false;
  double decoder_heuristic_init_norm = 0.1;
  bool init_encoder_as_decoder_transpose = false;
  bool decoder_orthogonal_init = false;
  // none | expected_average_only_in | constant_norm_rescale | layer_norm
  std::string normalize_activations = "none";
  double noise_scale = 0.0;
  std::optional<std::string> from_pretrained_path;

  // --- Activations store ------------------------------------------------------------------
  int64_t n_batches_in_buffer = 20;
  int64_t store_batch_size_prompts = 32;
  int64_t training_tokens = 2'000'000;
  int64_t finetuning_tokens = 0;
  int64_t train_batch_size_tokens = 4096;
  std::string act_store_device = "with_model";

  // --- Optimiser and schedules ------------------------------------------------------------
  double lr = 3e-4;
  double adam_beta1 = 0.0;  // SAELens's default (not torch's 0.9)
  double adam_beta2 = 0.999;
  std::string lr_scheduler_name =
      "constant";  // constant | cosineannealing | cosineannealingwarmrestarts
  int64_t lr_warm_up_steps = 0;
  int64_t lr_decay_steps = 0;
  std::optional<double> lr_end;  // resolved: lr / 10
  int64_t n_restart_cycles = 1;
  std::optional<std::string> finetuning_method;  // scale | decoder | unrotated_decoder

  // --- SAE-specific training --------------------------------------------------------------
  double l1_coefficient = 1e-3;
  double lp_norm = 1.0;
  int64_t l1_warm_up_steps = 0;
  std::optional<std::string> mse_loss_normalization;  // null | "dense_batch"
  bool use_ghost_grads = false;
  int64_t feature_sampling_window = 2000;
  int64_t dead_feature_window = 1000;
  double dead_feature_threshold = 1e-8;
  double jumprelu_init_threshold = 0.001;
  double jumprelu_bandwidth = 0.001;
  double l0_coefficient = 1.0;
  int64_t l0_warm_up_steps = 0;
  double aux_loss_coefficient = 1.0;
  double topk_threshold_lr = 0.01;
  std::vector<int64_t> matryoshka_widths;  // increasing, last == d_sae (empty = just d_sae)

  // --- Logging and evals ------------------------------------------------------------------
  bool log_to_wandb = true;  // saelab: prints `wandb sync <run>/` (TensorBoard files) at the end
  bool log_activations_store_to_wandb = false;
  bool log_optimizer_state_to_wandb = false;
  std::string wandb_project = "mats_sae_training_language_model";
  std::optional<std::string> wandb_id;
  std::optional<std::string> wandb_entity;
  std::string run_name;  // resolved: "<d_sae>-L1-<l1>-LR-<lr>-Tokens-<tokens:.3e>" when empty
  int64_t wandb_log_frequency = 10;
  int64_t eval_every_n_wandb_logs = 100;
  int64_t n_eval_batches = 10;
  std::optional<int64_t> eval_batch_size_prompts;

  // --- Misc -------------------------------------------------------------------------------
  std::string device = "cpu";
  std::string dtype = "float32";
  int64_t seed = 42;
  int64_t n_checkpoints = 0;
  std::string checkpoint_path = "checkpoints";
  bool autocast = false;
  bool autocast_lm = false;
  bool compile_llm = false;
  std::optional<std::string> llm_compilation_mode;
  bool compile_sae = false;
  std::optional<std::string> sae_compilation_mode;
  bool resume = false;
  bool verbose = true;
  std::string sae_lens_version;
  std::string sae_lens_training_version;

  // --- saelab's own keys ------------------------------------------------------------------
  // saelab: Anthropic's resampling of dead latents every feature_sampling_window steps
  // (SAELens never shipped it).
  bool resample_dead_latents = false;
  // saelab: which part of dataset_path to read. The column of jsonl / Parquet / Arrow rows (""
  // = the first of input_ids, tokens, text); a Hugging Face dataset's hub-cache revision ("" =
  // main); its split ("" = train; for a local folder, "" reads every file).
  std::string dataset_column;
  std::string dataset_revision;
  std::string dataset_split;
  // saelab: how long a data-parallel rank waits for the others in a collective (all-reduce,
  // all-gather, barrier) before it fails with one line, e.g. when another rank hangs.
  int64_t ddp_timeout_s = 300;
  // saelab: the synthetic toy model of superposition (dataset_path = "toy"); see data/toy_model.h.
  int64_t toy_n_features = 512;
  double toy_feature_probability = 0.01;   // mean firing probability per feature per token
  double toy_probability_power_law = 0.0;  // p_i ∝ (i+1)^-alpha rescaled to mean p; 0 = uniform
  double toy_magnitude_mean = 1.0;         // magnitude |N(mean, std)| when firing
  double toy_magnitude_std = 0.0;
  int64_t toy_correlated_groups = 0;  // groups of features that fire together (0 = none)
  int64_t toy_group_size = 2;
  int64_t toy_seed = 0;  // feature directions; the batch stream follows `seed`

  // --- helpers (valid on a resolved config) -----------------------------------------------
  int64_t steps() const { return training_tokens / train_batch_size_tokens; }
  int64_t resolved_d_sae() const;  // d_sae, or d_in * (expansion_factor or 4)
  int64_t k() const;               // activation_fn_kwargs.k (default 100); 0 if not a k-sparse arch
  double resolved_lr_end() const;  // lr_end or lr / 10
  std::string resolved_run_name() const;  // run_name, or SAELens's generated name
  bool is_toy() const { return dataset_path == "toy"; }

  bool operator==(const RunnerConfig& o) const;
  bool operator!=(const RunnerConfig& o) const { return !(*this == o); }
};

// Loads a run config: `path` is a .toml or .json file ("" = SAELens's defaults); each override is
// "key=value" with value parsed as a TOML value (bare words are strings: architecture=topk).
// Tables [sae] and [logger] (SAELens v6 nesting) are flattened. Returns the resolved, validated
// config; throws saelab::Error naming the file/key on the first fault.
RunnerConfig load_runner_config(const std::string& path,
                                const std::vector<std::string>& set_overrides = {});

// The same from TOML text (e.g. the embedded default config); `name` stands for the file in errors
// ("configs/toy.toml (built in)").
RunnerConfig load_runner_config_text(const std::string& toml_text, const std::string& name,
                                     const std::vector<std::string>& set_overrides = {});

// Fills the derived fields (d_sae, expansion_factor when d_sae absent stays absent, lr_end,
// run_name, activation_fn_kwargs.k for k-sparse architectures, model_from_pretrained_kwargs) and
// validates; `where` names the source in errors. load_runner_config calls it; call it yourself on
// a config built in code.
RunnerConfig resolve_runner_config(RunnerConfig cfg, const std::string& where = "config");

// The digits N of a "blocks.N.<rest>" hook name ("" for any other name): the hook's block, which
// hook_layer must name.
std::string block_digits(const std::string& hook);

// The pieces of load_runner_config, for callers that look at the raw keys first (sweeps,
// train/sweep.h): a config file's keys ([sae]/[logger] flattened; "" gives {}), one parsed
// `--set key=value` (text = the item as given, for messages), and the resolved config from them.
struct ConfigOverride {
  std::string key;
  json value;
  std::string text;
};
json read_runner_config_keys(const std::string& path);
json read_runner_config_text_keys(const std::string& toml_text, const std::string& name);
ConfigOverride parse_config_override(const std::string& item);
// flat_file = nullptr: SAELens's defaults; `where` names the file in errors.
RunnerConfig runner_config_from_inputs(const json* flat_file, const std::string& where,
                                       const std::vector<ConfigOverride>& sets);

// Serialises every key (absent optionals omitted in TOML, null in JSON); loading the result gives
// an equal config.
std::string to_toml(const RunnerConfig& cfg);
json to_json(const RunnerConfig& cfg);

// Every key load_runner_config accepts (for docs, tests and "did you mean").
const std::vector<std::string>& runner_config_keys();

// What the training SAE needs of the run config.
TrainingSaeConfig training_sae_config(const RunnerConfig& cfg);

// The SAELens cfg.json fields of the SAE this run trains (batchtopk stays "batchtopk" here; the
// saver maps it to jumprelu).
SaeConfig to_sae_config(const RunnerConfig& cfg);

}  // namespace saelab
