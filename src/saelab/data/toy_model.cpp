// The toy model of superposition (see toy_model.h). Batches are drawn with whole-tensor ops: one
// uniform draw per (row, feature) for firing, one normal draw for magnitudes, one matmul to mix.
#include "saelab/data/toy_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "saelab/core/error.h"

namespace saelab {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The generator for batch b: independent of every other batch, so resuming needs only b.
at::Generator batch_generator(uint64_t stream_seed, int64_t b) {
  uint64_t s = splitmix64(splitmix64(stream_seed) ^ splitmix64(uint64_t(b) + 0x5bd1e995ull));
  return at::make_generator<at::CPUGeneratorImpl>(s);
}

// p_i ∝ (i+1)^-alpha with mean p and every p_i ≤ 1: scale, clamp at 1, rescale the rest.
std::vector<double> power_law_probabilities(int64_t n, double p, double alpha) {
  std::vector<double> w(n), out(n);
  for (int64_t i = 0; i < n; ++i) w[i] = std::pow(double(i + 1), -alpha);
  std::vector<bool> capped(n, false);
  for (int iter = 0; iter < 100; ++iter) {
    double target = p * n, free_w = 0;
    for (int64_t i = 0; i < n; ++i) capped[i] ? target -= 1.0 : free_w += w[i];
    double scale = free_w > 0 ? target / free_w : 0;
    bool changed = false;
    for (int64_t i = 0; i < n; ++i) {
      if (capped[i]) continue;
      out[i] = w[i] * scale;
      if (out[i] > 1.0) capped[i] = true, out[i] = 1.0, changed = true;
    }
    if (!changed) break;
  }
  for (int64_t i = 0; i < n; ++i)
    if (capped[i]) out[i] = 1.0;
  return out;
}

}  // namespace

ToyModel::ToyModel(const ToyModelConfig& cfg) : cfg_(cfg) {
  if (cfg.d_in <= 0) fail("toy model: d_in must be positive, got {}", cfg.d_in);
  if (cfg.n_features <= 0)
    fail("toy model: toy_n_features must be positive, got {}", cfg.n_features);
  if (!(cfg.feature_probability > 0 && cfg.feature_probability <= 1))
    fail("toy model: toy_feature_probability must be in (0, 1], got {}", cfg.feature_probability);
  if (!(cfg.probability_power_law >= 0))
    fail("toy model: toy_probability_power_law must be >= 0, got {}", cfg.probability_power_law);
  if (!(cfg.magnitude_std >= 0))
    fail("toy model: toy_magnitude_std must be >= 0, got {}", cfg.magnitude_std);
  if (cfg.correlated_groups < 0 || cfg.group_size <= 0 ||
      cfg.correlated_groups * cfg.group_size > cfg.n_features)
    fail(
        "toy model: toy_correlated_groups * toy_group_size = {} * {} must fit in toy_n_features = "
        "{}",
        cfg.correlated_groups, cfg.group_size, cfg.n_features);

  auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.feature_seed);
  at::Tensor d = at::randn({cfg.n_features, cfg.d_in}, gen, at::TensorOptions().dtype(at::kDouble));
  directions_ = (d / d.norm(2, {1}, true)).to(at::kFloat).contiguous();

  std::vector<double> p =
      power_law_probabilities(cfg.n_features, cfg.feature_probability, cfg.probability_power_law);
  for (int64_t g = 0; g < cfg.correlated_groups; ++g) {
    double mean = 0;
    for (int64_t j = 0; j < cfg.group_size; ++j) mean += p[g * cfg.group_size + j];
    mean /= double(cfg.group_size);
    for (int64_t j = 0; j < cfg.group_size; ++j) p[g * cfg.group_size + j] = mean;
  }
  probabilities_ = torch::tensor(p, at::TensorOptions().dtype(at::kDouble));
}

at::Tensor ToyModel::next_batch(int64_t n) { return next_batch_with_coefficients(n, nullptr); }

at::Tensor ToyModel::next_batch_with_coefficients(int64_t n, at::Tensor* coefficients) {
  if (n <= 0) fail("toy model: batch size must be positive, got {}", n);
  at::NoGradGuard no_grad;
  auto gen = batch_generator(cfg_.stream_seed, batch_index_++);
  const int64_t F = cfg_.n_features;
  const int64_t grouped = cfg_.correlated_groups * cfg_.group_size;
  at::Tensor p = probabilities_.to(at::kFloat);

  at::Tensor fire = at::rand({n, F}, gen) < p;  // [n, F] bool
  if (grouped > 0) {
    // One shared Bernoulli per group: the members of a group fire together.
    at::Tensor group_p =
        p.slice(0, 0, grouped).view({cfg_.correlated_groups, cfg_.group_size}).select(1, 0);
    at::Tensor group_fire = at::rand({n, cfg_.correlated_groups}, gen) < group_p;
    fire.slice(1, 0, grouped).copy_(group_fire.repeat_interleave(cfg_.group_size, 1));
  }
  at::Tensor magnitude;
  if (cfg_.magnitude_std > 0) {
    magnitude = (at::randn({n, F}, gen) * cfg_.magnitude_std + cfg_.magnitude_mean).abs_();
  } else {
    magnitude = at::full({n, F}, std::fabs(cfg_.magnitude_mean), at::kFloat);
  }
  at::Tensor coeff = magnitude * fire.to(at::kFloat);
  at::Tensor x = coeff.mm(directions_).contiguous();
  if (coefficients) *coefficients = coeff;
  return x;
}

json ToyModel::state() const {
  return {{"type", "toy"}, {"batches_drawn", batch_index_}, {"stream_seed", cfg_.stream_seed}};
}

void ToyModel::load_state(const json& s) {
  if (!s.is_object() || s.value("type", "") != "toy" || !s.contains("batches_drawn") ||
      !s["batches_drawn"].is_number_integer())
    fail(
        "toy model: cannot resume from state {}: expected {{\"type\": \"toy\", \"batches_drawn\": "
        "N}}",
        s.dump());
  if (s.contains("stream_seed") && s["stream_seed"].get<uint64_t>() != cfg_.stream_seed)
    fail("toy model: state was saved with seed {} but this run has seed {}",
         s["stream_seed"].get<uint64_t>(), cfg_.stream_seed);
  batch_index_ = s["batches_drawn"].get<int64_t>();
}

std::string ToyModel::describe() const {
  return fmt::format(
      "toy model of superposition: {} features in d_in = {}, mean firing probability {} "
      "(power law {}), magnitude |N({}, {})|, {} correlated groups of {}",
      cfg_.n_features, cfg_.d_in, cfg_.feature_probability, cfg_.probability_power_law,
      cfg_.magnitude_mean, cfg_.magnitude_std, cfg_.correlated_groups, cfg_.group_size);
}

}  // namespace saelab
