// Gradients of every training architecture, in float64: each forward_backward is compared with an
// independent formulation of SAELens's losses written here (autograd on plain expressions),
// with central finite differences of the returned loss where the loss has no detached parts, and,
// for jumprelu, with the straight-through formulas written out by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

constexpr int64_t kDin = 6, kDsae = 12, kN = 16;

TrainingSaeConfig base_cfg(const std::string& arch) {
  TrainingSaeConfig c;
  c.architecture = arch;
  c.d_in = kDin;
  c.d_sae = kDsae;
  c.k = 3;
  return c;
}

// Random float64 parameters of a reasonable scale.
void randomize(TrainingSae& sae, uint64_t seed) {
  torch::manual_seed(seed);
  for (auto& [name, p] : sae.params()) {
    if (name == "log_threshold")
      p = torch::log(torch::rand(p.sizes(), torch::kFloat64) * 0.3 + 0.05);
    else if (name == "r_mag")
      p = torch::randn(p.sizes(), torch::kFloat64) * 0.2;
    else
      p = torch::randn(p.sizes(), torch::kFloat64) * 0.5;
  }
}

at::Tensor input(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({kN, kDin}, torch::kFloat64);
}

std::map<std::string, at::Tensor> leaves_of(TrainingSae& sae) {
  std::map<std::string, at::Tensor> L;
  for (auto& [n, p] : sae.params()) L[n] = p.clone().requires_grad_(true);
  return L;
}

void expect_grads_equal(TrainingSae& sae, std::map<std::string, at::Tensor>& L, double tol = 1e-9) {
  for (auto& [name, leaf] : L) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(leaf.grad().defined());
    auto got = sae.grads().at(name);
    double err = (got - leaf.grad()).abs().max().item<double>();
    double scale = leaf.grad().abs().max().item<double>() + 1e-12;
    EXPECT_LT(err, tol * std::max(1.0, scale)) << "max |grad| " << scale;
  }
}

// Central differences of the loss that forward_backward returns, for every parameter entry.
void expect_matches_finite_differences(TrainingSae& sae, const at::Tensor& x,
                                       const StepContext& ctx, double tol = 1e-5) {
  sae.forward_backward(x, ctx);
  std::map<std::string, at::Tensor> analytic;
  for (auto& [n, g] : sae.grads()) analytic[n] = g.clone();
  const double h = 1e-6;
  for (auto& [name, p] : sae.params()) {
    auto flat = p.view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      double orig = flat[i].item<double>();
      flat[i] = orig + h;
      double up = sae.forward_backward(x, ctx).loss;
      flat[i] = orig - h;
      double down = sae.forward_backward(x, ctx).loss;
      flat[i] = orig;
      double fd = (up - down) / (2 * h);
      double an = analytic[name].view({-1})[i].item<double>();
      ASSERT_NEAR(an, fd, tol * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
    }
  }
}

TEST(TrainingSaeGrads, StandardMatchesReferenceAndFiniteDifferences) {
  for (double p : {1.0, 1.5}) {
    auto cfg = base_cfg("standard");
    cfg.scale_sparsity_penalty_by_decoder_norm = true;
    cfg.lp_norm = p;
    auto sae = make_training_sae(cfg);
    randomize(*sae, 1);
    auto x = input(2);
    StepContext ctx;
    ctx.l1_coefficient = 0.3;
    auto out = sae->forward_backward(x, ctx);

    auto L = leaves_of(*sae);
    auto f = torch::relu((x - L["b_dec"]).mm(L["W_enc"]) + L["b_enc"]);
    auto x_hat = f.mm(L["W_dec"]) + L["b_dec"];
    auto mse = (x_hat - x).pow(2).sum(1).mean();
    auto w = f * L["W_dec"].norm(2, {1});
    auto l1 = 0.3 * w.pow(p).sum(1).pow(1.0 / p).mean();  // SAELens: ‖f ⊙ ‖W_dec‖‖_p
    (mse + l1).backward();
    EXPECT_NEAR(out.losses["mse_loss"], mse.item<double>(), 1e-10);
    EXPECT_NEAR(out.losses["l1_loss"], l1.item<double>(), 1e-10);
    expect_grads_equal(*sae, L);
    expect_matches_finite_differences(*sae, x, ctx);
  }
}

TEST(TrainingSaeGrads, StandardGhostGradsMatchReference) {
  auto cfg = base_cfg("standard");
  cfg.use_ghost_grads = true;
  auto sae = make_training_sae(cfg);
  randomize(*sae, 3);
  auto x = input(4);
  StepContext ctx;
  ctx.l1_coefficient = 0.1;
  ctx.dead_mask = torch::zeros({kDsae}, torch::kBool);
  ctx.dead_mask.index_put_({torch::tensor({1, 4, 7})}, true);
  auto out = sae->forward_backward(x, ctx);

  auto L = leaves_of(*sae);
  auto pre = (x - L["b_dec"]).mm(L["W_enc"]) + L["b_enc"];
  auto f = torch::relu(pre);
  auto x_hat = f.mm(L["W_dec"]) + L["b_dec"];
  auto mse_el = (x_hat - x).pow(2);
  auto loss = mse_el.sum(1).mean() + 0.1 * f.sum(1).mean();
  // Ghost grads: r = x − x̂; g = exp(z_dead) W_dec,dead; g·sg(‖r‖/(2‖g‖ + 1e-6));
  // loss = mean(sg(mse / (mse_g + 1e-6)) · mse_g), mse_g = (g − sg(r))².
  auto r = x - x_hat;
  auto idx = torch::tensor({1, 4, 7});
  auto g = torch::exp(pre.index_select(1, idx)).mm(L["W_dec"].index_select(0, idx));
  g = g * (r.norm(2, {1}, true) / (2 * g.norm(2, {1}, true) + 1e-6)).detach();
  auto mse_g = (g - r.detach()).pow(2);
  auto ghost = ((mse_el / (mse_g + 1e-6)).detach() * mse_g).mean();
  (loss + ghost).backward();
  EXPECT_NEAR(out.losses["ghost_grad_loss"], ghost.item<double>(), 1e-10);
  EXPECT_GT(out.losses["ghost_grad_loss"], 0.0);
  expect_grads_equal(*sae, L);
}

TEST(TrainingSaeGrads, GatedMatchesReference) {
  auto sae = make_training_sae(base_cfg("gated"));
  randomize(*sae, 5);
  auto x = input(6);
  StepContext ctx;
  ctx.l1_coefficient = 0.2;
  auto out = sae->forward_backward(x, ctx);

  auto L = leaves_of(*sae);
  auto xin = x - L["b_dec"];
  auto pi = xin.mm(L["W_enc"]) + L["b_gate"];
  auto mag = xin.mm(L["W_enc"] * torch::exp(L["r_mag"])) + L["b_mag"];
  auto f = (pi > 0).to(torch::kFloat64) * torch::relu(mag);
  auto x_hat = f.mm(L["W_dec"]) + L["b_dec"];
  auto mse = (x_hat - x).pow(2).sum(1).mean();
  auto l1 = 0.2 * (torch::relu(pi) * L["W_dec"].norm(2, {1})).sum(1).mean();
  auto aux =
      (torch::relu(pi).mm(L["W_dec"].detach()) + L["b_dec"].detach() - x).pow(2).sum(1).mean();
  (mse + l1 + aux).backward();
  EXPECT_NEAR(out.losses["auxiliary_reconstruction_loss"], aux.item<double>(), 1e-10);
  EXPECT_NEAR(out.loss, (mse + l1 + aux).item<double>(), 1e-10);
  expect_grads_equal(*sae, L);
  // The gate path's parameters get gradient only from the L1 and auxiliary terms.
  EXPECT_GT(sae->grads().at("b_gate").abs().sum().item<double>(), 0.0);
}

// Top-k per row (values through ReLU), written with a loop over rows.
at::Tensor topk_rows(const at::Tensor& z, int64_t k) {
  auto out = torch::zeros_like(z);
  for (int64_t b = 0; b < z.size(0); ++b) {
    auto idx = std::get<1>(z[b].sort(0, /*descending=*/true)).narrow(0, 0, k);
    out[b].index_put_({idx}, torch::relu(z[b].index_select(0, idx)));
  }
  return out;
}

TEST(TrainingSaeGrads, TopKWithAuxKMatchesReference) {
  auto cfg = base_cfg("topk");
  cfg.aux_loss_coefficient = 0.5;
  auto sae = make_training_sae(cfg);
  randomize(*sae, 7);
  auto x = input(8);
  StepContext ctx;
  ctx.dead_mask = torch::zeros({kDsae}, torch::kBool);
  ctx.dead_mask.index_put_({torch::tensor({0, 2, 5, 9})}, true);  // 4 dead > k_aux = d_in/2 = 3
  auto out = sae->forward_backward(x, ctx);

  auto L = leaves_of(*sae);
  auto z = (x - L["b_dec"]).mm(L["W_enc"]) + L["b_enc"];
  auto f = topk_rows(z, 3);
  auto x_hat = f.mm(L["W_dec"]) + L["b_dec"];
  auto mse = (x_hat - x).pow(2).sum(1).mean();
  // AuxK: k_aux = 3, scale = min(4/3, 1) = 1, top-3 of the dead pre-activations (no ReLU).
  auto e = (x - x_hat).detach();
  auto dead_z =
      torch::where(ctx.dead_mask.unsqueeze(0), z, torch::full({}, -1e300, torch::kFloat64));
  auto a = torch::zeros_like(z);
  for (int64_t b = 0; b < kN; ++b) {
    auto idx = std::get<1>(dead_z[b].sort(0, true)).narrow(0, 0, 3);
    a[b].index_put_({idx}, z[b].index_select(0, idx));
  }
  auto aux = 0.5 * 1.0 * (a.mm(L["W_dec"]) - e).pow(2).sum(1).mean();
  (mse + aux).backward();
  EXPECT_NEAR(out.losses["auxiliary_reconstruction_loss"], aux.item<double>(), 1e-10);
  EXPECT_EQ(((out.feature_acts > 0).sum(1) <= 3).all().item<bool>(), true);
  expect_grads_equal(*sae, L);

  // Without dead latents the loss is the plain MSE: check against finite differences.
  StepContext alive;
  expect_matches_finite_differences(*sae, x, alive);
}

TEST(TrainingSaeGrads, BatchTopKMatchesReferenceAndUpdatesThreshold) {
  auto sae = make_training_sae(base_cfg("batchtopk"));
  randomize(*sae, 9);
  auto x = input(10);
  StepContext ctx;
  auto out = sae->forward_backward(x, ctx);

  auto L = leaves_of(*sae);
  auto z = torch::relu((x - L["b_dec"]).mm(L["W_enc"]) + L["b_enc"]);
  // Keep the k·N = 48 largest entries of the whole batch.
  auto flat = z.reshape({-1});
  auto kth = std::get<0>(flat.detach().sort(0, true))[3 * kN - 1].item<double>();
  auto f = z * (z >= kth).to(torch::kFloat64);
  auto x_hat = f.mm(L["W_dec"]) + L["b_dec"];
  auto mse = (x_hat - x).pow(2).sum(1).mean();
  mse.backward();
  EXPECT_EQ((out.feature_acts > 0).sum().item<int64_t>(), 3 * kN);
  expect_grads_equal(*sae, L);
  expect_matches_finite_differences(*sae, x, ctx);

  // θ ← 0.99·θ + 0.01·min positive activation, from θ = 0, in float64.
  double min_pos = out.feature_acts.masked_select(out.feature_acts > 0).min().item<double>();
  sae->after_step(out);
  EXPECT_DOUBLE_EQ(sae->buffers().at("topk_threshold").item<double>(), 0.01 * min_pos);
  sae->after_step(out);
  EXPECT_NEAR(sae->buffers().at("topk_threshold").item<double>(),
              0.99 * 0.01 * min_pos + 0.01 * min_pos, 1e-15);
  EXPECT_EQ(sae->buffers().at("topk_threshold").scalar_type(), torch::kFloat64);
}

TEST(TrainingSaeGrads, MatryoshkaAddsInnerLosses) {
  auto cfg = base_cfg("matryoshka_batchtopk");
  cfg.matryoshka_widths = {4, 8};
  auto sae = make_training_sae(cfg);
  randomize(*sae, 11);
  auto x = input(12);
  StepContext ctx;
  auto out = sae->forward_backward(x, ctx);

  auto L = leaves_of(*sae);
  auto pre = (x - L["b_dec"]).mm(L["W_enc"]) + L["b_enc"];
  auto btk = [&](const at::Tensor& zz) {
    auto z = torch::relu(zz);
    auto kth = std::get<0>(z.detach().reshape({-1}).sort(0, true))[3 * kN - 1].item<double>();
    return z * (z >= kth).to(torch::kFloat64);
  };
  // One BatchTopK over all latents; level w decodes the prefix of those activations (the paper,
  // dictionary_learning, SAELens since its October 2025 fix).
  auto f = btk(pre);
  auto level = [&](int64_t w) {
    return (f.narrow(1, 0, w).mm(L["W_dec"].narrow(0, 0, w)) + L["b_dec"] - x).pow(2).sum(1).mean();
  };
  auto total = level(kDsae) + level(4) + level(8);
  total.backward();
  EXPECT_NEAR(out.loss, total.item<double>(), 1e-10);
  EXPECT_NEAR(out.losses["inner_mse_loss_4"], level(4).item<double>(), 1e-10);
  expect_grads_equal(*sae, L);
  expect_matches_finite_differences(*sae, x, ctx);
}

TEST(TrainingSaeGrads, JumpReLUStraightThroughFormulas) {
  auto cfg = base_cfg("jumprelu");
  cfg.jumprelu_bandwidth = 0.5;  // wide, so that many pre-activations fall in the kernel
  auto sae = make_training_sae(cfg);
  randomize(*sae, 13);
  auto x = input(14);
  StepContext ctx;
  ctx.l0_coefficient = 0.7;
  auto out = sae->forward_backward(x, ctx);

  // Everything by hand, float64, no autograd.
  const auto& P = sae->params();
  const double eps = 0.5, lam = 0.7;
  auto xin = x - P.at("b_dec");
  auto z = xin.mm(P.at("W_enc")) + P.at("b_enc");
  auto theta = torch::exp(P.at("log_threshold"));
  auto on = (z > theta).to(torch::kFloat64);
  auto f = z * on;
  auto x_hat = f.mm(P.at("W_dec")) + P.at("b_dec");
  auto g_xhat = 2.0 * (x_hat - x) / kN;
  auto g_f = g_xhat.mm(P.at("W_dec").t());
  auto g_z = g_f * on;
  auto u = (z - theta) / eps;
  auto rect = ((u > -0.5) & (u < 0.5)).to(torch::kFloat64);
  auto g_theta = (-(theta / eps) * rect * g_f).sum(0) + (-(1.0 / eps) * rect * (lam / kN)).sum(0);
  std::map<std::string, at::Tensor> expected = {
      {"W_dec", f.t().mm(g_xhat)},
      {"b_dec", g_xhat.sum(0) - g_z.sum(0).unsqueeze(0).mm(P.at("W_enc").t()).squeeze(0)},
      {"W_enc", xin.t().mm(g_z)},
      {"b_enc", g_z.sum(0)},
      {"log_threshold", theta * g_theta},
  };
  ASSERT_GT(rect.sum().item<double>(), 0.0);
  for (auto& [name, e] : expected) {
    SCOPED_TRACE(name);
    EXPECT_LT((sae->grads().at(name) - e).abs().max().item<double>(), 1e-10);
  }
  double mse = (x_hat - x).pow(2).sum(1).mean().item<double>();
  double l0 = lam * on.sum(1).mean().item<double>();
  EXPECT_NEAR(out.losses["mse_loss"], mse, 1e-10);
  EXPECT_NEAR(out.losses["l0_loss"], l0, 1e-10);
}

TEST(TrainingSaeGrads, DenseBatchMseNormalization) {
  auto cfg = base_cfg("standard");
  cfg.mse_loss_normalization = "dense_batch";
  auto sae = make_training_sae(cfg);
  randomize(*sae, 15);
  auto x = input(16);
  StepContext ctx;
  auto out = sae->forward_backward(x, ctx);
  const auto& P = sae->params();
  auto f = torch::relu((x - P.at("b_dec")).mm(P.at("W_enc")) + P.at("b_enc"));
  auto x_hat = f.mm(P.at("W_dec")) + P.at("b_dec");
  auto denom = (x - x.mean(0, true)).norm(2, {1}, true) + 1e-6;
  double expected = ((x_hat - x).pow(2) / denom).sum(1).mean().item<double>();
  EXPECT_NEAR(out.losses["mse_loss"], expected, 1e-10);
  expect_matches_finite_differences(*sae, x, ctx);
}

}  // namespace
}  // namespace saelab
