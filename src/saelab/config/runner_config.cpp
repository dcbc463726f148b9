// RunnerConfig resolution (SAELens's __post_init__: d_sae, lr_end, run name, activation_fn and k)
// and validation: every inconsistent value is one saelab::Error line naming the key.
#include "saelab/config/runner_config.h"

#include <algorithm>
#include <cmath>

#include "saelab/config/config_fields.h"
#include "saelab/core/error.h"
#include "saelab/sae/registry.h"

namespace saelab {

std::string block_digits(const std::string& hook) {
  if (hook.rfind("blocks.", 0) != 0) return "";
  const size_t dot = hook.find('.', 7);
  const std::string digits = hook.substr(7, dot == std::string::npos ? dot : dot - 7);
  return digits.find_first_not_of("0123456789") == std::string::npos ? digits : "";
}

namespace {

const std::vector<std::string> kSchedulers = {"constant", "cosineannealing",
                                              "cosineannealingwarmrestarts"};
const std::vector<std::string> kBDecInit = {"geometric_median", "mean", "zeros"};
const std::vector<std::string> kNormalize = {"none", "expected_average_only_in",
                                             "constant_norm_rescale", "layer_norm"};

std::string join(const std::vector<std::string>& xs) {
  std::string s;
  for (size_t i = 0; i < xs.size(); ++i) s += (i ? ", " : "") + xs[i];
  return s;
}

void check_one_of(const std::string& where, const char* key, const std::string& value,
                  const std::vector<std::string>& valid) {
  if (std::find(valid.begin(), valid.end(), value) == valid.end())
    fail("{}: {} = '{}' is not one of: {}", where, key, value, join(valid));
}

bool is_k_sparse(const std::string& arch) {
  const Architecture* a = lookup_architecture(arch);
  return a && a->k_sparse;
}

std::vector<std::string> architecture_list() {
  std::vector<std::string> names;
  for (const auto& a : architectures()) names.push_back(a.name);
  return names;
}

// Python's "{:3.3e}" (2000000 -> "2.000e+06").
std::string python_sci(double x) { return fmt::format("{:.3e}", x); }

// Python's str(float): shortest round-trip text, always with a '.' or exponent.
std::string python_float(double x) {
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// The number of positions python's range(context_size)[slice(*seqpos)] keeps.
int64_t slice_length(const std::vector<std::optional<int64_t>>& s, int64_t n) {
  std::optional<int64_t> start, stop, step;
  if (s.size() == 1) stop = s[0];
  if (s.size() >= 2) start = s[0], stop = s[1];
  if (s.size() == 3) step = s[2];
  int64_t st = step.value_or(1);
  auto norm = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  int64_t a = start ? norm(*start) : 0, b = stop ? norm(*stop) : n;
  return b > a ? (b - a + st - 1) / st : 0;
}

// Where a key has an effect: a run reads the toy model, a language model's activations, or cached
// activations. A key set (away from its default) for a run it cannot affect is refused, so no
// accepted key is silently ignored.
enum Scope : unsigned { kToy = 1, kModel = 2, kCache = 4 };

const std::vector<std::pair<const char*, unsigned>>& key_scopes() {
  static const std::vector<std::pair<const char*, unsigned>> scopes = {
      // What the model run reads; a cached run records these in the SAE's cfg.json (where its
      // activations came from), and hook_name is checked against the cache.
      {"model_name", kModel | kCache},
      {"hook_name", kModel | kCache},
      {"hook_layer", kModel | kCache},
      {"hook_head_index", kModel | kCache},
      {"hook_name_out", kModel | kCache},
      {"context_size", kModel | kCache},
      {"prepend_bos", kModel | kCache},
      {"seqpos_slice", kModel | kCache},
      {"model_from_pretrained_kwargs", kModel | kCache},
      // How `saelab cache` made the activations from the same config: a cached run is that config
      // with use_cached_activations = true, so these stay accepted as the cache's provenance.
      {"exclude_special_tokens", kModel | kCache},
      {"sequence_separator_token", kModel | kCache},
      {"disable_concat_sequences", kModel | kCache},
      {"dataset_column", kModel | kCache},
      {"dataset_revision", kModel | kCache},
      {"dataset_split", kModel | kCache},
      {"n_batches_in_buffer", kModel | kCache},
      {"store_batch_size_prompts", kModel | kCache},
      // Only a model run runs the model evals.
      {"eval_every_n_wandb_logs", kModel},
      {"n_eval_batches", kModel},
      {"eval_batch_size_prompts", kModel},
      // Also the folder `saelab cache` writes for a model run.
      {"cached_activations_path", kModel | kCache},
      {"toy_n_features", kToy},
      {"toy_feature_probability", kToy},
      {"toy_probability_power_law", kToy},
      {"toy_magnitude_mean", kToy},
      {"toy_magnitude_std", kToy},
      {"toy_correlated_groups", kToy},
      {"toy_group_size", kToy},
      {"toy_seed", kToy},
  };
  return scopes;
}

// SAELens keys saelab accepts at their default value only (ported configs carry them), each with
// why another value is refused.
const std::vector<std::pair<const char*, const char*>>& default_only_keys() {
  static const std::vector<std::pair<const char*, const char*>> keys = {
      {"model_class_name", "saelab runs its own transformer with HookedTransformer's semantics"},
      {"hook_eval", "SAELens never uses it either"},
      {"dataset_trust_remote_code", "saelab never runs a dataset's code"},
      {"streaming", "saelab always streams datasets from disk"},
      {"is_dataset_tokenized",
       "saelab tells token ids from text by the dataset's columns (SAELens deprecated the key)"},
      {"noise_scale", "saelab does not add noise to the pre-activations"},
      {"finetuning_tokens", "saelab has no fine-tuning phase"},
      {"finetuning_method", "saelab has no fine-tuning phase"},
      {"log_activations_store_to_wandb", "saelab logs no activation-store statistics"},
      {"log_optimizer_state_to_wandb", "saelab logs no optimizer state"},
      {"compile_llm", "there is no torch.compile in saelab (it is native code already)"},
      {"llm_compilation_mode", "there is no torch.compile in saelab (it is native code already)"},
      {"compile_sae", "there is no torch.compile in saelab (it is native code already)"},
      {"sae_compilation_mode", "there is no torch.compile in saelab (it is native code already)"},
      {"sae_lens_version", "it would mark the saved cfg.json as SAELens's own layout"},
  };
  return keys;
}

void check_scope(const RunnerConfig& c, const std::string& w) {
  static const RunnerConfig defaults;
  const unsigned scope = c.is_toy() ? kToy : (c.use_cached_activations ? kCache : kModel);
  const char* run = c.is_toy() ? "the toy model (dataset_path = \"toy\")"
                               : (c.use_cached_activations ? "cached activations"
                                                           : "a language model's activations");
  auto differs = [&](const std::string& key) {
    const auto* f = config_detail::find_field(key);
    if (!f) return false;
    // A saved config.toml holds the resolved value of model_from_pretrained_kwargs.
    if (key == "model_from_pretrained_kwargs" &&
        c.model_from_pretrained_kwargs == json{{"center_writing_weights", false}})
      return false;
    return f->get(c) != f->get(defaults);
  };
  for (const auto& [key, where] : key_scopes())
    if (!(where & scope) && differs(key)) {
      std::string applies;
      if (where & kModel) applies += "model runs";
      if (where & kCache) applies += std::string(applies.empty() ? "" : " and ") + "cached runs";
      if (where & kToy) applies += std::string(applies.empty() ? "" : " and ") + "toy runs";
      fail("{}: {} = {} has no effect on a run of {} (it applies to {}); remove it", w, key,
           config_detail::find_field(key)->get(c).dump(), run, applies);
    }
  for (const auto& [key, why] : default_only_keys())
    if (differs(key))
      fail("{}: {} = {} is not supported: {}; remove it", w, key,
           config_detail::find_field(key)->get(c).dump(), why);
}

}  // namespace

int64_t RunnerConfig::resolved_d_sae() const {
  if (d_sae) return *d_sae;
  return d_in * expansion_factor.value_or(4);
}

int64_t RunnerConfig::k() const {
  if (!is_k_sparse(architecture)) return 0;
  auto it = activation_fn_kwargs.find("k");
  if (it == activation_fn_kwargs.end() || !it->is_number()) return 100;
  return it->is_number_integer() ? it->get<int64_t>() : int64_t(it->get<double>());
}

double RunnerConfig::resolved_lr_end() const { return lr_end ? *lr_end : lr / 10; }

std::string RunnerConfig::resolved_run_name() const {
  if (!run_name.empty()) return run_name;
  return fmt::format("{}-L1-{}-LR-{}-Tokens-{}", resolved_d_sae(), python_float(l1_coefficient),
                     python_float(lr), python_sci(double(training_tokens)));
}

RunnerConfig resolve_runner_config(RunnerConfig c, const std::string& where) {
  const std::string& w = where;
  // --- enumerations
  check_one_of(w, "architecture", c.architecture, architecture_list());
  const Architecture& arch = find_architecture(c.architecture, w);
  check_one_of(w, "lr_scheduler_name", c.lr_scheduler_name, kSchedulers);
  check_one_of(w, "b_dec_init_method", c.b_dec_init_method, kBDecInit);
  check_one_of(w, "normalize_activations", c.normalize_activations, kNormalize);
  // The trainer keeps parameters, gradients and Adam moments in the SAE's dtype; half precision
  // would lose Adam's small updates, so it is refused rather than silently trained in float32.
  if (c.dtype == "float16" || c.dtype == "bfloat16")
    fail(
        "{}: dtype = '{}' is not supported for training (parameters and Adam moments need float32 "
        "or float64); train in float32 and convert the saved SAE",
        w, c.dtype);
  check_one_of(w, "dtype", c.dtype, {"float32", "float64"});
  if (c.mse_loss_normalization && *c.mse_loss_normalization != "dense_batch")
    fail("{}: mse_loss_normalization = '{}' is not one of: dense_batch (or absent)", w,
         *c.mse_loss_normalization);
  if (c.finetuning_method)
    check_one_of(w, "finetuning_method", *c.finetuning_method,
                 {"scale", "decoder", "unrotated_decoder"});
  if (!(c.device == "cpu" || c.device == "cuda" || c.device == "mps" ||
        (c.device.rfind("cuda:", 0) == 0 && c.device.size() > 5 &&
         c.device.find_first_not_of("0123456789", 5) == std::string::npos)))
    fail("{}: device = '{}' is not one of: cpu, cuda, cuda:N, mps", w, c.device);

  // --- activation function and k (SAELens v5: topk implies activation_fn "topk", k = 100)
  if (c.activation_fn.empty()) c.activation_fn = arch.activation_fns.front();
  if (std::find(arch.activation_fns.begin(), arch.activation_fns.end(), c.activation_fn) ==
      arch.activation_fns.end())
    fail("{}: activation_fn = '{}' does not apply to architecture '{}' (expected {})", w,
         c.activation_fn, c.architecture, join(arch.activation_fns));
  if (c.use_ghost_grads && !arch.ghost_grads)
    fail("{}: use_ghost_grads = true, but architecture '{}' has no ghost grads (standard has)", w,
         c.architecture);

  // --- keys SAELens accepts that saelab does not implement: refused, never silently ignored
  if (c.autocast)
    fail(
        "{}: autocast = true is not supported: saelab trains the SAE in float32 or float64 (set "
        "dtype instead)",
        w);
  if (c.autocast_lm)
    fail("{}: autocast_lm = true is not supported: saelab runs the language model in float32", w);
  if (c.act_store_device != "with_model")
    fail(
        "{}: act_store_device = '{}' is not supported: the activation buffer lives on the model's "
        "device (\"with_model\")",
        w, c.act_store_device);
  if (!c.model_kwargs.empty())
    fail(
        "{}: model_kwargs = {} is not supported: saelab's forward takes no extra arguments "
        "(model_from_pretrained_kwargs configures loading)",
        w, c.model_kwargs.dump());

  // --- sizes
  if (c.d_in <= 0) fail("{}: d_in must be positive, got {}", w, c.d_in);
  if (c.expansion_factor && *c.expansion_factor <= 0)
    fail("{}: expansion_factor must be positive, got {}", w, *c.expansion_factor);
  if (c.d_sae && *c.d_sae <= 0) fail("{}: d_sae must be positive, got {}", w, *c.d_sae);
  if (c.d_sae && c.expansion_factor && *c.d_sae != c.d_in * *c.expansion_factor)
    fail("{}: d_sae = {} disagrees with d_in * expansion_factor = {} * {} = {}; give one of them",
         w, *c.d_sae, c.d_in, *c.expansion_factor, c.d_in * *c.expansion_factor);
  if (!c.d_sae && !c.expansion_factor) c.expansion_factor = 4;
  if (!c.d_sae) c.d_sae = c.d_in * *c.expansion_factor;
  const int64_t d_sae = *c.d_sae;

  if (is_k_sparse(c.architecture)) {
    auto it = c.activation_fn_kwargs.find("k");
    if (it == c.activation_fn_kwargs.end() || it->is_null()) {
      c.activation_fn_kwargs["k"] = 100;
    } else if (!it->is_number() ||
               (it->is_number_float() && it->get<double>() != std::floor(it->get<double>()))) {
      fail("{}: k (activation_fn_kwargs.k) expects an integer, got {}", w, it->dump());
    } else if (it->is_number_float()) {
      *it = int64_t(it->get<double>());
    }
    int64_t k = c.k();
    if (k <= 0 || k >= d_sae)
      fail("{}: k = {} must satisfy 0 < k < d_sae = {} for architecture '{}'", w, k, d_sae,
           c.architecture);
  }
  // Only a matryoshka SAE uses the widths; the toy config lists them for it while training others.
  if (arch.matryoshka && !c.matryoshka_widths.empty()) {
    int64_t prev = 0;
    for (int64_t width : c.matryoshka_widths) {
      if (width <= prev)
        fail("{}: matryoshka_widths must be positive and strictly increasing, got {}", w,
             json(c.matryoshka_widths).dump());
      prev = width;
    }
    if (prev != d_sae)
      fail("{}: matryoshka_widths must end at d_sae = {}, got last width {}", w, d_sae, prev);
  }

  // --- token counts and steps
  if (c.train_batch_size_tokens <= 0)
    fail("{}: train_batch_size_tokens must be positive, got {}", w, c.train_batch_size_tokens);
  if (c.training_tokens < c.train_batch_size_tokens)
    fail("{}: training_tokens = {} is less than one batch (train_batch_size_tokens = {})", w,
         c.training_tokens, c.train_batch_size_tokens);
  if (c.finetuning_tokens < 0)
    fail("{}: finetuning_tokens must be >= 0, got {}", w, c.finetuning_tokens);
  const int64_t steps = c.steps();
  auto check_steps = [&](const char* key, int64_t v) {
    if (v < 0) fail("{}: {} must be >= 0, got {}", w, key, v);
    if (v > steps)
      fail(
          "{}: {} = {} is longer than training ({} steps = training_tokens / "
          "train_batch_size_tokens)",
          w, key, v, steps);
  };
  check_steps("lr_warm_up_steps", c.lr_warm_up_steps);
  check_steps("lr_decay_steps", c.lr_decay_steps);
  check_steps("l1_warm_up_steps", c.l1_warm_up_steps);
  check_steps("l0_warm_up_steps", c.l0_warm_up_steps);
  if (c.lr_warm_up_steps + c.lr_decay_steps > steps)
    fail("{}: lr_warm_up_steps + lr_decay_steps = {} + {} is longer than training ({} steps)", w,
         c.lr_warm_up_steps, c.lr_decay_steps, steps);

  // --- optimiser and coefficients
  if (!(c.lr > 0) || !std::isfinite(c.lr)) fail("{}: lr must be positive, got {}", w, c.lr);
  if (!(c.adam_beta1 >= 0 && c.adam_beta1 < 1))
    fail("{}: adam_beta1 must be in [0, 1), got {}", w, c.adam_beta1);
  if (!(c.adam_beta2 >= 0 && c.adam_beta2 < 1))
    fail("{}: adam_beta2 must be in [0, 1), got {}", w, c.adam_beta2);
  if (!c.lr_end) c.lr_end = c.lr / 10;
  if (!(*c.lr_end >= 0)) fail("{}: lr_end must be >= 0, got {}", w, *c.lr_end);
  if (c.n_restart_cycles < 1)
    fail("{}: n_restart_cycles must be >= 1, got {}", w, c.n_restart_cycles);
  auto non_negative = [&](const char* key, double v) {
    if (!(v >= 0) || !std::isfinite(v))
      fail("{}: {} must be a finite number >= 0, got {}", w, key, v);
  };
  non_negative("l1_coefficient", c.l1_coefficient);
  non_negative("l0_coefficient", c.l0_coefficient);
  non_negative("aux_loss_coefficient", c.aux_loss_coefficient);
  non_negative("dead_feature_threshold", c.dead_feature_threshold);
  non_negative("noise_scale", c.noise_scale);
  if (!(c.lp_norm > 0)) fail("{}: lp_norm must be positive, got {}", w, c.lp_norm);
  if (!(c.jumprelu_init_threshold > 0))
    fail("{}: jumprelu_init_threshold must be positive, got {}", w, c.jumprelu_init_threshold);
  if (!(c.jumprelu_bandwidth > 0))
    fail("{}: jumprelu_bandwidth must be positive, got {}", w, c.jumprelu_bandwidth);
  if (!(c.topk_threshold_lr > 0 && c.topk_threshold_lr <= 1))
    fail("{}: topk_threshold_lr must be in (0, 1], got {}", w, c.topk_threshold_lr);
  if (!(c.decoder_heuristic_init_norm > 0))
    fail("{}: decoder_heuristic_init_norm must be positive, got {}", w,
         c.decoder_heuristic_init_norm);
  // SAELens's own consistency rules.
  if (c.normalize_sae_decoder && c.decoder_heuristic_init)
    fail(
        "{}: normalize_sae_decoder = true conflicts with decoder_heuristic_init = true "
        "(set normalize_sae_decoder = false)",
        w);
  if (c.normalize_sae_decoder && c.scale_sparsity_penalty_by_decoder_norm)
    fail(
        "{}: scale_sparsity_penalty_by_decoder_norm = true makes no sense with "
        "normalize_sae_decoder = true (decoder norms are 1); set normalize_sae_decoder = false",
        w);
  if (c.finetuning_method && *c.finetuning_method == "decoder" && c.apply_b_dec_to_input)
    fail("{}: finetuning_method = 'decoder' needs apply_b_dec_to_input = false", w);
  if (c.resume)
    fail("{}: resume = true is not a config key in saelab; use `saelab train --resume RUN_DIR`", w);

  // --- windows and counts
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail("{}: {} must be positive, got {}", w, key, v);
  };
  positive("context_size", c.context_size);
  positive("n_batches_in_buffer", c.n_batches_in_buffer);
  positive("store_batch_size_prompts", c.store_batch_size_prompts);
  positive("feature_sampling_window", c.feature_sampling_window);
  positive("dead_feature_window", c.dead_feature_window);
  positive("wandb_log_frequency", c.wandb_log_frequency);
  positive("eval_every_n_wandb_logs", c.eval_every_n_wandb_logs);
  if (c.n_eval_batches < 0) fail("{}: n_eval_batches must be >= 0, got {}", w, c.n_eval_batches);
  if (c.n_checkpoints < 0) fail("{}: n_checkpoints must be >= 0, got {}", w, c.n_checkpoints);
  positive("ddp_timeout_s", c.ddp_timeout_s);
  if (c.eval_batch_size_prompts && *c.eval_batch_size_prompts <= 0)
    fail("{}: eval_batch_size_prompts must be positive, got {}", w, *c.eval_batch_size_prompts);
  if (c.hook_layer < 0) fail("{}: hook_layer must be >= 0, got {}", w, c.hook_layer);
  // SAELens runs the model up to hook_layer: it must be the hook's block.
  if (const std::string digits = block_digits(c.hook_name);
      !digits.empty() && (digits.size() > 9 || std::stoll(digits) != c.hook_layer) && !c.is_toy())
    fail("{}: hook_layer = {} but hook_name '{}' is in block {}; set hook_layer = {}", w,
         c.hook_layer, c.hook_name, digits, digits);
  if (c.hook_head_index && *c.hook_head_index < 0)
    fail("{}: hook_head_index must be >= 0, got {}", w, *c.hook_head_index);
  if (c.seqpos_slice.size() == 3 && c.seqpos_slice[2] && *c.seqpos_slice[2] < 1)
    fail("{}: seqpos_slice step must be at least 1, got {}", w, *c.seqpos_slice[2]);
  if (slice_length(c.seqpos_slice, c.context_size) == 0) {
    json slice = json::array();
    for (const auto& x : c.seqpos_slice) slice.push_back(x ? json(*x) : json(nullptr));
    fail("{}: seqpos_slice {} keeps no positions of context_size = {}", w, slice.dump(),
         c.context_size);
  }
  if (c.checkpoint_path.empty()) fail("{}: checkpoint_path must not be empty", w);

  // --- transcoders
  if (c.hook_name_out) {
    if (!arch.transcoder)
      fail(
          "{}: architecture '{}' does not train as a transcoder (hook_name_out): its auxiliary "
          "loss reconstructs the input; use standard, topk, batchtopk, jumprelu or "
          "matryoshka_batchtopk",
          w, c.architecture);
    if (*c.hook_name_out == c.hook_name)
      fail("{}: hook_name_out = hook_name = '{}': a transcoder maps one hook to another", w,
           c.hook_name);
    if (c.apply_b_dec_to_input)
      fail(
          "{}: apply_b_dec_to_input = true is not supported for transcoders (b_dec is the "
          "output's bias, [d_out]); set apply_b_dec_to_input = false",
          w);
    if (!c.d_out) c.d_out = c.d_in;
    if (*c.d_out <= 0) fail("{}: d_out must be positive, got {}", w, *c.d_out);
    if (c.normalize_activations != "none" && c.normalize_activations != "expected_average_only_in")
      fail(
          "{}: normalize_activations = '{}' is not supported for transcoders (SAELens applies no "
          "output normalisation to them); use none or expected_average_only_in",
          w, c.normalize_activations);
    if (c.hook_head_index)
      fail("{}: hook_head_index is not supported for transcoders (they read a whole hook)", w);
    if (c.skip_connection && c.mse_loss_normalization)
      fail("{}: mse_loss_normalization is not supported with skip_connection = true", w);
    if (c.skip_connection && arch.matryoshka)
      fail(
          "{}: skip_connection = true is not supported for matryoshka_batchtopk (its nested "
          "reconstructions would each need the skip term)",
          w);
    if ((c.init_encoder_as_decoder_transpose || c.decoder_heuristic_init) && *c.d_out != c.d_in)
      fail(
          "{}: init_encoder_as_decoder_transpose and decoder_heuristic_init set W_enc = W_decᵀ, "
          "which needs d_out = d_in (got d_out = {}, d_in = {})",
          w, *c.d_out, c.d_in);
    if (c.resample_dead_latents)
      fail("{}: resample_dead_latents is not supported for transcoders; use topk's AuxK", w);
  } else if (c.d_out || c.skip_connection) {
    fail("{}: d_out and skip_connection describe a transcoder: set hook_name_out as well", w);
  }

  // --- data source
  if (c.use_cached_activations &&
      (!c.cached_activations_path || c.cached_activations_path->empty()))
    fail(
        "{}: use_cached_activations = true needs cached_activations_path (a .safetensors file "
        "or a folder of them)",
        w);
  if (c.use_cached_activations && c.is_toy())
    fail("{}: use_cached_activations = true conflicts with dataset_path = \"toy\"; choose one", w);
  if (c.is_toy()) {
    positive("toy_n_features", c.toy_n_features);
    if (!(c.toy_feature_probability > 0 && c.toy_feature_probability <= 1))
      fail("{}: toy_feature_probability must be in (0, 1], got {}", w, c.toy_feature_probability);
    non_negative("toy_probability_power_law", c.toy_probability_power_law);
    non_negative("toy_magnitude_std", c.toy_magnitude_std);
    if (!std::isfinite(c.toy_magnitude_mean))
      fail("{}: toy_magnitude_mean must be finite, got {}", w, c.toy_magnitude_mean);
    if (c.toy_correlated_groups < 0)
      fail("{}: toy_correlated_groups must be >= 0, got {}", w, c.toy_correlated_groups);
    positive("toy_group_size", c.toy_group_size);
    if (c.toy_correlated_groups * c.toy_group_size > c.toy_n_features)
      fail("{}: toy_correlated_groups * toy_group_size = {} * {} exceeds toy_n_features = {}", w,
           c.toy_correlated_groups, c.toy_group_size, c.toy_n_features);
  }

  check_scope(c, w);

  // --- the rest of SAELens's __post_init__
  if (c.model_from_pretrained_kwargs.is_null())
    c.model_from_pretrained_kwargs = c.model_class_name == "HookedTransformer"
                                         ? json{{"center_writing_weights", false}}
                                         : json::object();
  if (c.run_name.empty()) c.run_name = c.resolved_run_name();
  return c;
}

TrainingSaeConfig training_sae_config(const RunnerConfig& cfg) {
  TrainingSaeConfig t;
  t.architecture = cfg.architecture;
  t.dtype = sae_scalar_type(cfg.dtype, "dtype");
  t.activation_fn = cfg.activation_fn == "tanh-relu" ? cfg.activation_fn : "relu";
  t.d_in = cfg.d_in;
  t.d_sae = cfg.resolved_d_sae();
  t.k = cfg.k();
  t.apply_b_dec_to_input = cfg.apply_b_dec_to_input;
  t.scale_sparsity_penalty_by_decoder_norm = cfg.scale_sparsity_penalty_by_decoder_norm;
  t.lp_norm = cfg.lp_norm;
  t.mse_loss_normalization = cfg.mse_loss_normalization;
  t.use_ghost_grads = cfg.use_ghost_grads;
  t.aux_loss_coefficient = cfg.aux_loss_coefficient;
  t.jumprelu_init_threshold = cfg.jumprelu_init_threshold;
  t.jumprelu_bandwidth = cfg.jumprelu_bandwidth;
  t.topk_threshold_lr = cfg.topk_threshold_lr;
  t.matryoshka_widths = cfg.matryoshka_widths;
  t.d_out = cfg.hook_name_out ? cfg.d_out.value_or(cfg.d_in) : 0;
  t.skip_connection = cfg.skip_connection;
  return t;
}

SaeConfig to_sae_config(const RunnerConfig& c) {
  SaeConfig s;
  s.architecture = c.architecture;
  s.d_in = c.d_in;
  s.d_sae = c.resolved_d_sae();
  s.dtype = c.dtype;
  s.device = c.device;
  s.apply_b_dec_to_input = c.apply_b_dec_to_input;
  s.normalize_activations = c.normalize_activations;
  s.k = c.k();
  s.model_name = c.model_name;
  s.hook_name = c.hook_name;
  s.hook_layer = c.hook_layer;
  s.hook_head_index = c.hook_head_index;
  if (c.hook_name_out) {
    s.d_out = c.d_out.value_or(c.d_in);
    s.skip_connection = c.skip_connection;
    s.hook_name_out = *c.hook_name_out;
    const std::string digits = block_digits(*c.hook_name_out);
    s.hook_layer_out = digits.empty() || digits.size() > 9 ? 0 : std::stoll(digits);
  }
  s.context_size = c.context_size;
  s.prepend_bos = c.prepend_bos;
  s.dataset_path = c.dataset_path;
  json slice = json::array();
  for (const auto& x : c.seqpos_slice) slice.push_back(x ? json(*x) : json(nullptr));
  s.seqpos_slice = slice;
  s.model_from_pretrained_kwargs =
      c.model_from_pretrained_kwargs.is_null() ? json::object() : c.model_from_pretrained_kwargs;
  // The SAELens version a ported config names travels with the SAE it trains.
  if (!c.sae_lens_training_version.empty())
    s.extra["sae_lens_training_version"] = c.sae_lens_training_version;
  if (c.activation_fn_kwargs.is_object() && !c.activation_fn_kwargs.empty())
    s.extra["activation_fn_kwargs"] = c.activation_fn_kwargs;
  return s;
}

}  // namespace saelab
