// SAELens's run-time activation normalisation (sae_lens/saes/sae.py,
// SAE._setup_activation_normalization, v6.18; the same code in v5.9's sae.py):
//  - constant_norm_rescale: x · sqrt(d_in)/‖x‖ per token on the way in, ÷ the same factor out.
//  - layer_norm: (x − μ)/(σ + 1e-5) in, with σ torch's unbiased std over d_in; out x̂·σ + μ
//    (SAELens multiplies back by σ, not σ + 1e-5; saelab copies that so the numbers agree).
//  - none, expected_average_only_in: the identity. expected_average_only_in scales activations by a
//    dataset-wide constant during training only; SAELens (and saelab's trainer) fold it into W_enc,
//    W_dec and b_dec at the end, so an SAE on disk never scales at run time.
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/sae.h"

namespace saelab {

at::Tensor constant_norm_rescale_factor(const at::Tensor& x) {
  at::Tensor norm = x.norm(2, {-1}, true);
  return at::where(norm > 0, std::sqrt(static_cast<double>(x.size(-1))) / norm,
                   at::ones_like(norm));
}

at::Tensor Sae::normalize_in(const at::Tensor& x_in, at::Tensor* scale_state) const {
  at::Tensor x = x_in.to(param("W_enc").scalar_type());
  const std::string& mode = cfg_.normalize_activations;
  if (mode == "constant_norm_rescale") {
    at::Tensor coeff = constant_norm_rescale_factor(x);
    if (scale_state) *scale_state = coeff;
    return x * coeff;
  }
  if (mode == "layer_norm") {
    at::Tensor mu = x.mean({-1}, true);
    at::Tensor centred = x - mu;
    at::Tensor std = centred.std({-1}, /*unbiased=*/true, /*keepdim=*/true);
    if (scale_state) *scale_state = torch::cat({mu, std}, -1);
    return centred / (std + 1e-5);
  }
  if (mode == "none" || mode == "expected_average_only_in") {
    if (scale_state) *scale_state = at::Tensor();
    return x;
  }
  fail(
      "SAE config: normalize_activations '{}' is not one of none, expected_average_only_in, "
      "constant_norm_rescale, layer_norm",
      mode);
}

at::Tensor Sae::normalize_out(const at::Tensor& x_hat, const at::Tensor& state) const {
  const std::string& mode = cfg_.normalize_activations;
  if (mode == "constant_norm_rescale" || mode == "layer_norm") {
    if (!state.defined())
      fail("SAE: normalize_out for '{}' needs the state that normalize_in returned", mode);
    if (mode == "constant_norm_rescale") return x_hat / state;
    return x_hat * state.narrow(-1, 1, 1) + state.narrow(-1, 0, 1);
  }
  return x_hat;
}

}  // namespace saelab
