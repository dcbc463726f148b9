// ReconstructionStats and the density helpers against plain float64 loops written here: every
// formula of docs/metrics.md re-derived element by element, including the zero-norm conventions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "saelab/core/error.h"
#include "saelab/eval/density.h"
#include "saelab/eval/metrics.h"

using namespace saelab;

namespace {

struct Ref {
  double ev, mse, cossim, l2_in, l2_out, l2_ratio, rrb, l0, l1;
  int64_t dead, dense, below5, below6;
  std::vector<int64_t> fires;
};

// The metrics by definition, in float64 loops over the float64 values of the inputs.
Ref reference(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& f_in) {
  auto x = x_in.to(at::kDouble).contiguous();
  auto y = y_in.to(at::kDouble).contiguous();
  auto f = f_in.to(at::kDouble).contiguous();
  auto X = x.accessor<double, 2>();
  auto Y = y.accessor<double, 2>();
  auto F = f.accessor<double, 2>();
  const int64_t n = x.size(0), d = x.size(1), m = f.size(1);
  std::vector<double> mean(d, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < d; ++j) mean[j] += X[t][j] / n;
  double var_sum = 0, sse = 0, cos = 0, nin = 0, nout = 0, nout2 = 0, dot_sum = 0, ratio = 0,
         l1 = 0;
  int64_t ratio_n = 0;
  for (int64_t t = 0; t < n; ++t) {
    double nx = 0, ny = 0, dot = 0;
    for (int64_t j = 0; j < d; ++j) {
      var_sum += (X[t][j] - mean[j]) * (X[t][j] - mean[j]) / n;
      sse += (X[t][j] - Y[t][j]) * (X[t][j] - Y[t][j]);
      nx += X[t][j] * X[t][j];
      ny += Y[t][j] * Y[t][j];
      dot += X[t][j] * Y[t][j];
    }
    nout2 += ny;
    nx = std::sqrt(nx);
    ny = std::sqrt(ny);
    cos += (nx > 0 && ny > 0) ? dot / (nx * ny) : 0.0;
    nin += nx;
    nout += ny;
    dot_sum += dot;
    if (nx > 0) ratio += ny / nx, ++ratio_n;
  }
  Ref r{};
  r.fires.assign(m, 0);
  int64_t active = 0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < m; ++i) {
      l1 += std::abs(F[t][i]);
      if (F[t][i] > 0) ++r.fires[i], ++active;
    }
  r.ev = var_sum > 0 ? 1 - (sse / n) / var_sum : (sse == 0 ? 1.0 : 0.0);
  r.mse = sse / n / d;
  r.cossim = cos / n;
  r.l2_in = nin / n;
  r.l2_out = nout / n;
  r.l2_ratio = ratio_n ? ratio / ratio_n : 0.0;
  r.rrb = dot_sum != 0 ? nout2 / dot_sum : 0.0;
  r.l0 = static_cast<double>(active) / n;
  r.l1 = l1 / n;
  for (int64_t i = 0; i < m; ++i) {
    double density = static_cast<double>(r.fires[i]) / n;
    r.dead += r.fires[i] == 0;
    r.dense += density > 1e-2;
    r.below5 += density < 1e-5;
    r.below6 += density < 1e-6;
  }
  return r;
}

void expect_rel(double got, double want, double rel, const char* what) {
  EXPECT_NEAR(got, want, rel * std::max(1.0, std::abs(want))) << what;
}

void expect_matches(const json& m, const Ref& r, double rel = 1e-10) {
  expect_rel(m["reconstruction_quality/explained_variance"], r.ev, rel, "explained_variance");
  expect_rel(m["reconstruction_quality/mse"], r.mse, rel, "mse");
  expect_rel(m["reconstruction_quality/cossim"], r.cossim, rel, "cossim");
  expect_rel(m["shrinkage/l2_norm_in"], r.l2_in, rel, "l2_norm_in");
  expect_rel(m["shrinkage/l2_norm_out"], r.l2_out, rel, "l2_norm_out");
  expect_rel(m["shrinkage/l2_ratio"], r.l2_ratio, rel, "l2_ratio");
  expect_rel(m["shrinkage/relative_reconstruction_bias"], r.rrb, rel,
             "relative_reconstruction_bias");
  expect_rel(m["sparsity/l0"], r.l0, rel, "l0");
  expect_rel(m["sparsity/l1"], r.l1, rel, "l1");
  EXPECT_EQ(m["sparsity/dead_features"].get<int64_t>(), r.dead);
  EXPECT_EQ(m["sparsity/dense_features"].get<int64_t>(), r.dense);
  EXPECT_EQ(m["sparsity/below_1e-5"].get<int64_t>(), r.below5);
  EXPECT_EQ(m["sparsity/below_1e-6"].get<int64_t>(), r.below6);
}

struct Batch {
  at::Tensor x, y, f;
};

// x with a per-dimension offset (so the mean matters), an imperfect reconstruction, and latents
// that include a dead column, a dense one and a rare one; one token with x = 0 and one with x̂ = 0.
Batch make_batch(int64_t n, int64_t d, int64_t m, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, d}) + torch::linspace(-3, 3, d);
  auto y = 0.8 * x + 0.3 * torch::randn({n, d});
  auto f = torch::relu(torch::randn({n, m}) - 0.5);
  f.select(1, 0).zero_();                        // dead
  f.select(1, 1).copy_(torch::rand({n}) + 0.1);  // fires on every token
  f.select(1, 2).zero_();
  f.index_put_({3, 2}, 0.7);  // fires once
  x[5].zero_();
  y[9].zero_();
  return {x, y, f};
}

const std::vector<std::string> kNames = {"reconstruction_quality/explained_variance",
                                         "reconstruction_quality/mse",
                                         "reconstruction_quality/cossim",
                                         "shrinkage/l2_norm_in",
                                         "shrinkage/l2_norm_out",
                                         "shrinkage/l2_ratio",
                                         "shrinkage/relative_reconstruction_bias",
                                         "sparsity/l0",
                                         "sparsity/l1",
                                         "sparsity/dead_features",
                                         "sparsity/dense_features",
                                         "sparsity/below_1e-5",
                                         "sparsity/below_1e-6",
                                         "n_tokens"};

}  // namespace

TEST(ReconstructionStats, SingleBatchMatchesFloat64Loops) {
  auto b = make_batch(37, 5, 11, 1);
  ReconstructionStats s;
  s.add(b.x, b.y, b.f);
  auto m = s.metrics();
  EXPECT_EQ(m.size(), kNames.size());
  for (auto& name : kNames) EXPECT_TRUE(m.contains(name)) << name;
  EXPECT_EQ(m["n_tokens"].get<int64_t>(), 37);
  Ref r = reference(b.x, b.y, b.f);
  EXPECT_EQ(r.dead, 1);  // the fixture really has a dead latent and a dense one
  EXPECT_GE(r.dense, 1);
  expect_matches(m, r);
  auto fires = s.fire_counts();
  ASSERT_EQ(fires.numel(), 11);
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(fires[i].item<int64_t>(), r.fires[i]) << i;
}

TEST(ReconstructionStats, ThreeUnevenBatchesEqualOneBatch) {
  auto b = make_batch(61, 6, 9, 2);
  ReconstructionStats whole, split;
  whole.add(b.x, b.y, b.f);
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 7}, {7, 40}, {40, 61}})
    split.add(b.x.slice(0, lo, hi), b.y.slice(0, lo, hi), b.f.slice(0, lo, hi));
  auto a = whole.metrics(), c = split.metrics();
  EXPECT_EQ(c["n_tokens"].get<int64_t>(), 61);
  for (auto& name : kNames)
    EXPECT_NEAR(c[name].get<double>(), a[name].get<double>(), 1e-12) << name;
  expect_matches(c, reference(b.x, b.y, b.f));
  // A mean of per-batch explained variances would differ: the batches have different means.
  ReconstructionStats first;
  first.add(b.x.slice(0, 0, 7), b.y.slice(0, 0, 7), b.f.slice(0, 0, 7));
  EXPECT_GT(std::abs(first.metrics()["reconstruction_quality/explained_variance"].get<double>() -
                     a["reconstruction_quality/explained_variance"].get<double>()),
            1e-6);
}

TEST(ReconstructionStats, MergeEqualsOneAccumulator) {
  auto b = make_batch(50, 4, 8, 3);
  ReconstructionStats p, q, empty;
  p.add(b.x.slice(0, 0, 13), b.y.slice(0, 0, 13), b.f.slice(0, 0, 13));
  q.add(b.x.slice(0, 13), b.y.slice(0, 13), b.f.slice(0, 13));
  p.merge(q);
  p.merge(empty);
  expect_matches(p.metrics(), reference(b.x, b.y, b.f));
}

TEST(ReconstructionStats, LeadingDimsAreFlattenedAndHalfDtypesAccumulateInFloat64) {
  auto b = make_batch(24, 8, 16, 4);
  for (auto dtype : {at::kHalf, at::kBFloat16, at::kDouble}) {
    auto x = b.x.to(dtype).reshape({4, 6, 8});
    auto y = b.y.to(dtype).reshape({4, 6, 8});
    auto f = b.f.to(dtype).reshape({4, 6, 16});
    ReconstructionStats s;
    s.add(x, y, f);
    // The reference sees the same rounded values, so agreement is to float64 precision.
    expect_matches(s.metrics(),
                   reference(x.reshape({24, 8}), y.reshape({24, 8}), f.reshape({24, 16})));
  }
}

TEST(ReconstructionStats, LargeMeanSmallVarianceKeepsPrecision) {
  // Residual streams have dimensions with huge means; Σx² − (Σx)²/N would cancel catastrophically.
  torch::manual_seed(5);
  auto x = (torch::randn({200, 3}, at::kDouble) * 1e-3 + 1e5);
  auto y = x + torch::randn({200, 3}, at::kDouble) * 1e-4;
  auto f = torch::ones({200, 2});
  ReconstructionStats s;
  for (int64_t lo = 0; lo < 200; lo += 33)
    s.add(x.slice(0, lo, lo + 33), y.slice(0, lo, lo + 33), f.slice(0, lo, lo + 33));
  expect_rel(s.metrics()["reconstruction_quality/explained_variance"], reference(x, y, f).ev, 1e-6,
             "explained_variance");
}

TEST(ReconstructionStats, ZeroNormConventionsGiveNoNaN) {
  // All tokens zero, reconstruction zero: cossim 0, l2_ratio over no token 0, rrb 0, EV 1 (exact).
  auto z = torch::zeros({4, 3});
  auto f = torch::zeros({4, 2});
  ReconstructionStats s;
  s.add(z, z, f);
  auto m = s.metrics();
  for (auto& name : kNames) EXPECT_TRUE(std::isfinite(m[name].get<double>())) << name;
  EXPECT_EQ(m["reconstruction_quality/explained_variance"].get<double>(), 1.0);
  EXPECT_EQ(m["reconstruction_quality/cossim"].get<double>(), 0.0);
  EXPECT_EQ(m["shrinkage/l2_ratio"].get<double>(), 0.0);
  EXPECT_EQ(m["shrinkage/relative_reconstruction_bias"].get<double>(), 0.0);
  EXPECT_EQ(m["sparsity/dead_features"].get<int64_t>(), 2);
  // Identical nonzero tokens, imperfect reconstruction: variance 0 -> EV 0 (sklearn's
  // force_finite).
  auto x = torch::ones({4, 3});
  ReconstructionStats t;
  t.add(x, x * 0.5, f);
  auto m2 = t.metrics();
  EXPECT_EQ(m2["reconstruction_quality/explained_variance"].get<double>(), 0.0);
  EXPECT_NEAR(m2["shrinkage/l2_ratio"].get<double>(), 0.5, 1e-15);
  EXPECT_NEAR(m2["shrinkage/relative_reconstruction_bias"].get<double>(), 0.5, 1e-15);
  EXPECT_NEAR(m2["reconstruction_quality/cossim"].get<double>(), 1.0, 1e-15);
}

TEST(ReconstructionStats, BadShapesAndEmptyThrowErrors) {
  ReconstructionStats s;
  EXPECT_THROW(s.metrics(), Error);
  EXPECT_THROW(s.add(torch::zeros({4, 3}), torch::zeros({4, 2}), torch::zeros({4, 5})), Error);
  EXPECT_THROW(s.add(torch::zeros({4, 3}), torch::zeros({4, 3}), torch::zeros({5, 5})), Error);
  s.add(torch::ones({4, 3}), torch::ones({4, 3}), torch::ones({4, 5}));
  EXPECT_THROW(s.add(torch::ones({4, 2}), torch::ones({4, 2}), torch::ones({4, 5})), Error);
  EXPECT_THROW(s.add(torch::ones({4, 3}), torch::ones({4, 3}), torch::ones({4, 6})), Error);
  EXPECT_EQ(s.n_tokens(), 4);
}

TEST(Density, ThresholdsAtTheirBoundaries) {
  // n = 1e6 tokens: 10 fires is exactly 1e-5 (not below), 1 fire is exactly 1e-6 (not below),
  // 10000 fires is exactly 1e-2 (not dense); one more crosses each boundary.
  const int64_t n = 1000000;
  std::vector<int64_t> counts = {0, 0, 1, 2, 9, 10, 11, 500, 9999, 10000, 10001, 100001, n};
  auto t = torch::tensor(counts, at::kLong);
  DensitySummary s = summarize_fire_counts(t, n);
  int64_t dead = 0, dense = 0, vdense = 0, b5 = 0, b6 = 0, healthy = 0;
  double mean_log = 0;
  for (int64_t c : counts) {
    double d = static_cast<double>(c) / n;
    dead += c == 0, dense += d > 1e-2, vdense += d > 1e-1, b5 += d < 1e-5, b6 += d < 1e-6;
    healthy += d >= 1e-5 && d <= 1e-3;
    mean_log += std::log10(d + 1e-10) / counts.size();
  }
  EXPECT_EQ(s.d_sae, 13);
  EXPECT_EQ(s.dead, dead);
  EXPECT_EQ(s.dense, dense);
  EXPECT_EQ(s.very_dense, vdense);
  EXPECT_EQ(s.below_1e5, b5);
  EXPECT_EQ(s.below_1e6, b6);
  EXPECT_EQ(s.healthy, healthy);
  EXPECT_NEAR(s.mean_log10, mean_log, 1e-12);
  EXPECT_EQ(std::vector<int64_t>({s.dead, s.dense, s.below_1e5, s.below_1e6}),
            std::vector<int64_t>({2, 3, 5, 2}));  // the same counts by hand

  // The stored float32 log10 vector gives the same classification back.
  auto logd = log10_density(t, n);
  ASSERT_EQ(logd.scalar_type(), at::kFloat);
  for (size_t i = 0; i < counts.size(); ++i)
    EXPECT_FLOAT_EQ(logd[i].item<float>(),
                    static_cast<float>(std::log10(static_cast<double>(counts[i]) / n + 1e-10)));
  EXPECT_THROW(summarize_fire_counts(t, 0), Error);

  // Read back from stored float32 log10 values, densities within float32 rounding of a threshold
  // are ambiguous, so these counts stay clear of every boundary; the classification must survive.
  std::vector<int64_t> clear = {0, 0, 3, 8, 12, 500, 1500, 9000, 10100, 200000, n};
  auto ct = torch::tensor(clear, at::kLong);
  DensitySummary direct = summarize_fire_counts(ct, n);
  DensitySummary back = summarize_log10_density(log10_density(ct, n));
  EXPECT_EQ(std::vector<int64_t>({back.dead, back.dense, back.very_dense, back.below_1e5,
                                  back.below_1e6, back.healthy}),
            std::vector<int64_t>({2, 3, 2, 4, 2, 2}));  // by hand
  EXPECT_EQ(std::vector<int64_t>({direct.dead, direct.dense, direct.very_dense, direct.below_1e5,
                                  direct.below_1e6, direct.healthy}),
            std::vector<int64_t>({2, 3, 2, 4, 2, 2}));
  EXPECT_NEAR(back.mean_log10, direct.mean_log10, 1e-6);
}

TEST(Density, LogDensityOfStatsMatchesCounts) {
  auto b = make_batch(30, 4, 6, 6);
  ReconstructionStats s;
  s.add(b.x, b.y, b.f);
  Ref r = reference(b.x, b.y, b.f);
  auto logd = s.log10_feature_density();
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_FLOAT_EQ(logd[i].item<float>(),
                    static_cast<float>(std::log10(r.fires[i] / 30.0 + 1e-10)));
  EXPECT_FLOAT_EQ(logd[0].item<float>(), -10.0f);  // the dead latent
}

TEST(Density, HistogramCountsEveryValueInItsBin) {
  std::vector<double> values = {-10.0, -9.99, -5.0, -4.9, -3.2, -0.1, 0.0, -12.0, 0.5};
  Histogram h = density_histogram(torch::tensor(values, at::kDouble), 10);
  ASSERT_EQ(h.edges.size(), 11u);
  ASSERT_EQ(h.counts.size(), 10u);
  EXPECT_DOUBLE_EQ(h.edges.front(), -10.0);
  EXPECT_DOUBLE_EQ(h.edges.back(), 0.0);
  // Bins of width 1 over [-10, 0]: by hand.
  std::vector<int64_t> want = {3, 0, 0, 0, 0, 2, 1, 0, 0, 3};
  EXPECT_EQ(h.counts, want);
  EXPECT_THROW(histogram(torch::zeros({3}), 1.0, 1.0, 4), Error);
}

TEST(Density, HistogramJsonAndItsDecadeSummary) {
  // Dead (-10), two at 10^-4.5, one at 10^-2.1, one exactly at 0.
  std::vector<double> values = {-10.0, -10.0, -4.5, -4.5, -2.1, 0.0};
  json h = density_histogram_json(torch::tensor(values, at::kDouble));
  ASSERT_EQ(h.at("bin_edges").size(), 51u);
  ASSERT_EQ(h.at("counts").size(), 50u);
  EXPECT_EQ(h.at("value"), "log10(feature density + 1e-10)");
  EXPECT_NEAR(h["bin_edges"][1].get<double>(), -9.8, 1e-12);
  std::vector<int64_t> want(50, 0);
  want[0] = 2;   // [-10, -9.8)
  want[27] = 2;  // [-4.6, -4.4)
  want[39] = 1;  // [-2.2, -2.0)
  want[49] = 1;  // [-0.2, 0], closed on the right
  EXPECT_EQ(h.at("counts").get<std::vector<int64_t>>(), want);

  // The table form: per decade, -10 .. -1, right-aligned under their labels.
  std::string t = density_histogram_text(h);
  std::vector<std::string> lines;
  for (size_t p = 0, q; p < t.size(); p = q + 1)
    lines.push_back(t.substr(p, (q = t.find('\n', p)) - p));
  ASSERT_EQ(lines.size(), 3u) << t;
  EXPECT_NE(lines[0].find("per decade"), std::string::npos);
  std::istringstream labels(lines[1]), counts(lines[2]);
  std::vector<int64_t> l, c;
  for (int64_t v; labels >> v;) l.push_back(v);
  for (int64_t v; counts >> v;) c.push_back(v);
  EXPECT_EQ(l, (std::vector<int64_t>{-10, -9, -8, -7, -6, -5, -4, -3, -2, -1}));
  EXPECT_EQ(c, (std::vector<int64_t>{2, 0, 0, 0, 0, 2, 0, 1, 0, 1}));
  EXPECT_EQ(lines[1].size(), lines[2].size());
}

TEST(MetricsTable, GroupsAlignedRowsAndIntegers) {
  json m = {{"n_tokens", 12},
            {"sparsity/l0", 3.5},
            {"sparsity/dead_features", 2},
            {"reconstruction_quality/explained_variance", 0.25}};
  std::string t = metrics_table(m);
  std::vector<std::string> lines;
  for (size_t p = 0, q; p < t.size(); p = q + 1)
    lines.push_back(t.substr(p, (q = t.find('\n', p)) - p));
  // n_tokens first, then groups in key order, each row "  name<pad>value" with values aligned.
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0].substr(0, 8), "n_tokens");
  EXPECT_EQ(lines[1], "reconstruction_quality");
  EXPECT_EQ(lines[3], "sparsity");
  EXPECT_NE(lines[4].find("dead_features"), std::string::npos);
  EXPECT_EQ(lines[4].substr(lines[4].find_last_of(' ') + 1), "2");
  EXPECT_EQ(lines[5].substr(lines[5].find_last_of(' ') + 1), "3.5");
  EXPECT_EQ(lines[0].substr(lines[0].find_last_of(' ') + 1), "12");
  size_t col = lines[2].find_last_of(' ');
  for (int i : {0, 2, 4, 5}) EXPECT_EQ(lines[i].find_last_of(' '), col) << lines[i];
}
