// `saelab train` for a sweep (train/sweep.h): the sweep directory, the console and --json output.
#pragma once
#include <string>
#include <vector>

#include "saelab/train/sweep.h"

namespace saelab::cli {

// <checkpoint_path>/<sweep name> (with _2, _3, ... when taken), or run_dir when given (refused when
// it already holds a run or a sweep).
std::string choose_sweep_dir(const SweepSpec& spec, const std::string& run_dir);

// Trains the sweep into `dir` (resume: continue its members from their common checkpoint, with
// `sets` already applied to spec). Returns the exit code: 0, 128 + signal, or 1 when a member
// failed.
int train_sweep(const SweepSpec& spec, const std::string& dir, bool resume, bool sets_given,
                bool json_out);

}  // namespace saelab::cli
