// Sweeps: several SAEs trained on one activation stream (the members of a SweepSpec,
// config/sweep_spec.h).
//
// Running: one ActivationSource (the model's store, the toy model, or cached activations) is
// pulled once per batch and the same batch goes to every member, each an ordinary Trainer in its
// own run directory <sweep dir>/<member name>. The members' Trainers run on their own threads but
// take turns (only one computes at a time, in member order, one batch each), so a member makes
// exactly the calls a solo run makes, in the same order, on the same data: it ends with the same
// weights as the same config trained alone. A stop signal is latched once per round, so SIGINT /
// SIGTERM checkpoints every member after the same step, and `--resume` continues them together.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/config/sweep_spec.h"
#include "saelab/core/json.h"
#include "saelab/data/activation_source.h"
#include "saelab/train/trainer.h"

namespace saelab {

class Collectives;

// The checkpoint each member resumes from: for every member, checkpoints/<tokens> for the largest
// token count that every member has a checkpoint at; all empty when no member has one. Throws when
// some members have checkpoints but none in common.
std::vector<std::string> sweep_resume_checkpoints(const SweepSpec& spec,
                                                  const std::string& sweep_dir);

struct SweepOptions {
  std::string run_dir;                            // the sweep directory; members in run_dir/<name>
  const std::atomic<int>* stop_signal = nullptr;  // nonzero: every member checkpoints and stops
  bool quiet = false;                             // progress and messages to stderr (--json)
  bool progress = true;                           // one progress line for the sweep
  int64_t summary_eval_batches = 8;
  std::vector<std::string> resume_checkpoints;  // per member (sweep_resume_checkpoints)
  // Called for each member's TrainerOptions before its Trainer is built (e.g. model evals).
  std::function<void(const RunnerConfig&, TrainerOptions&)> member_options;
  // false: leave <run_dir>/sweep.json to the caller (a rank training some of the members).
  bool write_index = true;
  // A sweep over hook_name: the hooks the source's rows hold, d_in columns each, in order
  // (sweep_hook_names); each member trains on its own hook's block. Empty or one: whole rows.
  std::vector<std::string> hook_blocks;
  // Set by run_sweep_over_ranks: this rank's sweep agrees with the others' at every round (the
  // stop signal) and at the end, so that an activation stream shared between the ranks (a model
  // whose work is split over them) is read in step everywhere.
  Collectives* rounds = nullptr;
};

struct SweepResult {
  std::string run_dir;
  std::vector<TrainSummary> members;  // in spec order; a failed member has completed = false
  std::vector<std::string> errors;    // per member: "" or the error that stopped it
  bool completed = false;             // every member completed
  int stop_signal = 0;
  double seconds = 0;
  json to_json(const SweepSpec& spec) const;  // what sweep.json holds at the end
};

// A sweep's members spread over data-parallel ranks (sparsify's distribute_modules): member i is
// trained by rank i mod W, each rank on the same activation stream: read whole on every rank
// (toy, cached activations), or a model store whose work is split over the ranks and whose rows
// are exchanged (ActivationsStoreOptions::exchange). The ranks agree on the stop signal at every
// round, so a SIGINT / SIGTERM checkpoints every member after the same step. The ranks' results
// are put together in member order on every rank; rank 0 writes sweep.json. Each member's result
// equals its single-process sweep result.
SweepResult run_sweep_over_ranks(const SweepSpec& spec, std::unique_ptr<ActivationSource> source,
                                 SweepOptions opts, Collectives& ranks);

// Trains every member on batches of `source` (see the top of this file) and writes
// <run_dir>/sweep.json (members at the start; each member's summary at the end).
SweepResult run_sweep(const SweepSpec& spec, std::unique_ptr<ActivationSource> source,
                      SweepOptions opts);

}  // namespace saelab
