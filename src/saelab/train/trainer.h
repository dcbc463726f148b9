// Trainer: SAELens's training loop (sae_trainer.py) for every architecture of training_sae.h.
// One step: next batch (scaled when normalize_activations asks) → forward_backward → NaN check →
// firing statistics → parallel-gradient removal (normalize_sae_decoder) → clip to norm 1.0 →
// Adam with the scheduled lr → unit decoder rows → architecture after_step (batchtopk threshold).
// Around it: logging every wandb_log_frequency steps (SAELens's metric names), density statistics,
// histogram and optional resampling every feature_sampling_window steps, n_checkpoints evenly
// spaced checkpoints, a checkpoint-and-stop on SIGINT/SIGTERM, and the final SAE in <run>/final/.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/core/collectives.h"
#include "saelab/core/json.h"
#include "saelab/data/activation_source.h"
#include "saelab/sae/training_sae.h"
#include "saelab/train/adam.h"
#include "saelab/train/schedules.h"

namespace saelab {

class MetricsLogger;
class ConsoleProgress;
class Collectives;

struct TrainerOptions {
  std::string run_dir;                            // everything the run writes goes here
  const std::atomic<int>* stop_signal = nullptr;  // nonzero: checkpoint at end of step, stop
  bool quiet = false;                             // progress and messages to stderr (--json)
  bool progress = true;                           // console progress bar / lines
  bool log_files = true;                          // metrics.jsonl + TensorBoard
  int64_t summary_eval_batches = 8;               // held-out batches for the final summary
  // Model-based evals (sources.h make_model_eval; empty = no model, e.g. the toy or cached
  // activations). Called on inference_sae() every wandb_log_frequency × eval_every_n_wandb_logs
  // steps (SAELens's sae_trainer) and once at the end; every numeric "group/name" key it returns
  // is logged under that name, except the density counts the trainer already logs
  // from its sampling window (kModelEvalSkippedKeys). The end-of-run result goes into
  // TrainSummary::eval too.
  std::function<json(const Sae&)> model_eval;
  // Data-parallel ranks (null or one rank: a single process). Every rank's source yields the same
  // global stream; each rank trains on its contiguous share of every batch, gradients, losses and
  // firing statistics are averaged / summed over ranks once per step, so parameters stay equal
  // everywhere. Only rank 0 writes files (config.toml, logs, checkpoints, final/).
  std::shared_ptr<Collectives> dist;
};

// Eval keys not logged during training: the trainer logs these names from its own sampling window
// (dead = no fire for dead_feature_window steps, dense = over feature_sampling_window steps), and a
// count over a few eval batches would interleave a different quantity in the same series.
extern const std::vector<std::string> kModelEvalSkippedKeys;

struct TrainSummary {
  std::string run_dir, final_dir, last_checkpoint;
  std::string architecture;
  int64_t steps = 0, n_training_tokens = 0;
  bool completed = false;  // false when stopped by a signal
  int stop_signal = 0;     // the signal that stopped it (0 = none)
  double seconds = 0;
  // Where the training loop's time went (wall clock, this process): the loop itself, from the
  // first step of this run to the last (no initialisation, final evaluation or final/), its
  // `loop_steps` steps; inside it, the SAE steps with their gradient all-reduce and update, and
  // the waits for the activation source. loop − step is what the trainer costs around the step
  // (data, logging, firing statistics, evals, checkpoints). On CUDA a step's last kernels may be
  // counted in the next step.
  double loop_seconds = 0, step_seconds = 0, source_wait_seconds = 0;
  int64_t loop_steps = 0;
  json eval = json::object();  // explained_variance, mse, l0, dead, dense, mmcs, ...
  json to_json() const;
  static TrainSummary from_json(const json& j);  // the inverse of to_json
};

class Trainer {
 public:
  Trainer(RunnerConfig cfg, std::unique_ptr<ActivationSource> source, TrainerOptions opts);
  ~Trainer();

  // Restores the state saved in a checkpoint directory (call before run()).
  void resume_from(const std::string& checkpoint_dir);
  // Trains to cfg.steps() (or until stopped) and writes final/; returns the summary.
  TrainSummary run();

  TrainingSae& sae() { return *sae_; }
  int64_t step() const { return step_; }
  double activation_scale() const { return scale_; }
  // A transcoder's scale of its output activations (= activation_scale() for an SAE).
  double activation_scale_out() const { return scale_out_; }
  // The current SAE in SAELens's inference layout, activation scale folded in.
  std::unique_ptr<Sae> inference_sae() const;
  // Writes a checkpoint for the current state; returns its directory.
  std::string save_checkpoint();

 private:
  // One step's input rows x [N, d_in] and what the SAE reconstructs, y: x itself for an SAE, the
  // output activations [N, d_out] for a transcoder; both normalised.
  struct Batch {
    at::Tensor x, y;
  };
  // A source's rows split into input and output (a transcoder's rows are [x | y]).
  Batch split(const at::Tensor& rows) const;
  // expected_average_only_in: scale_ from b.x and scale_out_ from b.y (the same for an SAE).
  void estimate_scales(const Batch& b);
  void initialize();
  void to_device();
  Batch next_batch();
  void train_step();
  // Fire counts of the step's rows; across ranks also the losses (averaged) and the stop flag.
  void update_firing_stats(TrainStepOutput& out);
  // Across ranks: gradients averaged. Those the step announced (StepContext::grad_ready) were
  // started then (`started`) and are waited for; the rest go in one flattened all-reduce.
  void average_gradients(
      std::vector<std::pair<std::string, std::unique_ptr<Collectives::Pending>>>& started);
  // Across ranks: rank 0's parameters and buffers everywhere (after initialisation).
  void share_rank0_parameters();
  bool distributed() const;
  bool writes_files() const;  // rank 0, or a single process
  // y: what the step reconstructed (x, or a transcoder's output activations).
  void log_step(const at::Tensor& y, const TrainStepOutput& out, double lr, double coefficient);
  void log_density_and_resample(const at::Tensor& x);
  void resample_dead_latents(const at::Tensor& dead, const at::Tensor& x);
  // log10(density + 1e-10) of the current sampling window, or of the last complete one when the
  // current window is empty (what sparsity.safetensors holds).
  at::Tensor sparsity_for_save() const;
  at::Tensor dead_mask() const;
  json final_eval();
  // Runs opts_.model_eval on the current SAE and logs it at step_ (once per step).
  const json& run_model_eval();

  RunnerConfig cfg_;
  std::unique_ptr<ActivationSource> source_;
  TrainerOptions opts_;
  std::unique_ptr<TrainingSae> sae_;
  Adam adam_;
  LrSchedule schedule_;
  at::Generator gen_;
  std::unique_ptr<MetricsLogger> logger_;
  std::unique_ptr<ConsoleProgress> progress_;
  std::set<int64_t> checkpoint_steps_;

  at::Device device_{at::kCPU};  // cfg.device: parameters, optimiser state and batches live here
  bool initialized_ = false;
  int64_t step_ = 0;
  int64_t n_tokens_ = 0;
  double scale_ = 1.0;
  double scale_out_ = 1.0;  // a transcoder's output scale (expected_average_only_in); SAE: = scale_
  at::Tensor since_fired_;  // int64 [d_sae]: steps since each latent last fired
  at::Tensor window_fires_;  // float64 [d_sae]: tokens each latent fired on in this sampling window
  int64_t window_tokens_ = 0;
  at::Tensor last_window_log10_;  // float32 [d_sae]: the last complete window's log10 density
  // float32 [d_sae]: the final SAE's log10 density over the held-out summary batches. final/
  // records it rather than a sampling window, which can span the run's dense first steps.
  at::Tensor final_log10_density_;
  std::string last_checkpoint_;
  bool resumed_ = false;
  double last_out_mse_ = 0.0;
  double step_seconds_ = 0.0, source_wait_seconds_ = 0.0;  // TrainSummary's, accumulated
  double last_l0_ = 0.0;
  bool stop_all_ = false;  // a rank was signalled: every rank checkpoints after this step
  int stop_signal_all_ = 0;
  int64_t model_eval_step_ = -1;  // the step of model_eval_result_
  json model_eval_result_;
};

// The SAELens cfg.json fields for the run (model/hook/dataset metadata), normalisation folded.
SaeConfig inference_sae_config(const RunnerConfig& cfg);

// Mean over true features of the best cosine with any decoder row (MMCS), and the fraction of
// true features whose best cosine exceeds 0.9.
struct FeatureRecovery {
  double mmcs = 0;
  double features_recovered = 0;
};
FeatureRecovery feature_recovery(const at::Tensor& true_features, const at::Tensor& W_dec);

}  // namespace saelab
