// Gated SAE (Rajamanoharan et al. 2024; SAELens GatedSAE). The gate and the magnitude share W_enc:
//   π = x̃ W_enc + b_gate,  mag = x̃ (W_enc ⊙ exp(r_mag)) + b_mag,  f = 1[π > 0] · ReLU(mag).
// acts_pre is π, the gate pre-activation the trainer's L1 and auxiliary losses use (SAELens hooks
// the magnitude pre-activation at hook_sae_acts_pre instead).
#include "saelab/sae/gated/gated.h"

#include <torch/torch.h>

#include "saelab/sae/sae.h"

namespace saelab {
namespace {

class GatedSae : public Sae {
 public:
  using Sae::Sae;
  SaeForward encode_full(const at::Tensor& x) const override {
    at::Tensor xt = sae_in(x);
    const at::Tensor& W_enc = param("W_enc");
    SaeForward out;
    out.acts_pre = torch::matmul(xt, W_enc) + param("b_gate");
    at::Tensor mag = torch::matmul(xt, W_enc * torch::exp(param("r_mag"))) + param("b_mag");
    out.acts_post = (out.acts_pre > 0).to(mag.scalar_type()) * torch::relu(mag);
    return out;
  }
};

}  // namespace

std::unique_ptr<Sae> make_gated_sae(const SaeConfig& cfg) {
  return std::make_unique<GatedSae>(cfg);
}

}  // namespace saelab
