// Model-based SAE evaluation (SAELens's run_evals): CE and KL loss recovered with
// the SAE's reconstruction spliced in at its hook, against the clean model and a zero ablation,
// plus the model-free metrics (ReconstructionStats) and the consistent-activation heuristic on the
// hook activations of the same tokens. docs/metrics.md ("Model-based evals") states every
// convention.
//
// A transcoder (cfg.d_out > 0) reads hook_name and replaces its cfg.hook_name_out: the metrics
// compare its output with the clean activation there, the splice and the zero ablation (e.g. of
// the MLP, at blocks.L.hook_mlp_out) act on the output hook, and its input is the input hook's
// activation of the same forward pass (the output hook comes later in the pass).
//
// Conventions, following SAELens's evals.py:
// - CE is next-token cross-entropy per predicted position (position t predicts token t+1), averaged
//   over positions; KL per position = Σ_v p_clean (log p_clean − log p_new), averaged likewise.
// - Excluded tokens (EvalOptions::exclude_token_ids: BOS / EOS / PAD by default in the CLI and the
//   trainer) are left out of every average: a CE term is dropped when the *input* token at t is
//   excluded, a KL term likewise; the activation metrics skip those positions; and the SAE splice
//   keeps the original activation there (SAELens's standard_replacement_hook). The zero ablation
//   zeroes every position.
// - hook_q/k/v/z (and rot_q/rot_k, result) activations [batch, pos, head, d_head] are flattened to
//   [batch, pos, head·d_head] for the SAE and reshaped back; with hook_head_index only that head is
//   fed to the SAE, spliced and ablated.
// - A score whose denominator is 0 (CE_abl == CE_clean, KL_abl == 0) is NaN: null in JSON, with an
//   explanation under "notes" (a JSON array of strings, present only then).
// Everything runs under at::NoGradGuard; sums are float64.
//
// During training (every eval step and at the end) the trainer does this through make_model_eval
// (train/sources.h), with the store's model and n_eval_batches held-out batches of
// eval_batch_size_prompts prompts, excluding the store's exclude_special_tokens ids. By hand:
//   EvalOptions eo; eo.exclude_token_ids = special_token_ids(model.cfg());   // or {} to keep them
//   json m = evaluate_sae_on_model(model, sae, cfg.hook_name, cfg.hook_head_index, batches, eo);
// and log every key of `m` that is a number under its own name (the names are the SAELens names).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/eval/metrics.h"

namespace saelab {

class Transformer;
class Sae;
struct ModelConfig;

struct EvalOptions {
  std::vector<int64_t> exclude_token_ids;  // positions holding these ids are excluded (see above)
  bool compute_ce_kl = true;               // false: only the activation metrics (one forward pass)
};

// The model's BOS / EOS ids (deduplicated), the default exclusion set. `pad` is added when given.
std::vector<int64_t> special_token_ids(const ModelConfig& cfg,
                                       std::optional<int64_t> pad = std::nullopt);

// Streaming form: add token batches one at a time, read the metrics of everything seen so far.
class ModelEvaluator {
 public:
  // Checks hook_name against the model and hook_head_index against the hook (Error naming them).
  // The SAE's d_in is checked against the hook's width at the first batch. The model and the SAE
  // are referenced, not copied: they must outlive the evaluator.
  ModelEvaluator(const Transformer& model, const Sae& sae, std::string hook_name,
                 std::optional<int64_t> hook_head_index, EvalOptions opts);

  // tokens: [batch, ctx] int64 ids in [0, d_vocab), ctx >= 2 for CE.
  void add_batch(const at::Tensor& tokens);

  int64_t n_prompts() const { return n_prompts_; }
  // Every metric name of SAELens's run_evals (model_performance_preservation/*,
  // model_behavior_preservation/*, reconstruction_quality/*, shrinkage/*, sparsity/*) plus
  // n_tokens, and "notes" when a value is undefined. Throws saelab::Error when no batch (or no
  // non-excluded token) was added.
  json metrics() const;
  // Per latent: tokens it fired on / prompts it fired on at least once (SAELens's
  // consistent_activation_heuristic; NaN for a latent that never fired). float64 [d_sae], CPU.
  at::Tensor consistent_activation_heuristic() const;
  const ReconstructionStats& stats() const { return stats_; }

 private:
  const Transformer& model_;
  const Sae& sae_;
  std::string hook_;
  std::string hook_out_;  // where the splice and the ablation act: hook_, or a transcoder's output
  std::optional<int64_t> head_;
  EvalOptions opts_;
  bool head_dims_ = false;  // activation is [batch, pos, head, d_head]

  ReconstructionStats stats_;
  at::Tensor fire_prompts_;  // [d_sae] int64: prompts on which each latent fired
  int64_t n_prompts_ = 0;
  // float64 sums and counts of the per-position terms
  double ce_clean_ = 0, ce_sae_ = 0, ce_abl_ = 0;
  int64_t n_ce_ = 0;
  double kl_sae_ = 0, kl_abl_ = 0;
  int64_t n_kl_ = 0;
};

// One call over a list of token batches (each [B, ctx] int64).
json evaluate_sae_on_model(const Transformer& model, const Sae& sae, const std::string& hook_name,
                           std::optional<int64_t> hook_head_index,
                           const std::vector<at::Tensor>& token_batches, const EvalOptions& opts);

}  // namespace saelab
