// Model-free SAE metrics as a streaming accumulator: feed batches of inputs x,
// reconstructions x̂ and latent activations f, read the metrics of everything seen so far. The eval
// verb, the trainer and the model-based evaluator all use this one implementation, so a number
// means the same thing wherever it is printed. docs/metrics.md gives every formula and convention.
//
// Everything is accumulated in float64 on the device of the first batch (no host sync per batch).
// Explained variance uses per-dimension moments merged across batches (Chan et al.'s parallel
// variance), so it is the all-token value 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖², never a mean of
// per-batch ratios.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

class ReconstructionStats {
 public:
  ReconstructionStats() = default;

  // x, x_hat: [..., d_in]; acts: [..., d_sae] with the same leading shape; any float dtype.
  // d_in and d_sae are fixed by the first call; a later mismatch throws saelab::Error.
  void add(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& acts);
  // Folds in another accumulator's tokens (e.g. from another rank); same d_in/d_sae required.
  void merge(const ReconstructionStats& other);
  void reset() { *this = ReconstructionStats(); }

  int64_t n_tokens() const { return n_; }
  int64_t d_in() const { return d_in_; }
  int64_t d_sae() const { return d_sae_; }

  // Metric name -> value, names exactly as SAELens's evals (reconstruction_quality/...,
  // shrinkage/..., sparsity/...) plus "n_tokens". Throws saelab::Error when no token was added.
  json metrics() const;

  // Per latent: number of tokens with f_i > 0 (int64 [d_sae], CPU).
  at::Tensor fire_counts() const;
  // Per latent: log10(fires / tokens + 1e-10) (float32 [d_sae], CPU): SAELens's
  // sparsity.safetensors.
  at::Tensor log10_feature_density() const;

 private:
  void init(int64_t d_in, int64_t d_sae, const at::Device& device);

  int64_t n_ = 0;
  int64_t d_in_ = 0;
  int64_t d_sae_ = 0;
  // float64 accumulators (0-dim unless noted), on the device of the first batch.
  at::Tensor mean_x_;     // [d_in] running mean of x
  at::Tensor m2_x_;       // [d_in] running Σ (x_d − mean_d)²
  at::Tensor sse_;        // Σ ‖x − x̂‖²
  at::Tensor cos_sum_;    // Σ cos(x, x̂), 0 for a token where either norm is 0
  at::Tensor norm_in_;    // Σ ‖x‖
  at::Tensor norm_out_;   // Σ ‖x̂‖
  at::Tensor norm_out2_;  // Σ ‖x̂‖²
  at::Tensor dot_;        // Σ ⟨x, x̂⟩
  at::Tensor ratio_sum_;  // Σ ‖x̂‖/‖x‖ over tokens with ‖x‖ > 0
  at::Tensor ratio_n_;    // number of tokens with ‖x‖ > 0
  at::Tensor l1_;         // Σ_tokens Σ_i |f_i|
  at::Tensor fires_;      // [d_sae] int64 count of f_i > 0
};

// Formats a flat metrics object ("group/name" -> number) as an aligned table: ungrouped keys
// (n_tokens) first, then one block per group in key order; integers print as integers.
std::string metrics_table(const json& metrics);

}  // namespace saelab
