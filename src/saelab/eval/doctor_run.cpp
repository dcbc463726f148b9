// Reading what the doctor needs from a run directory (doctor.h): config.toml as generic TOML (the
// eval module does not depend on the trainer), metrics.jsonl as per-metric series,
// final/sparsity.safetensors as a density summary, and error.txt when a run recorded its failure.
#include <toml++/toml.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/eval/doctor.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

template <typename T>
std::optional<T> toml_get(const toml::table& t, const std::string& key, const std::string& path) {
  const toml::node* n = t.get(key);
  if (!n) {
    // SAELens v6 nests the SAE and logger fields; accept both layouts.
    for (const char* group : {"sae", "logger"}) {
      if (auto sub = t.get_as<toml::table>(group)) {
        if ((n = sub->get(key))) break;
      }
    }
  }
  if (!n) return std::nullopt;
  if constexpr (std::is_same_v<T, std::string>) {
    if (auto v = n->value_exact<std::string>()) return *v;
    return std::nullopt;  // not a string (e.g. absent written otherwise): keep the default
  } else {
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = n->value<double>()) return *v;  // integers convert too
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (auto v = n->value_exact<int64_t>()) return *v;
      if (auto f = n->value_exact<double>(); f && std::floor(*f) == *f) return int64_t(*f);
    } else {
      if (auto v = n->value_exact<bool>()) return *v;
    }
    fail("{}: key '{}' has the wrong type (expected {})", path, key,
         std::is_same_v<T, bool> ? "a boolean"
                                 : (std::is_same_v<T, double> ? "a number" : "an integer"));
  }
}

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

DoctorConfig read_doctor_config(const std::string& path) {
  toml::table t;
  try {
    t = toml::parse(read_file(path), path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    fail("{}:{}:{}: invalid TOML: {}", path, b.line, b.column, std::string(e.description()));
  }
  DoctorConfig c;
  if (auto v = toml_get<std::string>(t, "architecture", path)) c.architecture = *v;
  if (auto v = toml_get<std::string>(t, "model_name", path)) c.model_name = *v;
  if (auto v = toml_get<std::string>(t, "dataset_path", path)) c.dataset_path = *v;
  auto d_in = toml_get<int64_t>(t, "d_in", path);
  if (!d_in || *d_in <= 0) fail("{}: key 'd_in' missing or not a positive integer", path);
  c.d_in = *d_in;
  auto d_sae = toml_get<int64_t>(t, "d_sae", path);
  auto ef = toml_get<double>(t, "expansion_factor", path);
  c.d_sae = d_sae ? *d_sae : int64_t(std::llround(double(c.d_in) * ef.value_or(4.0)));
  if (c.d_sae <= 0) fail("{}: d_sae must be positive, got {}", path, c.d_sae);
  if (auto v = toml_get<double>(t, "lr", path)) c.lr = *v;
  if (auto v = toml_get<int64_t>(t, "lr_warm_up_steps", path)) c.lr_warm_up_steps = *v;
  if (auto v = toml_get<int64_t>(t, "lr_decay_steps", path)) c.lr_decay_steps = *v;
  if (auto v = toml_get<double>(t, "l1_coefficient", path)) c.l1_coefficient = *v;
  if (auto v = toml_get<int64_t>(t, "l1_warm_up_steps", path)) c.l1_warm_up_steps = *v;
  if (auto v = toml_get<int64_t>(t, "l0_warm_up_steps", path)) c.l0_warm_up_steps = *v;
  if (auto v = toml_get<bool>(t, "resample_dead_latents", path)) c.resample_dead_latents = *v;
  if (auto v = toml_get<bool>(t, "use_ghost_grads", path)) c.use_ghost_grads = *v;
  if (auto v = toml_get<int64_t>(t, "training_tokens", path)) c.training_tokens = *v;
  if (auto v = toml_get<int64_t>(t, "train_batch_size_tokens", path))
    c.train_batch_size_tokens = *v;
  if (auto v = toml_get<int64_t>(t, "toy_n_features", path)) c.toy_n_features = *v;
  if (auto v = toml_get<double>(t, "toy_feature_probability", path)) c.toy_feature_probability = *v;
  if (auto v = toml_get<double>(t, "toy_probability_power_law", path))
    c.toy_probability_power_law = *v;
  const bool k_arch = c.architecture == "topk" || c.architecture == "batchtopk" ||
                      c.architecture == "matryoshka_batchtopk";
  if (k_arch) {
    c.k = 100;  // SAELens's default
    if (auto kw = t.get_as<toml::table>("activation_fn_kwargs")) {
      if (auto k = toml_get<int64_t>(*kw, "k", path)) c.k = *k;
    }
    if (auto k = toml_get<int64_t>(t, "k", path)) c.k = *k;
  }
  return c;
}

DoctorInputs read_doctor_inputs(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    fail("{}: not a directory (expected a training run directory)", run_dir);
  const std::string config = run_dir + "/config.toml";
  const std::string metrics = run_dir + "/metrics.jsonl";
  const bool has_config = fs::is_regular_file(config, ec);
  const bool has_metrics = fs::is_regular_file(metrics, ec);
  if (!has_config || !has_metrics)
    fail("{}: not a training run: missing {}", run_dir,
         !has_config && !has_metrics ? "config.toml and metrics.jsonl"
                                     : (!has_config ? "config.toml" : "metrics.jsonl"));
  DoctorInputs in;
  in.config = read_doctor_config(config);
  in.metrics = read_metrics_jsonl(metrics, &in.recorded_errors);
  const std::string sparsity = run_dir + "/final/sparsity.safetensors";
  if (fs::is_regular_file(sparsity, ec)) {
    auto tensors = load_safetensors(sparsity);
    auto it = tensors.find("sparsity");
    if (it == tensors.end())
      fail("{}: no tensor 'sparsity' (expected log10 feature density [d_sae])", sparsity);
    if (it->second.dim() != 1 || it->second.size(0) != in.config.d_sae)
      fail("{}: 'sparsity' has shape {}, expected [{}] (d_sae of config.toml)", sparsity,
           shape_text(it->second), in.config.d_sae);
    in.final_density = summarize_log10_density(it->second);
    auto values = it->second.to(torch::kFloat32).contiguous();
    in.final_log10_density.assign(values.data_ptr<float>(),
                                  values.data_ptr<float>() + values.numel());
  }
  const std::string error_txt = run_dir + "/error.txt";
  if (fs::is_regular_file(error_txt, ec)) {
    std::ifstream e(error_txt);
    std::string line;
    while (std::getline(e, line))
      if (!line.empty()) in.recorded_errors.push_back(line);
  }
  // A run that failed before its first log step still has its error to diagnose.
  if (in.metrics.empty() && in.recorded_errors.empty())
    fail("{}: no metrics logged yet (the run wrote no step)", metrics);
  return in;
}

}  // namespace saelab
