// Initialisation of a training SAE (SAELens's initialize_weights and
// initialize_b_dec): weights, the decoder bias from the first batch, and the activation scale of
// normalize_activations = expected_average_only_in.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace saelab {

class TrainingSae;
struct RunnerConfig;

struct SaeInitOptions {
  bool decoder_heuristic_init = false;  // decoder rows rescaled to norm decoder_heuristic_init_norm
  double decoder_heuristic_init_norm = 0.1;
  bool init_encoder_as_decoder_transpose = false;
  bool decoder_orthogonal_init = false;  // orthogonal decoder rows (as many as fit in d_in)
  bool normalize_sae_decoder = false;    // unit decoder rows after the rest
};
SaeInitOptions sae_init_options(const RunnerConfig& cfg);

// W_enc and W_dec with kaiming-uniform (torch's default for nn.Linear-like weights: bound
// sqrt(6 / fan_in), fan_in = size(1)), then the options in the order SAELens applies them.
void init_sae_weights(TrainingSae& sae, const SaeInitOptions& opts, at::Generator& gen);

// Weiszfeld's algorithm: the point minimising Σ_i ‖x_i − m‖, from the mean, at most max_iter
// iterations, stopping when the objective improves by less than ftol (relative). Float64 inside.
at::Tensor geometric_median(const at::Tensor& points, int64_t max_iter = 100, double eps = 1e-6,
                            double ftol = 1e-20);

// Sets b_dec from x [N, d_in]: "geometric_median" | "mean" | "zeros".
void init_b_dec(TrainingSae& sae, const std::string& method, const at::Tensor& x);

// s = sqrt(d_in) / mean_b ‖x_b‖ (SAELens's estimated_norm_scaling_factor).
double estimate_norm_scaling_factor(const at::Tensor& x);

// Unit-norm decoder rows (in place).
void set_decoder_norm_to_unit_norm(TrainingSae& sae);
// Removes from each W_dec row's gradient its component along that (unit) row.
void remove_gradient_parallel_to_decoder_directions(TrainingSae& sae);

}  // namespace saelab
