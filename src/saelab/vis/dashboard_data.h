// The data behind `saelab vis`: loads the SAE, the model and the dataset, runs the one streaming
// feature-statistics pass (eval/feature_stats.h), adds the weight-based parts
// (dashboard_weights.h), and returns the `--json` contract (docs/vis.md) plus what only the page
// needs (token strings, the prompts the examples come from, Othello probes).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/eval/feature_stats.h"

namespace saelab::vis {

struct VisOptions {
  std::string sae_dir, model, dataset;
  std::string dataset_column, dataset_split, dataset_revision;  // as TokenSourceOptions's
  std::vector<int64_t> features;                                // explicit --features
  int64_t n_features = 32;         // otherwise --n-features chosen by --select
  std::string select = "density";  // density | random | all
  int64_t n_prompts = 1024, context_size = 128, batch_size_prompts = 8;
  int64_t top_k = 20, quantile_groups = 10, examples_per_group = 5, window = 10;
  int64_t n_logits = 10, n_neighbours = 10, n_correlated = 10;
  // The top examples' loss effects (loss_effects.h) cost one forward of the model per example:
  // computed when there are at most this many top examples in all, else left null (with a note).
  int64_t loss_effect_limit = 1024;
  bool include_special_tokens = false;
  std::optional<int64_t> seqpos_start, seqpos_stop;
  std::string probe;  // safetensors or torch .pt with "theirs vs mine" / "empty" [d_in, 8, 8]
  uint64_t seed = 42;
  std::string device = "cpu";
  bool progress = true;  // a progress line on stderr during the pass
  // prompt-centric view
  std::string prompt;
  std::optional<int64_t> position;  // default: the last token
  std::string stats_json;           // a previous pass's --json, for activation quantiles and cards
};

struct DashboardData {
  json stats;  // the --json contract: {"n_tokens", "features": [...], ...}
  json page;   // page-only data: "vocab" {id: string}, "prompts" {index: [ids]}, "othello", ...
  FeaturePassTiming timing;
  double loss_effects_s = 0;  // the top examples' loss effects, after the pass
};

// The feature-centric data. Bad input (d_in against the hook, a feature index >= d_sae, a token id
// outside the model's vocabulary, an unreadable dataset) is a saelab::Error naming it.
DashboardData build_feature_dashboard(const VisOptions& opts);

// The prompt-centric data: {"kind": "prompt", "token_ids", "tokens", "position", "per_token":
// [[{"index", "act"}...]...], "ranked": [{"index", "act", "quantile", "loss_effect"}...],
// "features": [records as in the contract, for the cards]}.
json build_prompt_view(const VisOptions& opts);

}  // namespace saelab::vis
