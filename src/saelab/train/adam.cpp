// Adam and gradient clipping (see adam.h for the update rule). On contiguous float CPU tensors
// both are single fused passes (fast_loops.cpp); elsewhere ATen's in-place ops.
#include "saelab/train/adam.h"

#include <torch/torch.h>

#include <cmath>

#include "saelab/core/error.h"
#include "saelab/sae/kernels/fast_loops.h"

namespace saelab {

void Adam::step(std::map<std::string, at::Tensor>& params,
                const std::map<std::string, at::Tensor>& grads, double lr) {
  torch::NoGradGuard ng;
  ++step_count_;
  double bias1 = 1.0 - std::pow(beta1_, static_cast<double>(step_count_));
  double bias2 = 1.0 - std::pow(beta2_, static_cast<double>(step_count_));
  double step_size = lr / bias1;
  double bias2_sqrt = std::sqrt(bias2);
  for (auto& [name, p] : params) {
    auto git = grads.find(name);
    if (git == grads.end() || !git->second.defined()) continue;
    const auto& g = git->second;
    auto& m = exp_avg_[name];
    auto& v = exp_avg_sq_[name];
    if (!m.defined()) {
      m = torch::zeros_like(p);
      v = torch::zeros_like(p);
    }
    const auto dt = p.scalar_type();
    if (fast::raw_loop_ok(p) && fast::raw_loop_ok(g) && fast::raw_loop_ok(m) &&
        fast::raw_loop_ok(v) && g.scalar_type() == dt && m.scalar_type() == dt &&
        v.scalar_type() == dt && g.numel() == p.numel() && m.numel() == p.numel() &&
        v.numel() == p.numel()) {
      // One OpenMP pass, no temporaries (the ATen form below allocates √v and the denominator).
      fast::adam_update(p, g, m, v, beta1_, beta2_, eps_, step_size, bias2_sqrt);
      continue;
    }
    m.mul_(beta1_).add_(g, 1.0 - beta1_);
    v.mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
    auto denom = v.sqrt().div_(bias2_sqrt).add_(eps_);
    p.addcdiv_(m, denom, -step_size);
  }
}

void Adam::reset_moments(const std::string& name, int64_t dim, const at::Tensor& index) {
  torch::NoGradGuard ng;
  for (auto* moments : {&exp_avg_, &exp_avg_sq_}) {
    auto it = moments->find(name);
    if (it != moments->end() && it->second.defined()) it->second.index_fill_(dim, index, 0.0);
  }
}

void Adam::save(std::map<std::string, at::Tensor>& tensors, json& state) const {
  for (const auto& [name, m] : exp_avg_) tensors["adam.exp_avg." + name] = m;
  for (const auto& [name, v] : exp_avg_sq_) tensors["adam.exp_avg_sq." + name] = v;
  state["adam"] = {{"step", step_count_}, {"beta1", beta1_}, {"beta2", beta2_}, {"eps", eps_}};
}

void Adam::load(const std::map<std::string, at::Tensor>& tensors, const json& state) {
  step_count_ = get_field<int64_t>(state.at("adam"), "step", "trainer_state.json adam");
  exp_avg_.clear();
  exp_avg_sq_.clear();
  const std::string a = "adam.exp_avg.", b = "adam.exp_avg_sq.";
  for (const auto& [key, t] : tensors) {
    if (key.rfind(b, 0) == 0)
      exp_avg_sq_[key.substr(b.size())] = t.clone();
    else if (key.rfind(a, 0) == 0)
      exp_avg_[key.substr(a.size())] = t.clone();
  }
  if (exp_avg_.size() != exp_avg_sq_.size())
    fail("trainer_state.safetensors: expected matching adam.exp_avg and adam.exp_avg_sq tensors");
}

double clip_grad_norm(std::map<std::string, at::Tensor>& grads, double max_norm) {
  torch::NoGradGuard ng;
  // Σ g² in double, read from each gradient's own dtype in one pass (no float64 copies).
  double total = 0.0;
  bool any = false;
  for (auto& [name, g] : grads) {
    if (!g.defined()) continue;
    any = true;
    if (fast::raw_loop_ok(g))
      total += fast::sum_of_squares(g);
    else
      total +=
          at::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat64).pow(2).item<double>();
  }
  if (!any) return 0.0;
  double norm = std::sqrt(total);
  double coef = std::min(max_norm / (norm + 1e-6), 1.0);
  if (coef < 1.0)
    for (auto& [name, g] : grads)
      if (g.defined()) g.mul_(coef);
  return norm;
}

}  // namespace saelab
