// The doctor: reads a finished (or stopped) training run and names what went wrong, the way the
// seed's "identify good and bad training curves" exercise does by eye (runs #1-#6), with the
// figures behind each verdict and the config change to try. Each finding has a stable code:
//   l1_too_small, too_wide, lr_too_low, too_narrow, dead_from_lr, dataset_mismatch, dense_latents.
// docs/doctor.md explains every finding, its evidence and its thresholds in plain words.
//
// The doctor depends only on what a run directory holds (config.toml, metrics.jsonl,
// final/sparsity.safetensors, error.txt), not on the trainer's code; config.toml is read by the
// config module, as `saelab train` reads it.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/core/json.h"
#include "saelab/eval/density.h"
#include "saelab/log/metrics_jsonl.h"

namespace saelab {

// Thresholds. Each is a judgement call, explained here and in docs/doctor.md; they are named so
// that a test or a user can see exactly where a verdict flips.
namespace doctor {
// "L0 far too high": an SAE whose latents fire on more than a quarter of the input dimensions per
// token is barely sparser than the activations themselves (the seed: L0 ~100 is typical for a
// 2304-dim GemmaScope SAE, "200+ is almost definitely bad" for a small model).
constexpr double kHighL0PerDin = 0.25;
// Explained variance at or above this is "reconstructs well"; below it "reconstructs poorly".
// Real LM SAEs reach 0.7-0.95; a run below 0.8 has lost a fifth of the variance.
constexpr double kGoodExplainedVariance = 0.8;
// "Many dead latents": a quarter of the dictionary never fires (dead_feature_window steps). A few
// percent dead is normal; a quarter is wasted capacity the seed's runs #2 and #5 show.
constexpr double kManyDeadFraction = 0.25;
// Resampling "is not reviving them" when the dead count at the end is still at least this share
// of the dead count at mid-training.
constexpr double kDeadNotFallingRatio = 0.75;
// "Many dense latents": more than this share of the dictionary fires on > 1/100 tokens
// (density.h kDenseThreshold). A handful of dense latents is common; a tenth of them is not.
constexpr double kManyDenseFraction = 0.10;
// "Still falling steeply": split the mse loss after the warm-ups into windows of kTailFraction of
// the log steps. The last window's mean is at least kTailMinDrop below the window before it, and
// that last fall is at least kTailMinShare of the loss's whole log fall (first window to last).
// A loss falling at a steady log rate to the end puts ~a quarter of its fall in the last step
// between windows; a converged run ~0. Window means, since single batches are noisy; the 10% drop
// floor keeps the slow drift of a converged run (a few %) from counting.
constexpr double kTailFraction = 0.2;
constexpr double kTailMinDrop = 0.10;
constexpr double kTailMinShare = 0.10;
constexpr int64_t kMinLossPoints = 10;  // fewer log steps than this: no verdict on the slope
// dataset_mismatch: the model's own loss (no SAE involved) is more than kCeMismatchRatio times a
// reference loss for that model on its own data, or, with no reference, above log(d_vocab) / 2:
// half the loss of guessing uniformly, which no model scores on text it was trained for (GPT-2
// ~3.3 nats, TinyStories models ~2 nats, against log(50257)/2 = 5.4).
constexpr double kCeMismatchRatio = 2.0;
constexpr int64_t kDefaultVocab = 50257;  // GPT-2's tokenizer, which the seed's models use
}  // namespace doctor

// What the rules read of a run's config, derived from the RunnerConfig that config.toml holds (read
// with the trainer's own reader, so defaults and validation are the trainer's).
struct DoctorConfig {
  std::string architecture;
  std::string sparsity_coefficient;  // the key scaling its sparsity penalty ("" when k-sparse)
  std::string model_name;
  std::string dataset_path;
  int64_t d_in = 0;
  int64_t d_sae = 0;
  double lr = 0;
  int64_t lr_warm_up_steps = 0;
  int64_t lr_decay_steps = 0;
  double l1_coefficient = 0;
  int64_t l1_warm_up_steps = 0;
  int64_t l0_warm_up_steps = 0;
  int64_t k = 0;  // topk / batchtopk / matryoshka_batchtopk's k, else 0
  bool resample_dead_latents = false;
  bool use_ghost_grads = false;
  int64_t training_tokens = 0;
  int64_t train_batch_size_tokens = 0;
  // The density above which a latent counts as dense: 1/100 (the seed), raised for toy runs to
  // twice the most frequent true feature's firing rate, since a latent that learned that feature
  // fires as often as it does (the default toy's features fire on exactly 1/100 of tokens).
  double dense_density_threshold = 0;

  double expansion_factor() const { return d_in > 0 ? double(d_sae) / double(d_in) : 0.0; }
  bool k_sparse() const { return k > 0; }
};

DoctorConfig doctor_config(const RunnerConfig& cfg);

struct DoctorInputs {
  DoctorConfig config;
  MetricSeries metrics;
  std::optional<DensitySummary> final_density;  // from final/sparsity.safetensors
  std::vector<float> final_log10_density;       // its values, to recount with another threshold
  std::vector<std::string> recorded_errors;  // error.txt lines and "error" fields of metrics.jsonl
  std::optional<double> reference_ce_loss;   // the model's loss on its own data, when known
  std::optional<int64_t> d_vocab;            // for the absolute ce_loss_without_sae bound
};

struct Finding {
  std::string code;        // stable: l1_too_small, too_wide, ...
  std::string message;     // one sentence: what went wrong
  json evidence;           // the figures the verdict rests on
  std::string suggestion;  // the config change to try, with SAELens key names
};

// The summary figures the rules read (tail means of the metrics, dead/dense counts, loss slope);
// printed as "figures" by `saelab doctor --json` so a user can check any verdict by hand.
json doctor_figures(const DoctorInputs& in);

// All findings, most fundamental cause first (dataset, shape, sparsity, dead latents, lr, density).
// A healthy run gives none.
std::vector<Finding> diagnose(const DoctorInputs& in);

// Reading a run directory. Each throws saelab::Error with one line naming the file and the fault;
// read_doctor_inputs names what is missing when RUN_DIR is not a run.
DoctorInputs read_doctor_inputs(const std::string& run_dir);
// The model's loss on its own data as a baseline run logged it (the mean of its
// ce_loss_without_sae values), for DoctorInputs::reference_ce_loss.
double baseline_ce_loss(const std::string& run_dir);

// {"findings": [{"code", "message", "evidence", "suggestion"}, ...]}
json findings_json(const std::vector<Finding>& findings);
// One block per finding (code, message, evidence, suggestion); "no findings" for a healthy run.
std::string findings_text(const std::vector<Finding>& findings);

}  // namespace saelab
