// The parts of Sae shared by every architecture: parameter access, encode/decode/forward around the
// architecture's encode_full, dtype conversion.
#include "saelab/sae/sae.h"

#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/registry.h"

namespace saelab {

const at::Tensor& Sae::param(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) fail("{} SAE: no parameter '{}'", cfg_.architecture, name);
  return it->second;
}

int64_t Sae::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

at::ScalarType Sae::scalar_type() const { return sae_scalar_type(cfg_.dtype, "SAE config"); }

void Sae::to(at::ScalarType dtype) {
  std::string name = sae_dtype_name(dtype);  // rejects non-float types before changing anything
  for (auto& [n, t] : params_) t = t.to(dtype);
  cfg_.dtype = name;
}

at::Tensor Sae::sae_in(const at::Tensor& x_normalised) const {
  at::Tensor x = x_normalised.to(param("W_enc").scalar_type());
  if (x.dim() == 0 || x.size(-1) != cfg_.d_in)
    fail("SAE input: expected last dimension d_in={}, got shape {}", cfg_.d_in,
         c10::str(x.sizes()));
  return cfg_.apply_b_dec_to_input ? x - param("b_dec") : x;
}

at::Tensor Sae::encode(const at::Tensor& x) const {
  at::Tensor state;
  return encode_full(normalize_in(x, &state)).acts_post;
}

at::Tensor Sae::decode(const at::Tensor& f) const {
  const at::Tensor& W_dec = param("W_dec");
  at::Tensor acts = f.to(W_dec.scalar_type());
  if (acts.dim() == 0 || acts.size(-1) != cfg_.d_sae)
    fail("SAE decode: expected last dimension d_sae={}, got shape {}", cfg_.d_sae,
         c10::str(acts.sizes()));
  return torch::matmul(decoder_input(acts), W_dec) + param("b_dec");
}

SaeForward Sae::forward(const at::Tensor& x) const {
  at::Tensor state;
  SaeForward out = encode_full(normalize_in(x, &state));
  out.reconstruction = normalize_out(decode(out.acts_post), state);
  // A skip transcoder adds its linear map of the input (SAELens's SkipTranscoder.forward).
  if (cfg_.skip_connection)
    out.reconstruction = out.reconstruction +
                         torch::matmul(x.to(param("W_skip").scalar_type()), param("W_skip").t());
  return out;
}

}  // namespace saelab
