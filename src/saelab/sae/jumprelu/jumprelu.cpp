// JumpReLU SAE (SAELens JumpReLUSAE; also GemmaScope and saved batchtopk SAEs):
// z = x̃ W_enc + b_enc, f = ReLU(z) · 1[z > threshold]. With threshold ≥ 0 this is z · 1[z > θ];
// the ReLU matters only for a negative threshold, where SAELens keeps it, and so does saelab, so
// both give the same numbers for the same file.
#include "saelab/sae/jumprelu/jumprelu.h"

#include <torch/torch.h>

#include "saelab/sae/sae.h"

namespace saelab {
namespace {

class JumpReluSae : public Sae {
 public:
  using Sae::Sae;
  SaeForward encode_full(const at::Tensor& x) const override {
    SaeForward out;
    out.acts_pre = torch::matmul(sae_in(x), param("W_enc")) + param("b_enc");
    at::Tensor mask = (out.acts_pre > param("threshold")).to(out.acts_pre.scalar_type());
    out.acts_post = torch::relu(out.acts_pre) * mask;
    return out;
  }
};

}  // namespace

std::unique_ptr<Sae> make_jumprelu_sae(const SaeConfig& cfg) {
  return std::make_unique<JumpReluSae>(cfg);
}

}  // namespace saelab
