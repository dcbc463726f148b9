// The streaming feature-statistics pass (eval/feature_stats.h) against a float64 computation in
// the test over every activation at once: counts, extremes, histograms on the power-of-two range,
// top examples with their contexts, band membership and sample sizes, Pearson correlations, the
// special-token and seqpos rules; and the whole pass on a tiny model whose hook the test computes
// by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <vector>

#include "model/test_transformer_models.h"
#include "saelab/core/error.h"
#include "saelab/eval/feature_stats.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

constexpr int64_t kBos = 7;

struct Data {
  at::Tensor tokens;  // [N, T] int64
  at::Tensor acts;    // [N, T, D] float32
};

// Sparse non-negative activations; BOS at position 0 of every window, where latent 0 fires hard
// (so counting BOS changes the answers).
Data make_data(int64_t N, int64_t T, int64_t D, uint64_t seed) {
  at::manual_seed(seed);
  Data d;
  d.tokens = torch::randint(0, 50, {N, T}, torch::kLong);
  d.tokens.select(1, 0).fill_(kBos);
  d.acts = torch::relu(torch::randn({N, T, D}) * 2 - 1.5);
  d.acts.select(1, 0).select(1, 0).fill_(100.0f);
  d.acts.select(2, D - 1).zero_();  // a dead latent
  return d;
}

// Reference: everything in float64 from the whole tensor at once.
struct Ref {
  int64_t n = 0;
  std::vector<int64_t> fires;
  std::vector<double> maxv, sum, s1, s2;
  std::vector<std::vector<double>> vals;                               // firing acts per latent
  std::vector<std::vector<std::tuple<double, int64_t, int64_t>>> all;  // (act, prompt, pos)
  at::Tensor counted;                                                  // [N, T] bool
};

Ref reference(const Data& d, bool include_bos, int64_t lo, int64_t hi) {
  const int64_t N = d.tokens.size(0), T = d.tokens.size(1), D = d.acts.size(2);
  Ref r;
  r.fires.assign(D, 0);
  r.maxv.assign(D, 0);
  r.sum.assign(D, 0);
  r.s1.assign(D, 0);
  r.s2.assign(D, 0);
  r.vals.resize(D);
  r.all.resize(D);
  r.counted = torch::zeros({N, T}, torch::kBool);
  auto a = d.acts.to(torch::kDouble);
  auto aa = a.accessor<double, 3>();
  auto tk = d.tokens.accessor<int64_t, 2>();
  for (int64_t b = 0; b < N; ++b)
    for (int64_t t = lo; t < hi; ++t) {
      if (!include_bos && tk[b][t] == kBos) continue;
      r.counted[b][t] = true;
      ++r.n;
      for (int64_t f = 0; f < D; ++f) {
        const double v = aa[b][t][f];
        r.s1[f] += v;
        r.s2[f] += v * v;
        if (v > 0) {
          ++r.fires[f];
          r.sum[f] += v;
          r.maxv[f] = std::max(r.maxv[f], v);
          r.vals[f].push_back(v);
          r.all[f].push_back({v, b, t});
        }
      }
    }
  return r;
}

double pow2_ceil_ref(double v) { return std::pow(2.0, std::ceil(std::log2(v))); }

void run(FeatureStatsAccumulator& acc, const Data& d, int64_t batch) {
  for (int64_t s = 0; s < d.tokens.size(0); s += batch) {
    const int64_t e = std::min(d.tokens.size(0), s + batch);
    acc.add_batch(d.tokens.slice(0, s, e), d.acts.slice(0, s, e));
  }
}

void check_against_reference(const Data& d, const FeatureStatsOptions& o, const Ref& r,
                             const std::vector<FeatureSummary>& sums) {
  const int64_t T = d.tokens.size(1);
  const int64_t nb = o.n_bins, G = o.quantile_groups;
  ASSERT_EQ(sums.size(), o.features.size());
  for (size_t k = 0; k < sums.size(); ++k) {
    const int64_t f = o.features[k];
    const FeatureSummary& s = sums[k];
    SCOPED_TRACE("latent " + std::to_string(f));
    EXPECT_EQ(s.index, f);
    EXPECT_EQ(s.fires, r.fires[f]);
    EXPECT_DOUBLE_EQ(s.density, double(r.fires[f]) / double(r.n));
    EXPECT_DOUBLE_EQ(s.max_act, r.maxv[f]);
    EXPECT_NEAR(s.mean_act, r.fires[f] ? r.sum[f] / r.fires[f] : 0.0, 1e-12);
    if (r.fires[f] == 0) {
      EXPECT_TRUE(s.top_examples.empty());
      EXPECT_TRUE(s.bands.empty());
      EXPECT_TRUE(s.counts.empty());
      continue;
    }
    // Histogram and bands on R = the smallest power of two >= max.
    const double R = pow2_ceil_ref(r.maxv[f]);
    EXPECT_EQ(s.range, R);
    std::vector<int64_t> h(nb, 0), bc(G, 0);
    for (double v : r.vals[f]) {
      ++h[std::min<int64_t>(nb - 1, int64_t(std::floor(v / R * nb)))];
      ++bc[std::min<int64_t>(G - 1, int64_t(std::floor(v / R * G)))];
    }
    EXPECT_EQ(s.counts, h);
    ASSERT_EQ(int64_t(s.bin_edges.size()), nb + 1);
    EXPECT_EQ(s.bin_edges.front(), 0.0);
    EXPECT_EQ(s.bin_edges.back(), R);
    ASSERT_EQ(int64_t(s.bands.size()), G);
    for (int64_t g = 0; g < G; ++g) {
      const auto& band = s.bands[g];
      EXPECT_DOUBLE_EQ(band.lo, R * g / G);
      EXPECT_DOUBLE_EQ(band.hi, R * (g + 1) / G);
      EXPECT_EQ(band.count, bc[g]) << "band " << g;
      EXPECT_EQ(int64_t(band.examples.size()), std::min(o.examples_per_group, bc[g]));
      for (const auto& e : band.examples) {
        EXPECT_GT(e.act, 0);
        EXPECT_GE(e.act, band.lo);
        if (g + 1 < G)
          EXPECT_LT(e.act, band.hi);
        else
          EXPECT_LE(e.act, band.hi);
        // The example is a real counted position with that act.
        EXPECT_TRUE(r.counted[e.prompt][e.position].item<bool>());
        EXPECT_EQ(e.act, double(d.acts[e.prompt][e.position][f].item<float>()));
      }
    }
    // Top examples: sorted by act desc, ties by (prompt, position).
    auto all = r.all[f];
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
      return std::make_pair(std::get<1>(a), std::get<2>(a)) <
             std::make_pair(std::get<1>(b), std::get<2>(b));
    });
    const size_t k_top = std::min<size_t>(o.top_k, all.size());
    ASSERT_EQ(s.top_examples.size(), k_top);
    for (size_t i = 0; i < k_top; ++i) {
      const auto& e = s.top_examples[i];
      const auto [v, b, t] = all[i];
      EXPECT_EQ(e.act, v) << i;
      EXPECT_EQ(e.prompt, b) << i;
      EXPECT_EQ(e.position, t) << i;
      const int64_t start = std::max<int64_t>(0, t - o.window);
      const int64_t stop = std::min<int64_t>(T, t + o.window + 1);
      EXPECT_EQ(e.context_start, start);
      ASSERT_EQ(int64_t(e.token_ids.size()), stop - start);
      ASSERT_EQ(int64_t(e.acts.size()), stop - start);
      for (int64_t p = start; p < stop; ++p) {
        EXPECT_EQ(e.token_ids[p - start], d.tokens[b][p].item<int64_t>());
        EXPECT_EQ(e.acts[p - start], d.acts[b][p][f].item<float>());
      }
    }
  }
}

FeatureStatsOptions options(std::vector<int64_t> features) {
  FeatureStatsOptions o;
  o.features = std::move(features);
  o.top_k = 6;
  o.quantile_groups = 4;
  o.examples_per_group = 3;
  o.window = 2;
  o.n_bins = 10;
  o.exclude_token_ids = {kBos};
  return o;
}

TEST(FeatureStats, MatchesFloat64ReferenceWithBosExcluded) {
  const Data d = make_data(10, 9, 12, 1);
  FeatureStatsOptions o = options({0, 2, 3, 5, 11});
  FeatureStatsAccumulator acc(12, o);
  run(acc, d, 3);  // batches 3, 3, 3, 1: ranges grow across batches
  const Ref r = reference(d, false, 0, 9);
  EXPECT_EQ(acc.n_tokens(), r.n);
  EXPECT_EQ(acc.n_tokens(), 10 * 8);
  EXPECT_EQ(acc.n_prompts(), 10);
  check_against_reference(d, o, r, acc.summaries());
  // Latent 0's 100.0 at BOS is not counted.
  EXPECT_LT(acc.summaries()[0].max_act, 100.0);
}

TEST(FeatureStats, CountsBosWhenAskedAndHonoursSeqposSlice) {
  const Data d = make_data(8, 9, 6, 2);
  FeatureStatsOptions o = options({0, 1, 4});
  o.exclude_token_ids.clear();
  FeatureStatsAccumulator acc(6, o);
  run(acc, d, 4);
  const Ref r = reference(d, true, 0, 9);
  check_against_reference(d, o, r, acc.summaries());
  EXPECT_EQ(acc.summaries()[0].max_act, 100.0);
  EXPECT_EQ(acc.summaries()[0].top_examples[0].position, 0);

  FeatureStatsOptions o2 = options({0, 1, 4});
  o2.seqpos_start = 2;
  o2.seqpos_stop = -2;  // positions 2..6
  FeatureStatsAccumulator acc2(6, o2);
  run(acc2, d, 5);
  const Ref r2 = reference(d, false, 2, 7);
  EXPECT_EQ(acc2.n_tokens(), 8 * 5);
  check_against_reference(d, o2, r2, acc2.summaries());
}

TEST(FeatureStats, BatchingDoesNotChangeDeterministicStatistics) {
  const Data d = make_data(12, 7, 5, 3);
  FeatureStatsOptions o = options({0, 1, 2, 3, 4});
  FeatureStatsAccumulator a(5, o), b(5, o);
  run(a, d, 1);
  run(b, d, 12);
  const auto sa = a.summaries(), sb = b.summaries();
  const Ref r = reference(d, false, 0, 7);
  check_against_reference(d, o, r, sa);
  check_against_reference(d, o, r, sb);
}

// Runs d through acc and checks each selected latent's correlated list: Pearson's r over counted
// positions, in float64, with every other latent that has a defined r (the dead one has none),
// sorted descending. The pass squares the acts in their own float32 before summing in float64.
void expect_pearson_with_every_other_latent(FeatureStatsAccumulator& acc,
                                            const FeatureStatsOptions& o, const Data& d) {
  run(acc, d, 2);
  const Ref r = reference(d, false, 0, 8);
  const at::Tensor a = d.acts.to(torch::kDouble).index({r.counted});  // [n, d_sae]
  const auto sums = acc.summaries(10);
  const double n = double(r.n);
  for (size_t k = 0; k < o.features.size(); ++k) {
    const int64_t i = o.features[k];
    std::map<int64_t, double> want;
    for (int64_t j = 0; j < a.size(1); ++j) {
      const double vy = r.s2[j] / n - std::pow(r.s1[j] / n, 2);
      if (j == i || !(vy > 0)) continue;
      const at::Tensor x = a.select(1, i), y = a.select(1, j);
      const double cov = (x * y).sum().item<double>() / n - r.s1[i] / n * r.s1[j] / n;
      const double vx = r.s2[i] / n - std::pow(r.s1[i] / n, 2);
      want[j] = cov / std::sqrt(vx * vy);
    }
    ASSERT_EQ(sums[k].correlated.size(), want.size()) << "latent " << i;
    double prev = 2;
    for (const auto& c : sums[k].correlated) {
      ASSERT_TRUE(want.count(c.index)) << c.index;
      EXPECT_NEAR(c.corr, want[c.index], 1e-6) << i << " with " << c.index;
      EXPECT_LE(c.corr, prev);
      prev = c.corr;
    }
  }
}

// set_correlate_with_all: by the matrix-product path.
TEST(FeatureStats, PearsonCorrelationsWithEveryLatent) {
  const Data d = make_data(9, 8, 6, 4);
  FeatureStatsOptions o = options({1, 2});
  FeatureStatsAccumulator acc(6, o);
  acc.set_correlate_with_all();
  expect_pearson_with_every_other_latent(acc, o, d);
}

TEST(FeatureStats, PearsonCorrelationsOverCountedTokens) {
  const Data d = make_data(9, 8, 6, 4);
  FeatureStatsOptions o = options({1, 2});
  FeatureStatsAccumulator acc(6, o);
  // Every other latent as a candidate (the gather path).
  acc.set_correlation_candidates(torch::tensor({0, 2, 3, 4, 5, 0, 1, 3, 4, 5}).reshape({2, 5}));
  expect_pearson_with_every_other_latent(acc, o, d);
}

TEST(FeatureStats, RejectsBadFeatureIndicesAndShapes) {
  EXPECT_THROW(FeatureStatsAccumulator(4, options({4})), Error);
  EXPECT_THROW(FeatureStatsAccumulator(4, options({1, 1})), Error);
  EXPECT_THROW(FeatureStatsAccumulator(4, options({})), Error);
  try {
    FeatureStatsAccumulator(4, options({0, 9}));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d_sae = 4"), std::string::npos) << e.what();
  }
  FeatureStatsAccumulator acc(4, options({0}));
  EXPECT_THROW(acc.add_batch(torch::zeros({2, 3}, torch::kLong), torch::zeros({2, 3, 5})), Error);
}

// The whole pass on a tiny GPT-2 at blocks.0.hook_resid_pre, which the test computes itself:
// x = W_E[token] + W_pos[position]; acts = relu((x - b_dec) W_enc + b_enc).
TEST(FeatureStats, PassOnTinyModelMatchesHandComputedHook) {
  const ModelConfig cfg = test::tiny_gpt2();
  auto w = test::tiny_weights(cfg, 5);
  Transformer model(cfg, w);
  SaeConfig sc;
  sc.architecture = "standard";
  sc.d_in = cfg.d_model;
  sc.d_sae = 24;
  sc.hook_name = "blocks.0.hook_resid_pre";
  auto sae = make_sae(sc);
  at::manual_seed(6);
  sae->params()["W_enc"] = torch::randn({sc.d_in, sc.d_sae});
  sae->params()["W_dec"] = torch::randn({sc.d_sae, sc.d_in});
  sae->params()["b_enc"] = torch::randn({sc.d_sae}) - 1.0;
  sae->params()["b_dec"] = torch::randn({sc.d_in}) * 0.1;
  const at::Tensor tokens = test::random_tokens(cfg, 6, 10, 7);

  FeatureStatsOptions o = options({0, 3, 7, 23});
  o.exclude_token_ids = {};
  FeatureStatsAccumulator acc(sc.d_sae, o);
  int64_t next = 0;
  auto batches = [&]() -> at::Tensor {
    if (next >= 6) return {};
    next += 2;
    return tokens.slice(0, next - 2, next);
  };
  run_feature_pass(model, *sae, sc.hook_name, std::nullopt, batches, acc);

  const at::Tensor WE = w.at("embed.W_E").to(torch::kDouble),
                   WP = w.at("pos_embed.W_pos").to(torch::kDouble);
  const at::Tensor x =
      WE.index_select(0, tokens.flatten()).reshape({6, 10, -1}) + WP.slice(0, 0, 10);
  const at::Tensor pre =
      (x - sae->param("b_dec").to(torch::kDouble)).matmul(sae->param("W_enc").to(torch::kDouble)) +
      sae->param("b_enc").to(torch::kDouble);
  const at::Tensor ref = torch::relu(pre);  // [6, 10, 24]
  // Well-posed at float32 precision: no pre-activation within 1e-4 of 0.
  ASSERT_GT(pre.abs().min().item<double>(), 1e-4);
  const auto sums = acc.summaries();
  for (size_t k = 0; k < o.features.size(); ++k) {
    const int64_t f = o.features[k];
    const at::Tensor v = ref.select(2, f);
    EXPECT_EQ(sums[k].fires, v.gt(0).sum().item<int64_t>()) << f;
    EXPECT_NEAR(sums[k].max_act, v.max().item<double>(), 1e-4) << f;
    if (sums[k].fires == 0) continue;
    EXPECT_NEAR(sums[k].mean_act, v.sum().item<double>() / double(sums[k].fires), 1e-4) << f;
    const auto [tv, ti] = v.flatten().topk(1);
    EXPECT_EQ(sums[k].top_examples[0].prompt * 10 + sums[k].top_examples[0].position,
              ti[0].item<int64_t>())
        << f;
  }
}

}  // namespace
}  // namespace saelab
