// The hand-written training steps (each architecture's _fast.cpp) against the autograd bodies
// (use_fast_path = false) in float64: every loss, every gradient, the activations and the
// reconstruction, over several shapes and options, with and without dead latents for AuxK.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <typeinfo>
#include <vector>

#include "saelab/sae/kernels/fast_dense.h"
#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

struct Shape {
  int64_t d_in, d_sae, n, k;
};

const Shape kShapes[] = {{6, 12, 16, 3}, {8, 40, 33, 5}, {5, 64, 7, 4}};
// The dense steps' fused passes split latents into ranges of at least 512 per thread: the last
// shape gives two threads a range each.
const Shape kDenseShapes[] = {{6, 12, 16, 3}, {8, 40, 33, 5}, {5, 64, 7, 4}, {7, 1300, 9, 4}};

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  double err = (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>();
  double scale = want.abs().max().item<double>();
  EXPECT_LT(err, 1e-10 * std::max(1.0, scale)) << what << " max |want| " << scale;
}

// Runs one step of the fast and the autograd SAE from identical float64 parameters and compares.
void compare(TrainingSaeConfig cfg, const Shape& s, uint64_t seed, double dead_fraction, double l1,
             double l0 = 0.0) {
  cfg.d_in = s.d_in;
  cfg.d_sae = s.d_sae;
  cfg.k = s.k;
  SCOPED_TRACE(cfg.architecture + " d_in=" + std::to_string(s.d_in) +
               " d_sae=" + std::to_string(s.d_sae) + " n=" + std::to_string(s.n) +
               " dead=" + std::to_string(dead_fraction));
  cfg.use_fast_path = true;
  auto fast = make_training_sae(cfg);
  cfg.use_fast_path = false;
  auto ref = make_training_sae(cfg);
  TrainingSae& f_ref = *fast;
  TrainingSae& r_ref = *ref;
  ASSERT_TRUE(typeid(f_ref) != typeid(r_ref)) << "the fast path was not chosen";
  torch::manual_seed(seed);
  for (auto& [name, p] : ref->params()) {
    p = torch::randn(p.sizes(), torch::kFloat64) * 0.5;
    fast->params()[name] = p.clone();
  }
  auto x = torch::randn({s.n, s.d_in}, torch::kFloat64);
  StepContext ctx;
  ctx.l1_coefficient = l1;
  ctx.l0_coefficient = l0;
  if (dead_fraction > 0) ctx.dead_mask = torch::rand({s.d_sae}, torch::kFloat64) < dead_fraction;
  auto a = fast->forward_backward(x, ctx);
  auto b = ref->forward_backward(x, ctx);
  EXPECT_NEAR(a.loss, b.loss, 1e-10 * std::max(1.0, std::abs(b.loss)));
  for (const auto& [name, v] : b.losses) {
    ASSERT_TRUE(a.losses.count(name)) << name;
    EXPECT_NEAR(a.losses.at(name), v, 1e-10 * std::max(1.0, std::abs(v))) << name;
  }
  expect_close(a.feature_acts, b.feature_acts, "feature_acts");
  expect_close(a.sae_out, b.sae_out, "sae_out");
  // A step that counts its fires itself counts what the autograd body's activations say.
  if (a.fire_counts.defined())
    EXPECT_TRUE(a.fire_counts.to(torch::kLong).equal((b.feature_acts > 0).sum(0).to(torch::kLong)));
  for (const auto& [name, g] : ref->grads())
    expect_close(fast->grads().at(name), g, "grad " + name);
  // A second step reuses the buffers and must not carry anything over.
  auto x2 = torch::randn({s.n, s.d_in}, torch::kFloat64);
  auto a2 = fast->forward_backward(x2, ctx);
  auto b2 = ref->forward_backward(x2, ctx);
  EXPECT_NEAR(a2.loss, b2.loss, 1e-10 * std::max(1.0, std::abs(b2.loss)));
  for (const auto& [name, g] : ref->grads())
    expect_close(fast->grads().at(name), g, "step 2 grad " + name);
  // A step after the work buffers were released (as the trainer does when its loop ends)
  // allocates them again and computes the same step.
  ASSERT_EQ(a2.feature_acts.data_ptr(), a.feature_acts.data_ptr()) << "buffers kept across steps";
  fast->release_work_buffers();
  auto a3 = fast->forward_backward(x, ctx);
  // a2 still holds the old buffer, so a new one cannot land at its address.
  EXPECT_NE(a3.feature_acts.data_ptr(), a2.feature_acts.data_ptr()) << "buffers not released";
  auto b3 = ref->forward_backward(x, ctx);
  EXPECT_NEAR(a3.loss, b3.loss, 1e-10 * std::max(1.0, std::abs(b3.loss)));
  expect_close(a3.feature_acts, b3.feature_acts, "step 3 feature_acts");
  for (const auto& [name, g] : ref->grads())
    expect_close(fast->grads().at(name), g, "step 3 grad " + name);
}

TrainingSaeConfig cfg_of(const std::string& arch) {
  TrainingSaeConfig c;
  c.architecture = arch;
  return c;
}

TEST(FastPath, StandardMatchesAutograd) {
  at::set_num_threads(1);
  uint64_t seed = 1;
  for (const auto& s : kShapes)
    for (bool scale : {false, true})
      for (bool apply : {false, true}) {
        auto c = cfg_of("standard");
        c.scale_sparsity_penalty_by_decoder_norm = scale;
        c.apply_b_dec_to_input = apply;
        compare(c, s, seed++, 0.0, 2.5);
      }
}

TEST(FastPath, StandardZeroDecoderRowHasNoNormGradient) {
  auto c = cfg_of("standard");
  c.scale_sparsity_penalty_by_decoder_norm = true;
  c.d_in = 4;
  c.d_sae = 6;
  auto fast = make_training_sae(c);
  torch::manual_seed(3);
  for (auto& [n, p] : fast->params()) p = torch::randn(p.sizes(), torch::kFloat64);
  fast->params()["W_dec"][2].zero_();
  StepContext ctx;
  ctx.l1_coefficient = 1.0;
  auto out = fast->forward_backward(torch::randn({5, 4}, torch::kFloat64), ctx);
  EXPECT_TRUE(std::isfinite(out.loss));
  EXPECT_TRUE(torch::isfinite(fast->grads().at("W_dec")).all().item<bool>());
}

TEST(FastPath, TopKMatchesAutograd) {
  at::set_num_threads(1);
  uint64_t seed = 100;
  for (const auto& s : kShapes)
    for (double dead : {0.0, 0.2, 0.7})
      for (bool apply : {false, true}) {
        auto c = cfg_of("topk");
        c.apply_b_dec_to_input = apply;
        c.aux_loss_coefficient = 0.75;
        compare(c, s, seed++, dead, 0.0);
      }
}

TEST(FastPath, BatchTopKMatchesAutograd) {
  at::set_num_threads(2);  // the scatter kernels split latents across threads
  uint64_t seed = 200;
  for (const auto& s : kShapes)
    for (double dead : {0.0, 0.5}) compare(cfg_of("batchtopk"), s, seed++, dead, 0.0);
}

TEST(FastPath, MatryoshkaMatchesAutograd) {
  at::set_num_threads(2);  // the selections and scatters split rows / latents across threads
  struct Case {
    Shape s;
    std::vector<int64_t> widths;  // inner levels (d_sae is the outer one)
  };
  // Widths not multiples of 64 (and one across a 64-wide block), a width equal to k and one below
  // it, three levels; the last case is large enough for the selection's sampled bound
  // (N·d_sae >= 1024, k/d_sae < 5 %).
  const Case cases[] = {{{6, 12, 16, 3}, {5}},     {{6, 12, 16, 3}, {2, 9}},
                        {{8, 40, 33, 5}, {7, 19}}, {{5, 70, 7, 4}, {13, 50}},
                        {{7, 130, 9, 4}, {4, 65}}, {{8, 3001, 40, 3}, {100, 1031}}};
  uint64_t seed = 700;
  for (const auto& cs : cases)
    for (double dead : {0.0, 0.5})
      for (bool apply : {false, true}) {
        auto c = cfg_of("matryoshka_batchtopk");
        c.matryoshka_widths = cs.widths;
        c.apply_b_dec_to_input = apply;
        c.aux_loss_coefficient = 0.75;
        SCOPED_TRACE("levels=" + std::to_string(cs.widths.size() + 1) +
                     " apply=" + std::to_string(apply));
        compare(c, cs.s, seed++, dead, 0.0);
      }
}

TEST(FastPath, UnsupportedConfigurationsFallBackToAutograd) {
  auto c = cfg_of("standard");
  c.d_in = 4;
  c.d_sae = 8;
  c.k = 2;
  EXPECT_NE(make_fast_training_sae(c), nullptr);
  c.lp_norm = 2.0;
  EXPECT_EQ(make_fast_training_sae(c), nullptr);
  c = cfg_of("topk");
  c.d_in = 4;
  c.d_sae = 8;
  c.k = 2;
  c.mse_loss_normalization = "dense_batch";
  EXPECT_EQ(make_fast_training_sae(c), nullptr);
  c = cfg_of("matryoshka_batchtopk");
  c.d_in = 4;
  c.d_sae = 8;
  c.k = 2;
  c.matryoshka_widths = {3};
  EXPECT_NE(make_fast_training_sae(c), nullptr);
  c.mse_loss_normalization = "dense_batch";
  EXPECT_EQ(make_fast_training_sae(c), nullptr);
  for (const char* arch : {"gated", "jumprelu"}) {
    c = cfg_of(arch);
    c.d_in = 4;
    c.d_sae = 8;
    EXPECT_NE(make_fast_training_sae(c), nullptr) << arch;
    c.mse_loss_normalization = "dense_batch";
    EXPECT_EQ(make_fast_training_sae(c), nullptr) << arch;
  }
}

TEST(FastPath, GatedMatchesAutograd) {
  at::set_num_threads(2);  // the fused passes split latents across threads
  uint64_t seed = 300;
  for (const auto& s : kDenseShapes)
    for (bool apply : {false, true})
      for (double l1 : {0.0, 2.5}) {
        auto c = cfg_of("gated");
        c.apply_b_dec_to_input = apply;
        compare(c, s, seed++, 0.0, l1);
      }
}

TEST(FastPath, GatedZeroDecoderRowHasNoNormGradient) {
  auto c = cfg_of("gated");
  c.d_in = 4;
  c.d_sae = 6;
  auto fast = make_training_sae(c);
  torch::manual_seed(4);
  for (auto& [n, p] : fast->params()) p = torch::randn(p.sizes(), torch::kFloat64);
  fast->params()["W_dec"][2].zero_();
  StepContext ctx;
  ctx.l1_coefficient = 1.0;
  auto out = fast->forward_backward(torch::randn({5, 4}, torch::kFloat64), ctx);
  EXPECT_TRUE(std::isfinite(out.loss));
  EXPECT_TRUE(torch::isfinite(fast->grads().at("W_dec")).all().item<bool>());
}

TEST(FastPath, JumpReLUMatchesAutograd) {
  at::set_num_threads(2);
  uint64_t seed = 400;
  // Bandwidths wide enough that many (z − θ)/ε fall inside the rectangle, so the
  // straight-through threshold gradients are exercised, and SAELens's default 0.001.
  for (const auto& s : kDenseShapes)
    for (bool apply : {false, true})
      for (double bandwidth : {0.001, 0.5, 2.0})
        for (double l0 : {0.0, 1.5}) {
          auto c = cfg_of("jumprelu");
          c.apply_b_dec_to_input = apply;
          c.jumprelu_bandwidth = bandwidth;
          compare(c, s, seed++, 0.0, 0.0, l0);
        }
}

TEST(FastPath, JumpReLUThresholdGradientIsExercised) {
  auto c = cfg_of("jumprelu");
  c.d_in = 6;
  c.d_sae = 12;
  c.jumprelu_bandwidth = 2.0;
  auto fast = make_training_sae(c);
  torch::manual_seed(5);
  for (auto& [n, p] : fast->params()) p = torch::randn(p.sizes(), torch::kFloat64) * 0.5;
  StepContext ctx;
  ctx.l0_coefficient = 1.0;
  auto out = fast->forward_backward(torch::randn({16, 6}, torch::kFloat64), ctx);
  EXPECT_GT(out.losses.at("l0_loss"), 0.0);
  EXPECT_GT((fast->grads().at("log_threshold") != 0).sum().item<int64_t>(), 6);
}

// The float32 instantiation of the fused loops (what training runs), against autograd in float32.
TEST(FastPath, DenseStepsFloat32CloseToAutograd) {
  at::set_num_threads(2);
  for (const char* arch : {"gated", "jumprelu"}) {
    auto c = cfg_of(arch);
    c.d_in = 16;
    c.d_sae = 1100;
    c.jumprelu_bandwidth = 0.5;
    auto fast = make_training_sae(c);
    c.use_fast_path = false;
    auto ref = make_training_sae(c);
    torch::manual_seed(7);
    for (auto& [name, p] : ref->params()) {
      p.copy_(torch::randn(p.sizes()) * 0.3);
      fast->params()[name].copy_(p);
    }
    auto x = torch::randn({8, 16});
    StepContext ctx;
    ctx.l1_coefficient = 1.0;
    ctx.l0_coefficient = 1.0;
    auto a = fast->forward_backward(x, ctx);
    auto b = ref->forward_backward(x, ctx);
    EXPECT_NEAR(a.loss, b.loss, 1e-4 * std::abs(b.loss)) << arch;
    EXPECT_LT((a.feature_acts - b.feature_acts).abs().max().item<double>(), 1e-4) << arch;
    for (const auto& [name, g] : ref->grads()) {
      const auto& got = fast->grads().at(name);
      EXPECT_EQ(got.scalar_type(), torch::kFloat32) << arch << " " << name;
      double err = (got - g).abs().max().item<double>();
      EXPECT_LT(err, 1e-4 * std::max(1.0, g.abs().max().item<double>())) << arch << " " << name;
    }
  }
}

// The ATen versions of the fused passes (what a non-CPU device runs), checked on the CPU.
TEST(FastPath, DenseStepsAtenPassesMatchAutograd) {
  struct Reset {
    ~Reset() { fast::set_force_aten_passes(false); }
  } reset;
  fast::set_force_aten_passes(true);
  uint64_t seed = 500;
  for (const auto& s : kDenseShapes)
    for (bool apply : {false, true}) {
      auto g = cfg_of("gated");
      g.apply_b_dec_to_input = apply;
      compare(g, s, seed++, 0.0, 2.5);
      auto j = cfg_of("jumprelu");
      j.apply_b_dec_to_input = apply;
      j.jumprelu_bandwidth = 0.5;
      compare(j, s, seed++, 0.0, 0.0, 1.5);
    }
}

}  // namespace
}  // namespace saelab

namespace saelab {
namespace {

// StepContext::grad_ready: the dense hand-written steps announce W_dec while they still compute
// the encoder's gradient (the trainer starts its all-reduce then); an announced gradient must
// already hold its final value, since the all-reduce reads it from that moment.
TEST(FastPath, AnnouncedGradientsAreFinalWhenAnnounced) {
  for (const std::string arch : {"standard", "jumprelu"}) {
    SCOPED_TRACE(arch);
    TrainingSaeConfig cfg;
    cfg.architecture = arch;
    cfg.d_in = 6;
    cfg.d_sae = 12;
    cfg.dtype = at::kDouble;
    cfg.scale_sparsity_penalty_by_decoder_norm = true;
    auto sae = make_training_sae(cfg);
    torch::manual_seed(7);
    for (auto& [name, p] : sae->params())
      p = name == "log_threshold" ? torch::full(p.sizes(), std::log(0.05), torch::kDouble)
                                  : torch::randn(p.sizes(), torch::kDouble) * 0.5;
    StepContext ctx;
    ctx.l1_coefficient = 0.3;
    ctx.l0_coefficient = 0.1;
    std::map<std::string, at::Tensor> at_announcement;
    ctx.grad_ready = [&](const std::string& name) {
      at_announcement[name] = sae->grads().at(name).clone();
    };
    sae->step(torch::randn({16, 6}, torch::kDouble), at::Tensor(), ctx);
    ASSERT_EQ(at_announcement.count("W_dec"), 1u);
    for (const auto& [name, g] : at_announcement)
      EXPECT_TRUE(torch::equal(g, sae->grads().at(name))) << name;
  }
}

}  // namespace
}  // namespace saelab
