// MetricsLogger: what the trainer logs through: metrics.jsonl plus TensorBoard event files in the
// run directory, with SAELens's metric names. With log_to_wandb = true the run
// prints `wandb sync <run>/`, which uploads these TensorBoard files to Weights & Biases.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saelab/log/metrics_jsonl.h"
#include "saelab/log/tensorboard.h"

namespace saelab {

struct MetricsLoggerOptions {
  bool jsonl = true;
  bool tensorboard = true;
  int64_t resume_step = -1;  // >= 0: drop metrics.jsonl lines after this step (resumed run)
};

class MetricsLogger {
 public:
  explicit MetricsLogger(const std::string& run_dir, const MetricsLoggerOptions& opts = {});
  ~MetricsLogger();

  // One metrics.jsonl line {"step": step, ...values} and one TensorBoard scalar per value.
  void log_scalars(int64_t step, const std::map<std::string, double>& values);
  // A TensorBoard histogram (e.g. "plots/feature_density_line_chart" of log10(freq + 1e-10)).
  void log_histogram(int64_t step, const std::string& tag, const std::vector<double>& values);
  void log_histogram(int64_t step, const std::string& tag, const at::Tensor& values);
  // One line of density.jsonl: the feature-density histogram of one feature-sampling window,
  // {"step": step, ...record} (the trainer's record; the training report reads it back).
  void log_density_window(int64_t step, const json& record);
  void flush();

  std::string jsonl_path() const;  // "" when disabled
  // "wandb sync <run_dir>/" — the command that uploads the TensorBoard files.

 private:
  std::string run_dir_;
  int64_t resume_step_ = -1;
  std::unique_ptr<MetricsJsonl> jsonl_;
  std::unique_ptr<MetricsJsonl> density_;  // opened at the first window (or to trim on resume)
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace saelab
