// The toy model of superposition: firing rates against the configured probabilities (binomial
// tolerance computed here), rows as sums of the true features, magnitudes, groups, determinism and
// resume from state().
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "saelab/core/error.h"
#include "saelab/data/toy_model.h"

using namespace saelab;

namespace {
ToyModelConfig small(double p = 0.05, double alpha = 0.0) {
  ToyModelConfig c;
  c.d_in = 16;
  c.n_features = 64;
  c.feature_probability = p;
  c.probability_power_law = alpha;
  c.magnitude_mean = 1.0;
  c.magnitude_std = 0.5;
  c.feature_seed = 3;
  c.stream_seed = 11;
  return c;
}

// Empirical firing frequency per feature over `batches` batches of n rows.
at::Tensor firing_rate(ToyModel& m, int batches, int64_t n) {
  at::Tensor count = at::zeros({m.config().n_features}, at::kDouble);
  for (int b = 0; b < batches; ++b) {
    at::Tensor coeff;
    m.next_batch_with_coefficients(n, &coeff);
    count += (coeff > 0).to(at::kDouble).sum(0);
  }
  return count / double(batches * n);
}

void expect_rates(const at::Tensor& rate, const std::vector<double>& p, double n_rows) {
  for (size_t i = 0; i < p.size(); ++i) {
    double sigma = std::sqrt(p[i] * (1 - p[i]) / n_rows);
    EXPECT_NEAR(rate[int64_t(i)].item<double>(), p[i], 5 * sigma + 1e-12) << "feature " << i;
  }
}
}  // namespace

TEST(ToyModel, UniformFiringRateMatchesProbability) {
  at::set_num_threads(1);
  ToyModel m(small(0.05, 0.0));
  at::Tensor rate = firing_rate(m, 10, 4096);
  expect_rates(rate, std::vector<double>(64, 0.05), 10 * 4096);
}

TEST(ToyModel, PowerLawFiringRatesMatchTheSpreadWithTheConfiguredMean) {
  at::set_num_threads(1);
  const double p = 0.05, alpha = 1.0;
  ToyModel m(small(p, alpha));
  // p_i = c (i+1)^-alpha with mean p (none reaches 1 here: p_0 = 0.05*64/H_64 ≈ 0.68).
  std::vector<double> want(64);
  double z = 0;
  for (int i = 0; i < 64; ++i) z += std::pow(i + 1.0, -alpha);
  for (int i = 0; i < 64; ++i) want[i] = p * 64 * std::pow(i + 1.0, -alpha) / z;
  ASSERT_LT(want[0], 1.0);
  for (int i = 0; i < 64; ++i)
    EXPECT_NEAR(m.feature_probabilities()[i].item<double>(), want[i], 1e-12);
  expect_rates(firing_rate(m, 10, 4096), want, 10 * 4096);
}

TEST(ToyModel, RowsAreSumsOfUnitTrueFeatures) {
  ToyModel m(small());
  auto dirs = m.true_features();
  ASSERT_TRUE(dirs.has_value());
  ASSERT_EQ(dirs->sizes(), (std::vector<int64_t>{64, 16}));
  at::Tensor norms = dirs->to(at::kDouble).norm(2, {1});
  EXPECT_TRUE(at::allclose(norms, at::ones({64}, at::kDouble), 0, 1e-6));
  at::Tensor coeff;
  at::Tensor x = m.next_batch_with_coefficients(512, &coeff);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{512, 16}));
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  at::Tensor want = coeff.to(at::kDouble).mm(dirs->to(at::kDouble));
  EXPECT_LT((x.to(at::kDouble) - want).abs().max().item<double>(), 1e-5);
  EXPECT_GT(coeff.gt(0).sum().item<int64_t>(), 0);
}

TEST(ToyModel, MagnitudesFollowFoldedNormal) {
  at::set_num_threads(1);
  ToyModelConfig c = small(0.2);
  c.magnitude_mean = 0.3;
  c.magnitude_std = 1.0;
  ToyModel m(c);
  at::Tensor coeff;
  m.next_batch_with_coefficients(8192, &coeff);
  at::Tensor on = coeff.masked_select(coeff > 0).to(at::kDouble);
  // E|X| for X ~ N(mu, s): s sqrt(2/pi) exp(-mu^2 / 2s^2) + mu (1 - 2 Phi(-mu/s)).
  double mu = 0.3, s = 1.0;
  double phi = 0.5 * std::erfc(mu / s / std::sqrt(2.0));
  double want = s * std::sqrt(2 / M_PI) * std::exp(-mu * mu / (2 * s * s)) + mu * (1 - 2 * phi);
  double n = double(on.numel());
  double sd = on.std().item<double>();
  EXPECT_NEAR(on.mean().item<double>(), want, 5 * sd / std::sqrt(n));
}

TEST(ToyModel, CorrelatedGroupsFireTogether) {
  ToyModelConfig c = small(0.1);
  c.correlated_groups = 4;
  c.group_size = 3;
  ToyModel m(c);
  at::Tensor coeff;
  m.next_batch_with_coefficients(4096, &coeff);
  at::Tensor fire = coeff > 0;
  for (int g = 0; g < 4; ++g)
    for (int j = 1; j < 3; ++j)
      EXPECT_TRUE(fire.select(1, g * 3).equal(fire.select(1, g * 3 + j))) << g << "," << j;
  double rate = fire.slice(1, 0, 12).to(at::kDouble).mean().item<double>();
  // 4 group Bernoullis per row, 4096 rows: binomial tolerance for the group rate.
  EXPECT_NEAR(rate, 0.1, 5 * std::sqrt(0.1 * 0.9 / (4 * 4096)));
  // Ungrouped features are not tied to each other.
  EXPECT_FALSE(fire.select(1, 20).equal(fire.select(1, 21)));
}

TEST(ToyModel, DeterministicAndResumable) {
  ToyModel a(small()), b(small());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.next_batch(100).equal(b.next_batch(100)));
  json s = a.state();
  at::Tensor next_a = a.next_batch(100);
  ToyModel c(small());
  c.load_state(json::parse(s.dump()));  // through text, as a checkpoint stores it
  EXPECT_TRUE(c.next_batch(100).equal(next_a));

  ToyModelConfig other = small();
  other.stream_seed = 12;
  ToyModel d(other);
  EXPECT_TRUE(d.true_features()->equal(*a.true_features()));  // same directions
  ToyModel e(small());
  EXPECT_FALSE(d.next_batch(100).equal(e.next_batch(100)));  // other stream
  EXPECT_THROW(d.load_state(s), Error);                      // a state of another seed
  EXPECT_THROW(d.load_state(json{{"type", "cached"}}), Error);
}

TEST(ToyModel, LargeBatchIsVectorised) {
  ToyModelConfig c = small();
  c.d_in = 64;
  c.n_features = 512;
  ToyModel m(c);
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor x = m.next_batch(4096);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{4096, 64}));
  EXPECT_LT(s, 2.0) << "a 4096x64 toy batch took " << s << " s";  // loose: catches element loops
}

TEST(ToyModel, BadConfigNamesTheKey) {
  ToyModelConfig c = small();
  c.feature_probability = 1.5;
  try {
    ToyModel m(c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("toy_feature_probability"), std::string::npos);
  }
  c = small();
  c.correlated_groups = 40;
  c.group_size = 2;
  EXPECT_THROW(ToyModel{c}, Error);
}
