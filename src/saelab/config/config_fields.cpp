// The RunnerConfig key table (see config_fields.h): one line per key, typed through the member
// pointer so that a new field needs exactly one line here.
#include "saelab/config/config_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "saelab/core/error.h"

namespace saelab::config_detail {

std::string describe_value(const json& v) {
  std::string kind;
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      kind = "boolean";
      break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      kind = "integer";
      break;
    case json::value_t::number_float:
      kind = "float";
      break;
    case json::value_t::string:
      kind = "string";
      break;
    case json::value_t::array:
      kind = "array";
      break;
    case json::value_t::object:
      kind = "table";
      break;
    default:
      kind = "value";
      break;
  }
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return kind + " " + text;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {

[[noreturn]] void type_error(const std::string& where, const std::string& key, const char* expected,
                             const json& v) {
  fail("{}: key '{}' expects {}, got {}", where, key, expected, describe_value(v));
}

// An integer, or a float with an integral value (TOML writes 2e6 as a float).
int64_t as_int(const json& v, const std::string& key, const std::string& where) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      type_error(where, key, "an integer", v);
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return int64_t(d);
  }
  type_error(where, key, "an integer", v);
}

template <typename T>
struct Conv;

template <>
struct Conv<bool> {
  static constexpr const char* expected = "a boolean";
  static bool from(const json& v, const std::string& k, const std::string& w) {
    if (!v.is_boolean()) type_error(w, k, expected, v);
    return v.get<bool>();
  }
  static json to(bool b) { return b; }
};
template <>
struct Conv<int64_t> {
  static constexpr const char* expected = "an integer";
  static int64_t from(const json& v, const std::string& k, const std::string& w) {
    return as_int(v, k, w);
  }
  static json to(int64_t i) { return i; }
};
template <>
struct Conv<double> {
  static constexpr const char* expected = "a number";
  static double from(const json& v, const std::string& k, const std::string& w) {
    if (!v.is_number()) type_error(w, k, expected, v);
    return v.get<double>();
  }
  static json to(double d) { return d; }
};
template <>
struct Conv<std::string> {
  static constexpr const char* expected = "a string";
  static std::string from(const json& v, const std::string& k, const std::string& w) {
    if (!v.is_string()) type_error(w, k, expected, v);
    return v.get<std::string>();
  }
  static json to(const std::string& s) { return s; }
};
template <typename T>
struct Conv<std::optional<T>> {
  static constexpr const char* expected = Conv<T>::expected;
  static std::optional<T> from(const json& v, const std::string& k, const std::string& w) {
    if (v.is_null()) return std::nullopt;
    return Conv<T>::from(v, k, w);
  }
  static json to(const std::optional<T>& o) { return o ? Conv<T>::to(*o) : json(nullptr); }
};
template <>
struct Conv<std::vector<int64_t>> {
  static constexpr const char* expected = "an array of integers";
  static std::vector<int64_t> from(const json& v, const std::string& k, const std::string& w) {
    if (!v.is_array()) type_error(w, k, expected, v);
    std::vector<int64_t> out;
    for (const auto& e : v) {
      if (!e.is_number()) type_error(w, k, expected, v);
      out.push_back(as_int(e, k, w));
    }
    return out;
  }
  static json to(const std::vector<int64_t>& xs) { return xs; }
};
// seqpos_slice: Python slice arguments; None is null in JSON and "none" in TOML (which has no
// null).
template <>
struct Conv<std::vector<std::optional<int64_t>>> {
  static constexpr const char* expected = "an array of up to 3 integers or \"none\"";
  static std::vector<std::optional<int64_t>> from(const json& v, const std::string& k,
                                                  const std::string& w) {
    if (!v.is_array() || v.empty() || v.size() > 3) type_error(w, k, expected, v);
    std::vector<std::optional<int64_t>> out;
    for (const auto& e : v) {
      if (e.is_null() || (e.is_string() && (e == "none" || e == "None")))
        out.push_back(std::nullopt);
      else if (e.is_number())
        out.push_back(as_int(e, k, w));
      else
        type_error(w, k, expected, v);
    }
    return out;
  }
  static json to(const std::vector<std::optional<int64_t>>& xs) {
    json a = json::array();
    for (const auto& x : xs) a.push_back(x ? json(*x) : json(nullptr));
    return a;
  }
};
template <>
struct Conv<json> {
  static constexpr const char* expected = "a value";
  static json from(const json& v, const std::string&, const std::string&) { return v; }
  static json to(const json& j) { return j; }
};

template <typename T>
Field make(const char* name, const char* group, T RunnerConfig::*m,
           const char* expected = Conv<T>::expected) {
  Field f;
  f.name = name;
  f.group = group;
  f.expected = expected;
  f.is_string =
      std::is_same<T, std::string>::value || std::is_same<T, std::optional<std::string>>::value;
  f.is_optional = std::is_same<T, std::optional<int64_t>>::value ||
                  std::is_same<T, std::optional<double>>::value ||
                  std::is_same<T, std::optional<std::string>>::value;
  std::string key = name;
  f.set = [m, key](RunnerConfig& c, const json& v, const std::string& where) {
    c.*m = Conv<T>::from(v, key, where);
  };
  f.get = [m](const RunnerConfig& c) { return Conv<T>::to(c.*m); };
  return f;
}

// A JSON-typed field with a shape check (object, object-or-null, bool-or-int-list, ...).
Field make_json(const char* name, const char* group, json RunnerConfig::*m, const char* expected,
                std::function<bool(const json&)> ok) {
  Field f = make(name, group, m, expected);
  std::string key = name;
  std::string exp = expected;
  f.is_optional = ok(json(nullptr));
  f.set = [m, key, exp, ok](RunnerConfig& c, const json& v, const std::string& where) {
    if (!ok(v)) type_error(where, key, exp.c_str(), v);
    c.*m = v;
  };
  return f;
}

bool is_object(const json& v) { return v.is_object(); }
bool is_object_or_null(const json& v) { return v.is_null() || v.is_object(); }

std::vector<Field> build() {
  using R = RunnerConfig;
  const char* DATA = "Data generation";
  const char* ARCH = "SAE architecture";
  const char* STORE = "Activations store";
  const char* OPT = "Optimiser and learning-rate schedule";
  const char* SAE = "SAE-specific training";
  const char* LOG = "Logging and evals";
  const char* MISC = "Misc";
  const char* OWN = "saelab's own keys";
  const char* TOY = "saelab's toy model (dataset_path = \"toy\")";
  std::vector<Field> v = {
      make("model_name", DATA, &R::model_name),
      make("model_class_name", DATA, &R::model_class_name),
      make("hook_name", DATA, &R::hook_name),
      make("hook_eval", DATA, &R::hook_eval),
      make("hook_layer", DATA, &R::hook_layer),
      make("hook_head_index", DATA, &R::hook_head_index),
      make("hook_name_out", DATA, &R::hook_name_out),
      make("dataset_path", DATA, &R::dataset_path),
      make("dataset_trust_remote_code", DATA, &R::dataset_trust_remote_code),
      make("streaming", DATA, &R::streaming),
      make("is_dataset_tokenized", DATA, &R::is_dataset_tokenized),
      make("context_size", DATA, &R::context_size),
      make("use_cached_activations", DATA, &R::use_cached_activations),
      make("cached_activations_path", DATA, &R::cached_activations_path),
      make("prepend_bos", DATA, &R::prepend_bos),
      make("seqpos_slice", DATA, &R::seqpos_slice),
      make_json("model_kwargs", DATA, &R::model_kwargs, "a table", is_object),
      make_json("model_from_pretrained_kwargs", DATA, &R::model_from_pretrained_kwargs, "a table",
                is_object_or_null),
      make_json("exclude_special_tokens", DATA, &R::exclude_special_tokens,
                "a boolean or an array of token ids",
                [](const json& x) {
                  if (x.is_boolean()) return true;
                  if (!x.is_array()) return false;
                  for (const auto& e : x)
                    if (!e.is_number_integer()) return false;
                  return true;
                }),
      make_json("sequence_separator_token", DATA, &R::sequence_separator_token,
                "a token id, \"bos\", \"eos\", \"sep\" or null",
                [](const json& x) {
                  return x.is_null() || x.is_number_integer() ||
                         (x.is_string() && (x == "bos" || x == "eos" || x == "sep"));
                }),
      make("disable_concat_sequences", DATA, &R::disable_concat_sequences),

      make("architecture", ARCH, &R::architecture),
      make("d_in", ARCH, &R::d_in),
      make("d_sae", ARCH, &R::d_sae),
      make("expansion_factor", ARCH, &R::expansion_factor),
      make("d_out", ARCH, &R::d_out),
      make("skip_connection", ARCH, &R::skip_connection),
      make("activation_fn", ARCH, &R::activation_fn),
      make_json("activation_fn_kwargs", ARCH, &R::activation_fn_kwargs, "a table", is_object),
      make("b_dec_init_method", ARCH, &R::b_dec_init_method),
      make("apply_b_dec_to_input", ARCH, &R::apply_b_dec_to_input),
      make("normalize_sae_decoder", ARCH, &R::normalize_sae_decoder),
      make("scale_sparsity_penalty_by_decoder_norm", ARCH,
           &R::scale_sparsity_penalty_by_decoder_norm),
      make("decoder_heuristic_init", ARCH, &R::decoder_heuristic_init),
      make("decoder_heuristic_init_norm", ARCH, &R::decoder_heuristic_init_norm),
      make("init_encoder_as_decoder_transpose", ARCH, &R::init_encoder_as_decoder_transpose),
      make("decoder_orthogonal_init", ARCH, &R::decoder_orthogonal_init),
      make("normalize_activations", ARCH, &R::normalize_activations),
      make("noise_scale", ARCH, &R::noise_scale),
      make("from_pretrained_path", ARCH, &R::from_pretrained_path),

      make("n_batches_in_buffer", STORE, &R::n_batches_in_buffer),
      make("store_batch_size_prompts", STORE, &R::store_batch_size_prompts),
      make("training_tokens", STORE, &R::training_tokens),
      make("finetuning_tokens", STORE, &R::finetuning_tokens),
      make("train_batch_size_tokens", STORE, &R::train_batch_size_tokens),
      make("act_store_device", STORE, &R::act_store_device),

      make("lr", OPT, &R::lr),
      make("adam_beta1", OPT, &R::adam_beta1),
      make("adam_beta2", OPT, &R::adam_beta2),
      make("lr_scheduler_name", OPT, &R::lr_scheduler_name),
      make("lr_warm_up_steps", OPT, &R::lr_warm_up_steps),
      make("lr_decay_steps", OPT, &R::lr_decay_steps),
      make("lr_end", OPT, &R::lr_end),
      make("n_restart_cycles", OPT, &R::n_restart_cycles),
      make("finetuning_method", OPT, &R::finetuning_method),

      make("l1_coefficient", SAE, &R::l1_coefficient),
      make("lp_norm", SAE, &R::lp_norm),
      make("l1_warm_up_steps", SAE, &R::l1_warm_up_steps),
      make("mse_loss_normalization", SAE, &R::mse_loss_normalization),
      make("use_ghost_grads", SAE, &R::use_ghost_grads),
      make("feature_sampling_window", SAE, &R::feature_sampling_window),
      make("dead_feature_window", SAE, &R::dead_feature_window),
      make("dead_feature_threshold", SAE, &R::dead_feature_threshold),
      make("jumprelu_init_threshold", SAE, &R::jumprelu_init_threshold),
      make("jumprelu_bandwidth", SAE, &R::jumprelu_bandwidth),
      make("l0_coefficient", SAE, &R::l0_coefficient),
      make("l0_warm_up_steps", SAE, &R::l0_warm_up_steps),
      make("aux_loss_coefficient", SAE, &R::aux_loss_coefficient),
      make("topk_threshold_lr", SAE, &R::topk_threshold_lr),
      make("matryoshka_widths", SAE, &R::matryoshka_widths),

      make("log_to_wandb", LOG, &R::log_to_wandb),
      make("log_activations_store_to_wandb", LOG, &R::log_activations_store_to_wandb),
      make("log_optimizer_state_to_wandb", LOG, &R::log_optimizer_state_to_wandb),
      make("wandb_project", LOG, &R::wandb_project),
      make("wandb_id", LOG, &R::wandb_id),
      make("wandb_entity", LOG, &R::wandb_entity),
      make("run_name", LOG, &R::run_name),
      make("wandb_log_frequency", LOG, &R::wandb_log_frequency),
      make("eval_every_n_wandb_logs", LOG, &R::eval_every_n_wandb_logs),
      make("n_eval_batches", LOG, &R::n_eval_batches),
      make("eval_batch_size_prompts", LOG, &R::eval_batch_size_prompts),

      make("device", MISC, &R::device),
      make("dtype", MISC, &R::dtype),
      make("seed", MISC, &R::seed),
      make("n_checkpoints", MISC, &R::n_checkpoints),
      make("checkpoint_path", MISC, &R::checkpoint_path),
      make("autocast", MISC, &R::autocast),
      make("autocast_lm", MISC, &R::autocast_lm),
      make("compile_llm", MISC, &R::compile_llm),
      make("llm_compilation_mode", MISC, &R::llm_compilation_mode),
      make("compile_sae", MISC, &R::compile_sae),
      make("sae_compilation_mode", MISC, &R::sae_compilation_mode),
      make("resume", MISC, &R::resume),
      make("verbose", MISC, &R::verbose),
      make("sae_lens_version", MISC, &R::sae_lens_version),
      make("sae_lens_training_version", MISC, &R::sae_lens_training_version),

      make("resample_dead_latents", OWN, &R::resample_dead_latents),
      make("dataset_column", OWN, &R::dataset_column),
      make("dataset_revision", OWN, &R::dataset_revision),
      make("dataset_split", OWN, &R::dataset_split),
      make("ddp_timeout_s", OWN, &R::ddp_timeout_s),
      make("toy_n_features", TOY, &R::toy_n_features),
      make("toy_feature_probability", TOY, &R::toy_feature_probability),
      make("toy_probability_power_law", TOY, &R::toy_probability_power_law),
      make("toy_magnitude_mean", TOY, &R::toy_magnitude_mean),
      make("toy_magnitude_std", TOY, &R::toy_magnitude_std),
      make("toy_correlated_groups", TOY, &R::toy_correlated_groups),
      make("toy_group_size", TOY, &R::toy_group_size),
      make("toy_seed", TOY, &R::toy_seed),
  };
  return v;
}

}  // namespace

const std::vector<Field>& fields() {
  static const std::vector<Field> table = build();
  return table;
}

const Field* find_field(const std::string& name) {
  for (const auto& f : fields())
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace saelab::config_detail
