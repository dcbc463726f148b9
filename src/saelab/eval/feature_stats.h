// The feature-statistics pass behind `saelab vis`: per selected SAE latent, everything a dashboard
// shows about its activations, accumulated batch by batch in bounded memory (no [n_tokens, d_sae]
// tensor is ever held). docs/vis.md states the conventions; in short:
//
// - Counted positions: those whose token is not in exclude_token_ids and that lie in the
//   Python-style slice [seqpos_start, seqpos_stop) of their window. Only these enter any statistic
//   (n_tokens, density, sums, histograms, examples, correlations).
// - density = (#counted positions with act > 0) / n_tokens; max_act = the largest act;
//   mean_act = the mean act over the positions where it fired (0 when it never fired).
// - Range R = the smallest power of two >= max_act. The histogram has n_bins equal bins over
//   [0, R] of the non-zero acts, bin = min(floor(act / R * n_bins), n_bins - 1); the quantile bands
//   are quantile_groups equal bands over (0, R] with the same rule. A power-of-two range is what
//   makes this exact in one pass: when a larger act raises R, it doubles, and every old bin or band
//   merges with its neighbour into exactly one new one.
// - Top examples: the top_k counted positions by act (ties: smaller prompt, then position, first).
// - Band examples: per band a uniform sample of examples_per_group of its positions: every firing
//   position draws a random key (seeded) and each band keeps the smallest keys; keeping the k
//   smallest keys of a union is exactly what merging two bands needs.
// - Correlations: Pearson's r over counted positions between each selected latent and its
//   correlation candidates (set_correlation_candidates; any latents of the SAE). Σ a_i a_j needs
//   only the positions where a_i > 0, so it is summed from the non-zero entries.
// Sums are float64 (the squares behind each latent's variance are formed in the acts' dtype first);
// activations stay in the SAE's dtype on its device until they are counted.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace saelab {

class Transformer;
class Sae;

struct FeatureStatsOptions {
  std::vector<int64_t> features;  // the latents to describe, each in [0, d_sae), no duplicates
  int64_t top_k = 20;
  int64_t quantile_groups = 10;
  int64_t examples_per_group = 5;
  int64_t window = 10;  // context tokens kept either side of an example
  int64_t n_bins = 50;
  std::vector<int64_t> exclude_token_ids;
  std::optional<int64_t> seqpos_start, seqpos_stop;  // Python slice bounds (negative from the end)
  uint64_t seed = 42;
};

// One example: position `position` of window `prompt`, with its context
// [context_start, context_start + token_ids.size()) of that window and the latent's act there.
struct FeatureExample {
  int64_t prompt = 0;
  int64_t position = 0;
  double act = 0;
  int64_t context_start = 0;
  std::vector<int64_t> token_ids;
  std::vector<float> acts;
};

struct QuantileBand {
  double lo = 0, hi = 0;
  int64_t count = 0;                     // counted positions whose act fell in the band
  std::vector<FeatureExample> examples;  // sorted by act descending
};

struct CorrelatedLatent {
  int64_t index = 0;
  double corr = 0;
};

struct FeatureSummary {
  int64_t index = 0;
  int64_t fires = 0;
  double density = 0, max_act = 0, mean_act = 0;
  double range = 0;               // R (0 when it never fired)
  std::vector<double> bin_edges;  // n_bins + 1 edges over [0, R] (empty when it never fired)
  std::vector<int64_t> counts;    // n_bins counts
  std::vector<FeatureExample> top_examples;
  std::vector<QuantileBand> bands;           // empty when it never fired
  std::vector<CorrelatedLatent> correlated;  // candidates by r descending (defined r only)
};

// The positions of tokens [B, T] that the statistics count: not one of o.exclude_token_ids and
// inside the seqpos slice. bool [B, T] on the CPU.
at::Tensor counted_positions(const at::Tensor& tokens, const FeatureStatsOptions& o);

class FeatureStatsAccumulator {
 public:
  // Validates the options against d_sae (an index >= d_sae or a duplicate is a saelab::Error).
  FeatureStatsAccumulator(int64_t d_sae, FeatureStatsOptions opts);
  ~FeatureStatsAccumulator();
  FeatureStatsAccumulator(FeatureStatsAccumulator&&) noexcept;

  // candidates [n_features, M] int64: latent indices (in [0, d_sae)) to correlate each selected
  // latent with; call before the first batch. Without it no correlations are computed.
  void set_correlation_candidates(const at::Tensor& candidates);
  // Every latent of the SAE as every selected latent's candidate: Σ a_i a_j as one product
  // [n_features, tokens] x [tokens, d_sae] per batch (float64), n_features × d_sae sums kept.
  void set_correlate_with_all();

  // tokens [B, T] int64 (any device); acts [B, T, d_sae] the SAE's acts for every latent on those
  // tokens. Windows are numbered in the order they arrive.
  void add_batch(const at::Tensor& tokens, const at::Tensor& acts);

  int64_t n_tokens() const;
  int64_t n_prompts() const;
  const FeatureStatsOptions& options() const;
  // The statistics of everything added so far, one per selected latent in options().features
  // order; n_correlated correlated latents each.
  std::vector<FeatureSummary> summaries(int64_t n_correlated = 10) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The whole pass: runs `model` up to `hook_name` (stopping there) on each batch that `next_batch`
// yields (it returns an undefined tensor when the data has run out), encodes with `sae` and adds
// the acts. The hook's width (with hook_head_index: that head) must equal the SAE's d_in (a
// saelab::Error naming both otherwise). `on_batch(tokens_done)` is called after every batch.
struct FeaturePassTiming {
  double forward_s = 0;  // model to the hook
  double encode_s = 0;   // SAE encode
  double stats_s = 0;    // add_batch
};
FeaturePassTiming run_feature_pass(const Transformer& model, const Sae& sae,
                                   const std::string& hook_name,
                                   std::optional<int64_t> hook_head_index,
                                   const std::function<at::Tensor()>& next_batch,
                                   FeatureStatsAccumulator& acc,
                                   const std::function<void(int64_t)>& on_batch = {});

// The SAE input at the hook for a batch: [B, T, d_in] (head axis flattened, or one head selected).
at::Tensor sae_input_at_hook(const Transformer& model, const Sae& sae, const std::string& hook_name,
                             std::optional<int64_t> hook_head_index, const at::Tensor& tokens);

}  // namespace saelab
