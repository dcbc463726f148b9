// Feature density: how often each latent fires, summarised the way SAE practitioners read it
//: dead latents never fire, dense ones fire on more than 1 token in 100, healthy
// mass sits between log10 density −5 and −3. Shared by ReconstructionStats, the trainer's
// sparsity logging, `saelab info` (from sparsity.safetensors) and the report's histograms.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "saelab/core/json.h"

namespace saelab {

// The constant SAELens adds before log10 so that dead latents get a finite value (−10).
constexpr double kDensityLogEps = 1e-10;
constexpr double kDenseThreshold = 1e-2;      // dense: density > 1e-2
constexpr double kVeryDenseThreshold = 1e-1;  // very dense: density > 1e-1

struct DensitySummary {
  int64_t d_sae = 0;
  int64_t dead = 0;        // density == 0
  int64_t dense = 0;       // density > 1e-2
  int64_t very_dense = 0;  // density > 1e-1 (also counted in dense)
  int64_t below_1e5 = 0;   // density < 1e-5, dead included
  int64_t below_1e6 = 0;   // density < 1e-6, dead included
  int64_t healthy = 0;     // 1e-5 <= density <= 1e-3
  double mean_log10 = 0;   // mean over latents of log10(density + 1e-10)
};

// The summary as density.jsonl records it: {"d_sae", "dead", "dense", "very_dense", "healthy",
// "below_1e-5", "below_1e-6", "mean_log10"}; and back, with an error naming `where` and the key
// when one is missing or not a number.
json density_summary_json(const DensitySummary& s);
DensitySummary density_summary_from_json(const json& j, const std::string& where);

// From per-latent fire counts (any integer or float dtype, [d_sae]) over n_tokens > 0 tokens.
DensitySummary summarize_fire_counts(const at::Tensor& fire_counts, int64_t n_tokens);
// From per-latent log10(density + 1e-10) values, as stored in sparsity.safetensors. A latent is
// dead when its value is at most log10(1e-10) (up to float32 rounding of the stored value); a
// density within ~2e-6 (relative) of a threshold may land on either side, as float32 cannot say
// which.
DensitySummary summarize_log10_density(const at::Tensor& log10_density);

// log10(fires / n_tokens + 1e-10) in float32 ([d_sae], CPU), computed in float64.
at::Tensor log10_density(const at::Tensor& fire_counts, int64_t n_tokens);

// A fixed-range histogram: `bins` equal bins over [lo, hi]; values below lo go in the first bin and
// values above hi in the last, so every latent is counted (sum(counts) == numel).
struct Histogram {
  std::vector<double> edges;    // bins + 1 edges, edges[0] = lo, edges[bins] = hi
  std::vector<int64_t> counts;  // bins counts
};
Histogram histogram(const at::Tensor& values, double lo, double hi, int64_t bins);
// The feature-density histogram of log10(density + 1e-10): range [−10, 0], 50 bins by default
// (dead latents land in the first bin).
Histogram density_histogram(const at::Tensor& log10_density, int64_t bins = 50);

// The key under which `saelab eval --json` reports that histogram: the trainer's TensorBoard tag
// for the same histogram.
constexpr const char* kDensityHistogramKey = "plots/feature_density_line_chart";
// density_histogram(log10_density, bins) as JSON: {"value": "log10(feature density + 1e-10)",
// "bin_edges": [bins + 1 numbers, -10 .. 0], "counts": [bins integers]}. Bin i holds
// edges[i] <= v < edges[i + 1], the last bin also v = 0; dead latents (exactly -10) are in bin 0.
json density_histogram_json(const at::Tensor& log10_density, int64_t bins = 50);
// The short table form of such a JSON histogram: its counts summed per decade of log10 density
// (by each bin's lower edge), -10 (dead) to 0, on two aligned lines under a title line.
std::string density_histogram_text(const json& histogram);

}  // namespace saelab
