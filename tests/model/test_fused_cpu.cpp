// The forward's single-pass CPU stages (model/fused_cpu.h) against references written here in
// float64 (GELU's tanh form, LayerNorm, softmax over the causal / windowed band), their refusals,
// and the forward's bits unchanged by the hooks and caches a pass records.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "saelab/model/fused_cpu.h"
#include "saelab/model/transformer.h"
#include "test_transformer_models.h"

using namespace saelab;
using namespace saelab::test;

namespace {

// 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), in float64. For u < -3, 1 + tanh u
// cancels (at u = -17 only one significant digit is left), so there it is written as
// x e^{2u} / (1 + e^{2u}), the same number (1 + tanh u = 2 e^{2u} / (1 + e^{2u})).
double gelu_tanh_ref(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  if (u >= -3.0) return 0.5 * x * (1.0 + std::tanh(u));
  const double e = std::exp(2.0 * u);
  return x * e / (1.0 + e);
}

// Row i of each [q, q] block: softmax of s / scale over j in (i - window, i] (all j <= i when
// window is 0), 0 elsewhere; float64.
at::Tensor causal_softmax_ref(const at::Tensor& scores, double scale, int64_t window) {
  const int64_t q = scores.size(-1);
  at::Tensor s = scores.to(at::kDouble).reshape({-1, q}).contiguous();
  at::Tensor out = at::zeros_like(s);
  auto a = s.accessor<double, 2>();
  auto o = out.accessor<double, 2>();
  for (int64_t r = 0; r < s.size(0); ++r) {
    const int64_t i = r % q, lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
    double m = -INFINITY, sum = 0;
    for (int64_t j = lo; j <= i; ++j) m = std::max(m, a[r][j] / scale);
    for (int64_t j = lo; j <= i; ++j) sum += std::exp(a[r][j] / scale - m);
    for (int64_t j = lo; j <= i; ++j) o[r][j] = std::exp(a[r][j] / scale - m) / sum;
  }
  return out.view(scores.sizes());
}

}  // namespace

TEST(FusedCpu, GeluEqualsTheTanhFormInFloat64) {
  at::manual_seed(3);
  // An odd length (a vector tail), a wide normal sample, a sweep and the far tails.
  at::Tensor x = at::cat(
      {torch::randn({10007}) * 3.0, torch::linspace(-20, 20, 4001),
       torch::tensor({0.0f, -0.0f, 1e-30f, -1e-30f, 80.0f, -80.0f, 1e4f, -1e4f, 3e38f, -3e38f})});
  at::Tensor y = at::empty_like(x);
  ASSERT_TRUE(gelu_tanh_cpu(x, y));
  at::Tensor y2 = x.clone();
  ASSERT_TRUE(gelu_tanh_cpu(y2, y2));  // in place: the same bits
  EXPECT_TRUE(y2.equal(y));
  auto xa = x.accessor<float, 1>();
  auto ya = y.accessor<float, 1>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double ref = gelu_tanh_ref(xa[i]);
    // Any float evaluation rounds the exponent 2u to a relative 6e-8, which e^{2u} turns into a
    // relative error of |2u| 6e-8: the tolerance grows with |u| (far negative x).
    const double two_u = 2.0 * std::sqrt(2.0 / M_PI) * (xa[i] + 0.044715 * std::pow(xa[i], 3));
    ASSERT_LE(std::abs(ya[i] - ref), 4e-7 * (1.0 + std::abs(two_u)) * std::abs(ref) + 1e-30)
        << "x = " << xa[i];
  }
  // The two forms of the reference agree where both are accurate.
  for (double x = -4.0; x <= -2.0; x += 0.01) {
    const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x), e = std::exp(2.0 * u);
    ASSERT_NEAR(0.5 * x * (1.0 + std::tanh(u)), x * e / (1.0 + e), 1e-12);
  }
  at::Tensor special = torch::tensor({NAN, INFINITY});
  ASSERT_TRUE(gelu_tanh_cpu(special, special));
  EXPECT_TRUE(std::isnan(special[0].item<float>()));
  EXPECT_EQ(special[1].item<float>(), INFINITY);
}

TEST(FusedCpu, LayerNormEqualsItsDefinitionInFloat64) {
  at::manual_seed(5);
  // Rows with a large common offset (the centring matters) and an odd width.
  at::Tensor x = torch::randn({3, 5, 77}) * 2.0 + torch::randn({3, 5, 1}) * 50.0;
  at::Tensor w = 1.0 + torch::randn({77}) * 0.2, b = torch::randn({77}) * 0.1;
  at::Tensor mean, scale;
  ASSERT_TRUE(layer_norm_stats_cpu(x, 1e-5, mean, scale));
  at::Tensor xd = x.to(at::kDouble), mu = xd.mean(-1, true);
  at::Tensor sd = ((xd - mu).pow(2).mean(-1, true) + 1e-5).sqrt();
  EXPECT_EQ(mean.sizes(), (std::vector<int64_t>{3, 5, 1}));
  EXPECT_LT((mean.to(at::kDouble) - mu).abs().max().item<double>(), 1e-5);
  EXPECT_LT(((scale.to(at::kDouble) - sd) / sd).abs().max().item<double>(), 1e-6);
  for (int variant = 0; variant < 4; ++variant) {
    const at::Tensor wv = variant & 1 ? w : at::Tensor(), bv = variant & 2 ? b : at::Tensor();
    at::Tensor out = at::empty_like(x);
    ASSERT_TRUE(layer_norm_apply_cpu(x, mean, scale, wv, bv, out));
    at::Tensor ref = (xd - mu) / sd;
    if (wv.defined()) ref = ref * wv.to(at::kDouble);
    if (bv.defined()) ref = ref + bv.to(at::kDouble);
    EXPECT_LT((out.to(at::kDouble) - ref).abs().max().item<double>(), 1e-5) << variant;
  }
  // A scale of another layout (a hook's expanded tensor) is refused, not misread.
  at::Tensor out = at::empty_like(x);
  EXPECT_FALSE(layer_norm_apply_cpu(x, mean, scale.expand({3, 5, 77}), w, b, out));
}

TEST(FusedCpu, SoftmaxEqualsTheMaskedSoftmaxInFloat64) {
  at::manual_seed(4);
  for (double scale : {1.0, 8.0, std::sqrt(12.0)}) {
    for (int64_t window : {0, 1, 3}) {
      SCOPED_TRACE("scale " + std::to_string(scale) + ", window " + std::to_string(window));
      at::Tensor s = torch::randn({2, 3, 37, 37}) * 6.0;
      // A row whose entries spread by far more than float's exp range.
      s[0][0][20] = torch::linspace(-400, 400, 37);
      at::Tensor p = s.clone();
      ASSERT_TRUE(causal_softmax_cpu(p, scale, window));
      at::Tensor ref = causal_softmax_ref(s, scale, window);
      EXPECT_LT((p.to(at::kDouble) - ref).abs().max().item<double>(), 1e-6);
      // Outside the band: exactly zero, as softmax gives for a -inf score.
      EXPECT_EQ(p.masked_select(ref == 0).abs().sum().item<float>(), 0.0f);
      EXPECT_LT((p.sum(-1) - 1).abs().max().item<float>(), 1e-5f);
      // The two stages (the hook point between them) give the same bits.
      at::Tensor masked = s.clone();
      ASSERT_TRUE(scale_and_mask_scores_cpu(masked, scale, window));
      EXPECT_TRUE(masked.isneginf().equal(ref == 0));
      at::Tensor p2 = at::empty_like(masked);
      ASSERT_TRUE(softmax_scores_cpu(masked, p2));
      EXPECT_TRUE(p2.equal(p));
    }
  }
  // A row masked throughout (a hook can do that) gives zeros, not NaN.
  at::Tensor all_masked = torch::full({1, 4, 4}, -INFINITY), out = at::empty_like(all_masked);
  ASSERT_TRUE(softmax_scores_cpu(all_masked, out));
  EXPECT_EQ(out.abs().sum().item<float>(), 0.0f);
}

TEST(FusedCpu, RefuseWhatTheyDoNotCover) {
  at::Tensor d = torch::randn({4, 4}, torch::kDouble), d0 = d.clone();
  at::Tensor mean, scale;
  EXPECT_FALSE(gelu_tanh_cpu(d, d));
  EXPECT_FALSE(causal_softmax_cpu(d, 1.0, 0));
  EXPECT_FALSE(layer_norm_stats_cpu(d, 1e-5, mean, scale));
  EXPECT_TRUE(d.equal(d0));
  at::Tensor t = torch::randn({4, 5}).t(), t0 = t.clone();  // not contiguous
  EXPECT_FALSE(gelu_tanh_cpu(t, t));
  EXPECT_TRUE(t.equal(t0));
  at::Tensor g = torch::randn({4, 4}).requires_grad_();
  EXPECT_FALSE(gelu_tanh_cpu(g, at::empty_like(g)));
  EXPECT_FALSE(causal_softmax_cpu(g, 1.0, 0));
  {
    at::NoGradGuard no_grad;  // a weight that requires grad is read freely outside autograd
    EXPECT_TRUE(gelu_tanh_cpu(g, at::empty({4, 4})));
  }
  at::Tensor r = torch::randn({2, 3, 4}), r0 = r.clone();  // queries != keys
  EXPECT_FALSE(causal_softmax_cpu(r, 1.0, 0));
  EXPECT_FALSE(scale_and_mask_scores_cpu(r, 1.0, 0));
  EXPECT_TRUE(r.equal(r0));
  EXPECT_FALSE(gelu_tanh_cpu(r, torch::empty({2, 3, 5})));  // shapes differ
}

// Whatever a pass hooks or caches (here every hook point of every block, by identity hooks and by
// the cache), the logits and every cached activation have the same bits as in a plain forward.
TEST(FusedCpu, HooksAndCachesLeaveTheBitsUnchanged) {
  for (const ModelConfig& c : {tiny_gpt2(), tiny_neo(), tiny_gemma2(), tiny_llama()}) {
    SCOPED_TRACE(c.model_name);
    Transformer m(c, tiny_weights(c, 11));
    at::Tensor tok = random_tokens(c, 3, 9, 5);
    at::Tensor plain = m.forward(tok);
    std::vector<Hook> hooks;
    std::map<std::string, at::Tensor> seen;
    HookFn identity = [&](const at::Tensor& a, const std::string& name) {
      seen[name] = a.clone();
      return a;
    };
    // hook_result is left out: asking for it computes the attention output per head (as
    // TransformerLens's use_attn_result does), another sum order by design.
    for (const std::string& n : m.hook_names())
      if (n.find("hook_result") == std::string::npos) hooks.push_back({n, identity});
    EXPECT_TRUE(m.run_with_hooks(tok, hooks).equal(plain));
    EXPECT_EQ(seen.size(), hooks.size());
    // Each name cached alone (the pass stops there), against the all-hooks pass.
    for (const auto& [name, act] : seen) {
      auto cache = m.run_with_cache(tok, {name}, /*return_logits=*/false);
      EXPECT_TRUE(cache.at(name).equal(act)) << name;
    }
  }
}
