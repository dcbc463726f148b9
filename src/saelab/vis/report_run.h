// What a training report shows about one run, read from its run directory: the config, every
// metric series (x = training tokens, downsampled for drawing), the feature-density histograms of
// the final SAE and of each checkpoint, the final SAE's figures, the doctor's findings and any
// recorded error. The page (report_page.h) and `saelab report --json` are made from this.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/eval/density.h"
#include "saelab/eval/doctor.h"
#include "saelab/log/metrics_jsonl.h"
#include "saelab/vis/report_downsample.h"

namespace saelab::vis {

// One metric of metrics.jsonl as the report draws it.
struct ChartSeries {
  std::string key;     // "losses/mse_loss"
  int64_t points = 0;  // finite values in metrics.jsonl
  XYSeries drawn;      // downsample_min_max of (tokens, value), kReportColumns columns
  std::vector<double> non_finite_x;  // tokens where it was logged as null (NaN / infinity)
};

// A feature-density histogram: log10(density + 1e-10) in 50 bins over [-10, 0].
struct DensitySnapshot {
  std::string label;    // "final SAE", "window ending at N tokens" or "checkpoint at N tokens"
  int64_t tokens = -1;  // training tokens at the window's end or checkpoint; -1: the final SAE
  Histogram histogram;
  DensitySummary summary;
};

struct RunReportData {
  std::string dir;
  std::string name;  // the run directory's own name
  DoctorInputs inputs;
  std::vector<Finding> findings;
  MetricsJsonlInfo info;
  json config = json::object();  // config.toml's keys as written
  std::map<std::string, ChartSeries> charts;
  // density.jsonl's windows (older runs: checkpoints) in token order, then the final SAE
  std::vector<DensitySnapshot> density;
  json sae = json::object();      // from final/: num_parameters, decoder_norms {min, mean, max}
  json summary = json::object();  // end-of-run held-out figures, when known (see below)
  int64_t tokens = 0;             // training tokens at the last logged step
  double wall_seconds = -1;       // -1 when unknown
  bool wall_from_file_times = false;
};

// Reads RUN_DIR: config.toml, metrics.jsonl, density.jsonl, error.txt, final/ and checkpoints/*/.
// `summary` is the end-of-run summary when the caller has it (`saelab train`'s
// TrainSummary::to_json(), a sweep member's summary from sweep.json); its "seconds" gives the wall
// time, else the time between config.toml (written when training starts) and the last write of
// metrics.jsonl is shown, marked as an estimate. Throws saelab::Error (one line naming the file)
// when RUN_DIR is not a run or a file in it cannot be read.
RunReportData read_run_report_data(const std::string& run_dir, const json& summary = json());

// Training tokens at each logged step: details/n_training_tokens where logged, else
// step * train_batch_size_tokens.
double tokens_at_step(const RunReportData& r, int64_t step);

// "losses/mse_loss" -> "losses"; a key without '/' is in "other".
std::string chart_group(const std::string& key);
// The groups in the order the page shows them (the seed's dashboard order first, then the rest
// alphabetically), each with its keys sorted.
std::vector<std::pair<std::string, std::vector<std::string>>> chart_groups(
    const std::vector<std::string>& keys);
// Whether a chart starts with a log y axis: losses, L0 and MSE span decades; only when every
// drawn value is positive.
bool chart_log_y(const std::string& key, const std::vector<double>& y);

// The final summary figures at the top of the page: the last logged value of the headline
// metrics, the held-out summary when known, and the final SAE's density counts.
json headline_figures(const RunReportData& r);

}  // namespace saelab::vis
