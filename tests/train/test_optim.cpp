// Adam (against torch.optim.Adam run by Debian's python3, and a scalar formula), gradient clipping,
// and the LR / coefficient schedules (against SAELens's get_lr_scheduler built from torch's
// schedulers in python3, and hand-computed values).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "saelab/train/adam.h"
#include "saelab/train/schedules.h"
#include "test_util.h"

namespace saelab {
namespace {

TEST(Adam, ScalarFormulaOverThreeSteps) {
  std::map<std::string, at::Tensor> p = {{"w", torch::tensor({1.0, -2.0}, torch::kFloat64)}};
  Adam adam(0.9, 0.999);
  const double grads[3][2] = {{0.5, -1.0}, {0.25, 3.0}, {-0.75, 0.1}};
  const double lrs[3] = {0.1, 0.05, 0.2};
  double w[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 3; ++t) {
    std::map<std::string, at::Tensor> g = {
        {"w", torch::tensor({grads[t - 1][0], grads[t - 1][1]}, torch::kFloat64)}};
    adam.step(p, g, lrs[t - 1]);
    for (int i = 0; i < 2; ++i) {
      double gi = grads[t - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.999 * v[i] + 0.001 * gi * gi;
      double mhat = m[i] / (1 - std::pow(0.9, t));
      double vhat = v[i] / (1 - std::pow(0.999, t));
      w[i] -= lrs[t - 1] * mhat / (std::sqrt(vhat) + 1e-8);
      EXPECT_NEAR(p["w"][i].item<double>(), w[i], 1e-12) << "step " << t << " entry " << i;
    }
  }
  EXPECT_EQ(adam.step_count(), 3);
}

TEST(Adam, EqualsTorchOptimAdam) {
  if (!test::python_has("torch")) GTEST_SKIP() << "python3 torch missing";
  auto out = test::run_python(R"py(
import torch
torch.manual_seed(0)
w = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
print(" ".join(repr(v) for v in w.detach().flatten().tolist()))
opt = torch.optim.Adam([w], lr=1e-2, betas=(0.0, 0.999))
grads = [torch.randn(3, 4, dtype=torch.float64) for _ in range(4)]
for g in grads:
    print(" ".join(repr(v) for v in g.flatten().tolist()))
for i, g in enumerate(grads):
    for group in opt.param_groups: group["lr"] = 1e-2 * (i + 1)
    w.grad = g.clone(); opt.step()
print(" ".join(repr(v) for v in w.detach().flatten().tolist()))
)py");
  std::istringstream in(out);
  auto row = [&]() {
    std::vector<double> v(12);
    for (auto& x : v) in >> x;
    return torch::tensor(v, torch::kFloat64).view({3, 4});
  };
  std::map<std::string, at::Tensor> p = {{"w", row()}};
  std::vector<at::Tensor> grads;
  for (int i = 0; i < 4; ++i) grads.push_back(row());
  auto expected = row();
  Adam adam(0.0, 0.999);
  for (int i = 0; i < 4; ++i) adam.step(p, {{"w", grads[i]}}, 1e-2 * (i + 1));
  EXPECT_LT((p["w"] - expected).abs().max().item<double>(), 1e-14);
}

TEST(Adam, ResetMomentsOfOneLatentAndRoundTrip) {
  std::map<std::string, at::Tensor> p = {{"W_enc", torch::ones({2, 3})}};
  Adam adam(0.9, 0.999);
  adam.step(p, {{"W_enc", torch::ones({2, 3})}}, 0.1);
  adam.reset_moments("W_enc", 1, torch::tensor({1}, torch::kLong));
  EXPECT_EQ(adam.exp_avg()["W_enc"].select(1, 1).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(adam.exp_avg_sq()["W_enc"].select(1, 1).abs().sum().item<double>(), 0.0);
  EXPECT_NEAR(adam.exp_avg()["W_enc"][0][0].item<double>(), 0.1, 1e-7);
  std::map<std::string, at::Tensor> tensors;
  json state;
  adam.save(tensors, state);
  Adam other(0.9, 0.999);
  other.load(tensors, state);
  EXPECT_EQ(other.step_count(), 1);
  EXPECT_TRUE(other.exp_avg()["W_enc"].equal(adam.exp_avg()["W_enc"]));
}

TEST(ClipGradNorm, ScalesJointNormToOne) {
  std::map<std::string, at::Tensor> g = {{"a", torch::tensor({3.0, 0.0}, torch::kFloat64)},
                                         {"b", torch::tensor({4.0}, torch::kFloat64)}};
  double norm = clip_grad_norm(g, 1.0);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  double c = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(g["a"][0].item<double>(), 3.0 * c, 1e-15);
  EXPECT_NEAR(g["b"][0].item<double>(), 4.0 * c, 1e-15);
  std::map<std::string, at::Tensor> small = {{"a", torch::tensor({0.3}, torch::kFloat64)}};
  clip_grad_norm(small, 1.0);
  EXPECT_DOUBLE_EQ(small["a"][0].item<double>(), 0.3);
}

TEST(Schedules, HandComputedValues) {
  LrSchedule s;
  s.name = "cosineannealing";
  s.lr = 1.0;
  s.lr_end = 0.1;
  s.steps = 100;
  s.warm_up_steps = 10;
  s.decay_steps = 20;
  const double pi = std::acos(-1.0);
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);  // lr / W
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);  // end of warm-up
  EXPECT_NEAR(s.at(5), 0.1 + 0.9 * 5.0 / 9.0, 1e-15);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);  // cosine starts at lr
  EXPECT_NEAR(s.at(45), 0.1 + 0.9 * (1 + std::cos(pi * 35 / 70)) / 2, 1e-15);
  EXPECT_NEAR(s.at(80), 0.1, 1e-15);  // decay starts at lr_end
  EXPECT_NEAR(s.at(90), 0.05, 1e-15);
  s.name = "constant";
  EXPECT_DOUBLE_EQ(s.at(50), 1.0);
  EXPECT_NEAR(s.at(90), 0.5, 1e-15);  // constant decays from lr
  s.name = "cosineannealingwarmrestarts";
  s.n_restart_cycles = 2;  // T0 = 70 / 2 = 35
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.at(45), 1.0);  // restart
  EXPECT_NEAR(s.at(30), 0.1 + 0.9 * (1 + std::cos(pi * 20 / 35)) / 2, 1e-15);
  EXPECT_DOUBLE_EQ(coefficient_at(2.0, 4, 0), 0.5);
  EXPECT_DOUBLE_EQ(coefficient_at(2.0, 4, 3), 2.0);
  EXPECT_DOUBLE_EQ(coefficient_at(2.0, 4, 10), 2.0);
  EXPECT_DOUBLE_EQ(coefficient_at(2.0, 0, 0), 2.0);
}

TEST(Schedules, EqualSAELensTorchSchedulers) {
  if (!test::python_has("torch")) GTEST_SKIP() << "python3 torch missing";
  // SAELens's get_lr_scheduler (optim.py), rebuilt from torch 1.13's schedulers.
  auto out = test::run_python(R"py(
import torch, warnings
warnings.filterwarnings("ignore")
import torch.optim.lr_scheduler as S
def sched(name, opt, steps, lr, W, D, lr_end, cycles):
    M = steps - W - D
    if name == "constant": main = S.LambdaLR(opt, lr_lambda=lambda s: 1.0)
    elif name == "cosineannealing": main = S.CosineAnnealingLR(opt, T_max=M, eta_min=lr_end)
    else: main = S.CosineAnnealingWarmRestarts(opt, T_0=M // cycles, eta_min=lr_end)
    if name == "constant": lr_end = lr
    ss, ms = [], []
    if W > 0:
        ss.append(S.LinearLR(opt, start_factor=1 / W, end_factor=1.0, total_iters=W - 1)); ms.append(W)
    ss.append(main)
    if D > 0:
        ss.append(S.LinearLR(opt, start_factor=lr_end / lr, end_factor=0.0, total_iters=D)); ms.append(steps - D)
    return S.SequentialLR(opt, schedulers=ss, milestones=ms)
for name, W, D, cyc in [("constant", 5, 10, 1), ("cosineannealing", 5, 10, 1),
                        ("cosineannealingwarmrestarts", 4, 6, 3), ("cosineannealing", 0, 0, 1)]:
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([w], lr=0.01)
    s = sched(name, opt, 60, 0.01, W, D, 0.001, cyc)
    lrs = []
    for t in range(60):
        lrs.append(opt.param_groups[0]["lr"]); opt.step(); s.step()
    print(name, W, D, cyc, " ".join(repr(v) for v in lrs))
)py");
  std::istringstream in(out);
  std::string name;
  int cases = 0;
  while (in >> name) {
    LrSchedule s;
    s.name = name;
    in >> s.warm_up_steps >> s.decay_steps >> s.n_restart_cycles;
    s.lr = 0.01;
    s.lr_end = 0.001;
    s.steps = 60;
    for (int t = 0; t < 60; ++t) {
      double expected;
      in >> expected;
      EXPECT_NEAR(s.at(t), expected, 1e-9) << name << " W=" << s.warm_up_steps << " step " << t;
    }
    ++cases;
  }
  EXPECT_EQ(cases, 4);
}

}  // namespace
}  // namespace saelab
