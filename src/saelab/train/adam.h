// Adam over named tensors, with torch.optim.Adam's exact update (no weight decay, no amsgrad):
//   m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
// Its moments are plain named tensors so that checkpoints store them and resampling can reset the
// moments of single latents. Also the global gradient-norm clipping of
// torch.nn.utils.clip_grad_norm_.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

class Adam {
 public:
  Adam(double beta1, double beta2, double eps = 1e-8) : beta1_(beta1), beta2_(beta2), eps_(eps) {}

  // One update of every parameter that has a gradient; moments are created on first use.
  void step(std::map<std::string, at::Tensor>& params,
            const std::map<std::string, at::Tensor>& grads, double lr);
  // Zeroes both moments of param `name` at `index` along `dim` (a latent's row or column).
  void reset_moments(const std::string& name, int64_t dim, const at::Tensor& index);

  int64_t step_count() const { return step_count_; }
  std::map<std::string, at::Tensor>& exp_avg() { return exp_avg_; }
  std::map<std::string, at::Tensor>& exp_avg_sq() { return exp_avg_sq_; }

  // Checkpointing: tensors under "adam.exp_avg.<name>" / "adam.exp_avg_sq.<name>", scalars in JSON.
  void save(std::map<std::string, at::Tensor>& tensors, json& state) const;
  void load(const std::map<std::string, at::Tensor>& tensors, const json& state);
  // Moves both moments to device (a checkpoint loads them on CPU).
  void to(const at::Device& device) {
    for (auto* moments : {&exp_avg_, &exp_avg_sq_})
      for (auto& [name, t] : *moments) t = t.to(device);
  }

 private:
  double beta1_, beta2_, eps_;
  int64_t step_count_ = 0;
  std::map<std::string, at::Tensor> exp_avg_;
  std::map<std::string, at::Tensor> exp_avg_sq_;
};

// Scales all gradients together so that their joint L2 norm is at most max_norm (torch's
// clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped at 1). Returns the norm before.
double clip_grad_norm(std::map<std::string, at::Tensor>& grads, double max_norm);

}  // namespace saelab
