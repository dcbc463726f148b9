// encode / decode / forward of every architecture against the float64 reference of
// sae_reference.h, for apply_b_dec_to_input true and false and every normalize_activations mode.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <tuple>

#include "sae_reference.h"
#include "saelab/core/error.h"
#include "saelab/sae/sae.h"

using namespace saelab;
using saelab::test::Vec;

namespace {

constexpr int64_t kDIn = 6, kDSae = 9, kK = 3;

// An SAE with random parameters (nothing zero, thresholds mixed in sign).
std::unique_ptr<Sae> random_sae(const std::string& arch, bool apply_b_dec, const std::string& norm,
                                const std::string& dtype, uint64_t seed) {
  SaeConfig cfg;
  cfg.architecture = arch;
  cfg.d_in = kDIn;
  cfg.d_sae = kDSae;
  cfg.dtype = dtype;
  cfg.apply_b_dec_to_input = apply_b_dec;
  cfg.normalize_activations = norm;
  if (arch == "topk") cfg.k = kK;
  auto sae = make_sae(cfg);
  torch::manual_seed(seed);
  for (auto& [name, t] : sae->params()) {
    at::Tensor r = torch::randn(t.sizes(), torch::kDouble);
    if (name == "threshold") r = r.abs() * 0.3 - 0.05;  // mostly positive, a few negative
    if (name == "r_mag") r = r * 0.3;
    t = r.to(t.scalar_type());
  }
  return sae;
}

void expect_close(const at::Tensor& got, const Vec& want, double tol, const std::string& what) {
  Vec g = test::to_vec(got);
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], want[i], tol * (1 + std::abs(want[i]))) << what << " element " << i;
}

class SaeForwardTest : public ::testing::TestWithParam<std::tuple<std::string, bool, std::string>> {
};

TEST_P(SaeForwardTest, MatchesFloat64Formulas) {
  auto [arch, apply_b_dec, norm] = GetParam();
  auto sae = random_sae(arch, apply_b_dec, norm, "float64", 7);
  auto ref = test::ref_params(sae->params(), arch, apply_b_dec, norm, kK);
  torch::manual_seed(11);
  at::Tensor x = torch::randn({2, 3, kDIn}, torch::kDouble) * 2 + 0.5;

  SaeForward out = sae->forward(x);
  at::Tensor enc = sae->encode(x);
  ASSERT_EQ(out.acts_pre.sizes(), (std::vector<int64_t>{2, 3, kDSae}));
  ASSERT_EQ(out.acts_post.sizes(), (std::vector<int64_t>{2, 3, kDSae}));
  ASSERT_EQ(out.reconstruction.sizes(), x.sizes());
  at::Tensor xf = x.reshape({-1, kDIn});
  int active = 0;
  for (int64_t t = 0; t < xf.size(0); ++t) {
    auto want = test::ref_forward(ref, test::to_vec(xf[t]));
    std::string what = arch + " token " + std::to_string(t);
    expect_close(out.acts_pre.reshape({-1, kDSae})[t], want.pre, 1e-12, what + " acts_pre");
    expect_close(out.acts_post.reshape({-1, kDSae})[t], want.post, 1e-12, what + " acts_post");
    expect_close(enc.reshape({-1, kDSae})[t], want.post, 1e-12, what + " encode");
    expect_close(out.reconstruction.reshape({-1, kDIn})[t], want.recon, 1e-12, what + " recon");
    for (double v : want.post) active += v > 0;
  }
  EXPECT_GT(active, 0) << "the test inputs should activate some latents";
  if (arch == "topk") EXPECT_LE(active, xf.size(0) * kK);

  // decode alone: f W_dec + b_dec, normalisation not undone.
  at::Tensor f = torch::relu(torch::randn({4, kDSae}, torch::kDouble));
  at::Tensor dec = sae->decode(f);
  for (int64_t t = 0; t < 4; ++t)
    expect_close(dec[t], test::ref_decode(ref, test::to_vec(f[t])), 1e-12, "decode");
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitectures, SaeForwardTest,
    ::testing::Combine(::testing::Values("standard", "gated", "topk", "jumprelu"),
                       ::testing::Bool(),
                       ::testing::Values("none", "expected_average_only_in",
                                         "constant_norm_rescale", "layer_norm")),
    [](const auto& info) {
      return std::get<0>(info.param) + (std::get<1>(info.param) ? "_bdec_" : "_nobdec_") +
             std::get<2>(info.param);
    });

TEST(SaeForward, Float32SaeAgreesWithFloat64ReferenceOnItsOwnWeights) {
  for (std::string arch : {"standard", "gated", "topk", "jumprelu"}) {
    auto sae = random_sae(arch, true, "none", "float32", 3);
    auto ref = test::ref_params(sae->params(), arch, true, "none", kK);
    torch::manual_seed(5);
    at::Tensor x = torch::randn({5, kDIn});
    SaeForward out = sae->forward(x);
    EXPECT_EQ(out.acts_post.scalar_type(), torch::kFloat);
    for (int64_t t = 0; t < 5; ++t) {
      auto want = test::ref_forward(ref, test::to_vec(x[t]));
      expect_close(out.acts_post[t], want.post, 1e-5, arch + " acts_post");
      expect_close(out.reconstruction[t], want.recon, 1e-5, arch + " recon");
    }
  }
}

TEST(SaeForward, NormalizeInOutUndoEachOtherForRescale) {
  auto sae = random_sae("standard", true, "constant_norm_rescale", "float64", 1);
  at::Tensor x = torch::randn({4, kDIn}, torch::kDouble) * 3;
  at::Tensor state;
  at::Tensor xn = sae->normalize_in(x, &state);
  // Every token has norm sqrt(d_in) after normalisation.
  for (int64_t t = 0; t < 4; ++t) {
    Vec v = test::to_vec(xn[t]);
    double n = 0;
    for (double e : v) n += e * e;
    EXPECT_NEAR(std::sqrt(n), std::sqrt(double(kDIn)), 1e-12);
  }
  EXPECT_TRUE(torch::allclose(sae->normalize_out(xn, state), x, 1e-12, 1e-12));
}

// A zero token (the toy model's, when no feature fires) has no norm to rescale by: it passes
// through as zeros instead of becoming NaN, and the other tokens are rescaled as usual.
TEST(SaeForward, RescaleLeavesAZeroTokenZero) {
  auto sae = random_sae("standard", true, "constant_norm_rescale", "float64", 1);
  at::Tensor x = torch::randn({3, kDIn}, torch::kDouble);
  x[1].zero_();
  at::Tensor state;
  at::Tensor xn = sae->normalize_in(x, &state);
  EXPECT_TRUE(at::isfinite(xn).all().item<bool>());
  EXPECT_EQ(xn[1].abs().sum().item<double>(), 0.0);
  EXPECT_NEAR(xn[0].norm().item<double>(), std::sqrt(double(kDIn)), 1e-12);
  EXPECT_TRUE(at::isfinite(sae->forward(x).reconstruction).all().item<bool>());
}

TEST(SaeForward, TopKWithRescaleByDecoderNormMatchesSaeLens6Formula) {
  auto sae = random_sae("topk", true, "none", "float64", 9);
  sae->cfg().extra["rescale_acts_by_decoder_norm"] = true;
  auto ref = test::ref_params(sae->params(), "topk", true, "none", kK);
  ref.rescale_topk = true;
  at::Tensor x = torch::randn({3, kDIn}, torch::kDouble);
  SaeForward out = sae->forward(x);
  for (int64_t t = 0; t < 3; ++t) {
    auto want = test::ref_forward(ref, test::to_vec(x[t]));
    expect_close(out.acts_post[t], want.post, 1e-12, "acts_post");
    expect_close(out.reconstruction[t], want.recon, 1e-12, "recon");
  }
}

TEST(SaeForward, WrongInputWidthIsAnErrorNamingDIn) {
  auto sae = random_sae("standard", true, "none", "float32", 1);
  try {
    sae->forward(torch::zeros({2, kDIn + 1}));
    FAIL() << "expected saelab::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d_in=6"), std::string::npos) << e.what();
  }
}

TEST(SaeForward, MakeSaeRejectsBadTopKAndUnknownArchitecture) {
  SaeConfig cfg;
  cfg.d_in = 4;
  cfg.d_sae = 8;
  cfg.architecture = "topk";
  cfg.k = 9;
  EXPECT_THROW(make_sae(cfg), Error);
  cfg.k = 0;
  EXPECT_THROW(make_sae(cfg), Error);
  cfg.architecture = "relu2";
  EXPECT_THROW(make_sae(cfg), Error);
}

TEST(SaeForward, MakeSaeTurnsBatchTopKIntoJumpReLU) {
  SaeConfig cfg;
  cfg.d_in = 4;
  cfg.d_sae = 8;
  cfg.architecture = "batchtopk";
  cfg.k = 2;
  auto sae = make_sae(cfg);
  EXPECT_EQ(sae->cfg().architecture, "jumprelu");
  EXPECT_EQ(sae->params().count("threshold"), 1u);
  EXPECT_EQ(sae->params().size(), 5u);
}

TEST(SaeForward, ParamCountAndMissingParamError) {
  SaeConfig cfg;
  cfg.d_in = 4;
  cfg.d_sae = 8;
  cfg.architecture = "gated";
  auto sae = make_sae(cfg);
  EXPECT_EQ(sae->num_parameters(), 4 * 8 * 2 + 4 + 3 * 8);
  EXPECT_THROW(sae->param("b_enc"), Error);
  sae->to(torch::kBFloat16);
  EXPECT_EQ(sae->cfg().dtype, "bfloat16");
  EXPECT_EQ(sae->param("W_enc").scalar_type(), torch::kBFloat16);
}

}  // namespace
