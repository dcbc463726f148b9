// metrics.jsonl: one JSON object per log step, {"step": N, "<SAELens metric name>": value, ...},
// appended and flushed line by line so a killed run keeps every line it wrote. Non-finite values
// are written as null (JSON has no NaN).
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "saelab/core/json.h"

namespace saelab {

class MetricsJsonl {
 public:
  // Opens path for appending. With drop_after_step >= 0, lines with step > drop_after_step are
  // removed first (a resumed run rewrites what came after its checkpoint).
  explicit MetricsJsonl(const std::string& path, int64_t drop_after_step = -1);
  ~MetricsJsonl();
  MetricsJsonl(const MetricsJsonl&) = delete;
  MetricsJsonl& operator=(const MetricsJsonl&) = delete;

  void write(int64_t step, const std::map<std::string, double>& values);
  void write(int64_t step, const json& values);  // values: an object of numbers / strings / null
  void flush();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct MetricPoint {
  int64_t step;
  double value;
};
// Metric name -> its values in step order (only finite numbers).
using MetricSeries = std::map<std::string, std::vector<MetricPoint>>;

// What the reader saw besides the finite values, for a report of a failed or killed run.
struct MetricsJsonlInfo {
  int64_t lines = 0;            // JSON lines read
  int64_t last_step = -1;       // the largest step of any line
  bool torn_last_line = false;  // a partial last line (killed mid-write) was skipped
  // metric -> the steps where it was logged as null (a NaN or infinity when written)
  std::map<std::string, std::vector<int64_t>> non_finite_steps;
};

// The one reader of metrics.jsonl. A torn last line (a run killed mid-write) is skipped; any other
// malformed line is an error naming the file and line. String values under "error" or "*/error"
// are appended to *errors when given; *info, when given, receives what MetricsJsonlInfo lists.
MetricSeries read_metrics_jsonl(const std::string& path, std::vector<std::string>* errors = nullptr,
                                MetricsJsonlInfo* info = nullptr);

}  // namespace saelab
