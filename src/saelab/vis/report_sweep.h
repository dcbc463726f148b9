// What a sweep's training report shows: each member's run (report_run.h) and where its final SAE
// sits on the sparsity / reconstruction trade-off, with the Pareto front of that trade-off.
#pragma once
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/vis/report_run.h"

namespace saelab::vis {

struct SweepMemberReport {
  std::string name;              // its run directory, relative to the sweep directory
  json values = json::object();  // swept key -> this member's value
  std::string status;            // sweep.json's: completed, stopped, failed, running
  std::string error;             // sweep.json's error for a failed member
  std::optional<RunReportData> run;
  std::string unreadable;  // why `run` is empty: the one-line error reading the directory
  // The final SAE's figures for the scatter: the held-out summary in sweep.json when present,
  // else the last logged value; NaN when neither.
  double l0 = std::numeric_limits<double>::quiet_NaN();
  double explained_variance = std::numeric_limits<double>::quiet_NaN();
  double ce_loss_score = std::numeric_limits<double>::quiet_NaN();
  bool pareto = false;  // on the front of (low L0, high explained variance)
};

struct SweepReportData {
  std::string dir;
  std::string name;
  json sweep;  // sweep.json as written
  std::vector<SweepMemberReport> members;
};

// Reads SWEEP_DIR/sweep.json and every member's run directory. A member whose directory cannot be
// read (failed before its first step) is kept with `unreadable` set. Throws saelab::Error (one
// line naming the file) when sweep.json is missing or malformed.
SweepReportData read_sweep_report_data(const std::string& sweep_dir);

// For points (l0[i], ev[i]): true where no other point has l0 <= and ev >= with one of them
// strict (fewer active latents and better reconstruction are both better). Points with a NaN
// coordinate are never on the front and dominate nothing.
std::vector<bool> pareto_front(const std::vector<double>& l0, const std::vector<double>& ev);

}  // namespace saelab::vis
