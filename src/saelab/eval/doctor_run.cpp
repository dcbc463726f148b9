// Reading what the doctor needs from a run directory (doctor.h): config.toml through the config
// module (as `saelab train` reads it), metrics.jsonl as per-metric series,
// final/sparsity.safetensors as a density summary, and error.txt when a run recorded its failure.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/eval/doctor.h"
#include "saelab/log/run_error.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

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
  in.config = doctor_config(load_runner_config(config));
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
  for (auto& line : read_run_errors(run_dir)) in.recorded_errors.push_back(line);
  // A run that failed before its first log step still has its error to diagnose.
  if (in.metrics.empty() && in.recorded_errors.empty())
    fail("{}: no metrics logged yet (the run wrote no step)", metrics);
  return in;
}

// The model's loss on its own data, as logged by a baseline run (mean of its logged values).
double baseline_ce_loss(const std::string& run_dir) {
  auto m = read_metrics_jsonl(run_dir + "/metrics.jsonl");
  for (const char* name :
       {"model_performance_preservation/ce_loss_without_sae", "metrics/ce_loss_without_sae"}) {
    auto it = m.find(name);
    if (it == m.end() || it->second.empty()) continue;
    double s = 0;
    for (const auto& p : it->second) s += p.value;
    return s / double(it->second.size());
  }
  fail("{}/metrics.jsonl: --baseline run has no ce_loss_without_sae values", run_dir);
}

}  // namespace saelab
