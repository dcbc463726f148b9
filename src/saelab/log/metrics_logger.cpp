// MetricsLogger: metrics.jsonl + TensorBoard in one call (see metrics_logger.h).
#include "saelab/log/metrics_logger.h"

#include <torch/torch.h>

#include "saelab/core/io.h"

namespace saelab {

MetricsLogger::MetricsLogger(const std::string& run_dir, const MetricsLoggerOptions& opts)
    : run_dir_(run_dir) {
  make_dirs(run_dir);
  resume_step_ = opts.resume_step;
  if (opts.jsonl) {
    jsonl_ = std::make_unique<MetricsJsonl>(run_dir + "/metrics.jsonl", opts.resume_step);
    // A resumed run drops the windows logged after its checkpoint now, as for metrics.jsonl.
    if (opts.resume_step >= 0 && path_exists(run_dir + "/density.jsonl"))
      density_ = std::make_unique<MetricsJsonl>(run_dir + "/density.jsonl", opts.resume_step);
  }
  if (opts.tensorboard) tb_ = std::make_unique<TensorBoardWriter>(run_dir);
}

MetricsLogger::~MetricsLogger() = default;

void MetricsLogger::log_scalars(int64_t step, const std::map<std::string, double>& values) {
  if (jsonl_) jsonl_->write(step, values);
  if (tb_) {
    for (const auto& [tag, v] : values) tb_->add_scalar(tag, v, step);
    tb_->flush();
  }
}

void MetricsLogger::log_histogram(int64_t step, const std::string& tag,
                                  const std::vector<double>& values) {
  if (tb_) {
    tb_->add_histogram(tag, values, step);
    tb_->flush();
  }
}

void MetricsLogger::log_histogram(int64_t step, const std::string& tag, const at::Tensor& values) {
  at::Tensor v = values.detach().to(at::kCPU, at::kDouble).contiguous().view({-1});
  std::vector<double> xs(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
  log_histogram(step, tag, xs);
}

void MetricsLogger::log_density_window(int64_t step, const json& record) {
  if (!jsonl_) return;
  if (!density_)
    density_ = std::make_unique<MetricsJsonl>(run_dir_ + "/density.jsonl", resume_step_);
  density_->write(step, record);
}

void MetricsLogger::flush() {
  if (jsonl_) jsonl_->flush();
  if (density_) density_->flush();
  if (tb_) tb_->flush();
}

std::string MetricsLogger::jsonl_path() const { return jsonl_ ? jsonl_->path() : ""; }

}  // namespace saelab
