// A toy model of superposition (Elhage et al. 2022; the synthetic data of sparsify's tests):
// n_features unit-norm random directions d_i in R^d_in (n_features > d_in is the point), each
// feature fires independently with probability p_i, with magnitude a_i = |N(mean, std)| when it
// fires, and an activation row is x = Σ_i a_i d_i. Optional correlated groups: consecutive blocks
// of group_size features (the first correlated_groups·group_size features) fire together, driven
// by one shared Bernoulli per group whose probability is the mean of its members' p_i.
//
// Determinism: directions come from `feature_seed`; batch b is drawn from a generator seeded with
// hash(stream_seed, b), so state() is just the batch counter and load_state is O(1).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "saelab/data/activation_source.h"

namespace saelab {

struct ToyModelConfig {
  int64_t d_in = 64;
  int64_t n_features = 512;
  double feature_probability = 0.01;  // mean p over features
  double probability_power_law =
      0.0;  // alpha: p_i ∝ (i+1)^-alpha, rescaled to mean p (0 = uniform)
  double magnitude_mean = 1.0;
  double magnitude_std = 0.0;
  int64_t correlated_groups = 0;
  int64_t group_size = 2;
  uint64_t feature_seed = 0;
  uint64_t stream_seed = 42;
};

class ToyModel : public ActivationSource {
 public:
  // Throws saelab::Error for a bad configuration (probabilities outside (0, 1], groups that do not
  // fit in n_features, non-positive sizes), naming the toy_* key.
  explicit ToyModel(const ToyModelConfig& cfg);

  int64_t d_in() const override { return cfg_.d_in; }
  at::Tensor next_batch(int64_t n) override;
  // Also returns the feature coefficients a [n, n_features] (0 where a feature is off), so that
  // batch == coefficients @ true_features().
  at::Tensor next_batch_with_coefficients(int64_t n, at::Tensor* coefficients);
  json state() const override;
  void load_state(const json& s) override;
  std::optional<at::Tensor> true_features() const override { return directions_; }
  std::string describe() const override;

  const ToyModelConfig& config() const { return cfg_; }
  // Per-feature firing probability p_i [n_features], float64 (the group's probability for grouped
  // features).
  const at::Tensor& feature_probabilities() const { return probabilities_; }
  int64_t batches_drawn() const { return batch_index_; }

 private:
  ToyModelConfig cfg_;
  at::Tensor directions_;     // [n_features, d_in] float32, unit rows
  at::Tensor probabilities_;  // [n_features] float64
  int64_t batch_index_ = 0;
};

}  // namespace saelab
