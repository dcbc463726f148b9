// A `saelab train` invocation from start to end: the run config (a file, the embedded toy run, or
// a run directory to resume), the run directory's name (<checkpoint_path>/<run name>, _2, _3, ...
// when taken), resuming from the newest checkpoint, a sweep when a key has a list of values
// (train/sweep.h), the model evals when the activations come from a language model,
// RUN_DIR/error.txt when the run fails, and RUN_DIR/report.html (vis/report.h) at the end.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "saelab/config/sweep_spec.h"
#include "saelab/train/sweep.h"
#include "saelab/train/trainer.h"

namespace saelab {

struct TrainRequest {
  std::string config;             // .toml / .json; "" = the embedded toy run (configs/toy.toml)
  std::vector<std::string> sets;  // --set key=value
  std::string run_dir;            // --run-dir: instead of <checkpoint_path>/<run name>
  std::string resume;             // --resume RUN_DIR or SWEEP_DIR
  bool quiet = false;             // progress and messages on stderr (--json)
  std::FILE* messages = stdout;   // "resuming from ...", "training a ... SAE", wandb sync
  bool write_report = true;       // RUN_DIR/report.html once training ends (--no-report: false)
};

struct TrainOutcome {
  std::string run_dir;
  bool is_sweep = false;
  TrainSummary summary;  // a single run
  SweepSpec spec;        // a sweep
  SweepResult sweep;
  // 0 when everything completed, 128 + signal when SIGINT / SIGTERM stopped it after writing a
  // checkpoint, 1 when a sweep member failed.
  int exit_code = 0;
  // RUN_DIR/report.html, or "" when not asked for or not written; training is done by then, so a
  // report that cannot be written is a warning (report_error), not a failed run.
  std::string report_path;
  std::string report_error;
  // false on ranks other than 0 of a distributed run: rank 0 prints the outcome.
  bool speaks = true;
};

// Errors (a bad config, a run directory already holding a run, a failure mid-run) are thrown as
// saelab::Error after the message is written to RUN_DIR/error.txt when the run directory is known.
TrainOutcome run_training(const TrainRequest& request);

}  // namespace saelab
