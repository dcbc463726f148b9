// `saelab report`: the training report of a run or a sweep, one self-contained offline HTML page
// with the panels a user would otherwise open Weights & Biases for (docs/report.md).
#pragma once
#include <cstdint>
#include <string>

#include "saelab/core/json.h"

namespace saelab::vis {

struct ReportOptions {
  std::string out;  // the page's path; "" = DIR/report.html
  // The end-of-run summary when the caller has it (`saelab train`: TrainSummary::to_json()):
  // exact wall time and the held-out figures of the final SAE. Single runs only.
  json train_summary = json();
};

struct ReportResult {
  std::string path;   // the page written
  int64_t bytes = 0;  // its size
  // What was drawn: {"kind": "run"|"sweep", "report", "bytes", "charts": [{"key", "points",
  // "drawn"}], "density": {"bin_edges", "counts", "dead", "dense", ...} or null, "findings":
  // [codes], "errors": [recorded errors], "members": [...] (sweeps)}.
  json description;
};

// Writes the report of DIR: a sweep when DIR holds sweep.json (then each member's own report is
// written too, as DIR/<member>/report.html, and the sweep page links to them), else a run. Throws
// saelab::Error with one line naming the file when DIR is neither or cannot be read.
ReportResult write_report(const std::string& dir, const ReportOptions& opts = {});

}  // namespace saelab::vis
