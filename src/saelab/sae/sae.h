// An inference SAE in SAELens's layout: parameters by their SAELens names, encode/decode/forward,
// save and load of the SAELens directory. One file per architecture behind a registry
// (registry.cpp).
//
// Shapes: x [..., d_in]; acts [..., d_sae]. Parameters: W_enc [d_in, d_sae], W_dec [d_sae, d_in],
// b_dec [d_in] (a transcoder's W_dec [d_sae, d_out], b_dec [d_out], and W_skip [d_out, d_in] with
// a skip connection), and per architecture: standard/topk b_enc; jumprelu b_enc, threshold; gated
// b_gate, b_mag, r_mag.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "saelab/sae/config.h"

namespace saelab {

struct SaeForward {
  at::Tensor acts_pre;        // pre-activation (gated: the gate pre-activation π)
  at::Tensor acts_post;       // latent activations f
  at::Tensor reconstruction;  // x̂, in the input's space (normalisation undone); a transcoder's
                              // output [..., d_out], its skip connection included
};

class Sae {
 public:
  explicit Sae(SaeConfig cfg) : cfg_(std::move(cfg)) {}
  virtual ~Sae() = default;

  const SaeConfig& cfg() const { return cfg_; }
  SaeConfig& cfg() { return cfg_; }

  // Named parameters exactly as saved in sae_weights.safetensors.
  std::map<std::string, at::Tensor>& params() { return params_; }
  const std::map<std::string, at::Tensor>& params() const { return params_; }
  const at::Tensor& param(const std::string& name) const;  // throws naming the missing one
  int64_t num_parameters() const;

  // The architecture's encoder: x (already normalised) -> {acts_pre, acts_post}. It casts x to the
  // parameters' dtype and subtracts b_dec itself when apply_b_dec_to_input (see sae_in);
  // reconstruction is left undefined.
  virtual SaeForward encode_full(const at::Tensor& x_normalised) const = 0;
  at::Tensor encode(const at::Tensor& x) const;   // acts_post, normalisation applied
  at::Tensor decode(const at::Tensor& f) const;   // f W_dec + b_dec (normalisation not undone)
  SaeForward forward(const at::Tensor& x) const;  // normalise, encode, decode, undo normalisation

  // Activation normalisation of SAELens's normalize_activations modes (SAELens's
  // run_time_activation_norm_fn_in/out). normalize_in returns the normalised input and stores in
  // *scale_state what normalize_out needs for the same batch (constant_norm_rescale: the factor
  // sqrt(d_in)/‖x‖ [..., 1]; layer_norm: mean and std side by side [..., 2]; otherwise undefined).
  // "expected_average_only_in" is folded into the weights when saved, so here it is the identity.
  at::Tensor normalize_in(const at::Tensor& x, at::Tensor* scale_state) const;
  at::Tensor normalize_out(const at::Tensor& x_hat, const at::Tensor& scale_state) const;

  void to(at::ScalarType dtype);       // converts every parameter and sets cfg.dtype
  at::ScalarType scalar_type() const;  // the torch dtype of cfg.dtype

 protected:
  // x̃ = x − b_dec when apply_b_dec_to_input, else x; x cast to the parameters' dtype first.
  at::Tensor sae_in(const at::Tensor& x_normalised) const;
  // What decode multiplies by W_dec. TopK with rescale_acts_by_decoder_norm (SAELens 6) divides by
  // the decoder row norms here, having multiplied by them in its encoder.
  virtual at::Tensor decoder_input(const at::Tensor& acts) const { return acts; }

  SaeConfig cfg_;
  std::map<std::string, at::Tensor> params_;
};

// constant_norm_rescale's factor sqrt(d_in)/‖x‖ per row of x [..., d_in], as [..., 1]. A zero row
// (a toy-model token where no feature fires) gets 1, so it stays zero where SAELens would divide
// by zero and return NaN. Shared by Sae::normalize_in and the trainer's input normalisation.
at::Tensor constant_norm_rescale_factor(const at::Tensor& x);

// Creates an SAE with the parameter set of cfg.architecture, zero-initialised, in cfg.dtype.
// "batchtopk" gives a jumprelu SAE (cfg().architecture == "jumprelu"): set its threshold to θ.
std::unique_ptr<Sae> make_sae(const SaeConfig& cfg);

// Loads an SAE directory: cfg.json + sae_weights.safetensors (SAELens), or params.npz (GemmaScope,
// loaded as jumprelu with apply_b_dec_to_input = false). Validates names and shapes against cfg.
std::unique_ptr<Sae> load_sae(const std::string& dir);

// Writes cfg.json, sae_weights.safetensors and, when given, sparsity.safetensors
// (`sparsity` [d_sae] = log10(feature firing frequency + 1e-10)) into dir, each atomically.
void save_sae(const Sae& sae, const std::string& dir,
              const std::optional<at::Tensor>& log10_feature_sparsity = std::nullopt);

}  // namespace saelab
