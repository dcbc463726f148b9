// Standard SAE at inference: f = ReLU(x̃ W_enc + b_enc) (SAELens StandardSAE), or tanh(ReLU(·))
// for a SAELens 5 cfg.json with activation_fn_str "tanh-relu".
#include "saelab/sae/standard/standard.h"

#include <torch/torch.h>

#include "saelab/sae/sae.h"

namespace saelab {
namespace {

class StandardSae : public Sae {
 public:
  using Sae::Sae;
  SaeForward encode_full(const at::Tensor& x) const override {
    SaeForward out;
    out.acts_pre = torch::matmul(sae_in(x), param("W_enc")) + param("b_enc");
    out.acts_post = torch::relu(out.acts_pre);
    if (cfg().activation_fn == "tanh-relu") out.acts_post = torch::tanh(out.acts_post);
    return out;
  }
};

}  // namespace

std::unique_ptr<Sae> make_standard_sae(const SaeConfig& cfg) {
  return std::make_unique<StandardSae>(cfg);
}

}  // namespace saelab
