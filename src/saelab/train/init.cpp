// Initialisation of training SAEs (see init.h).
#include "saelab/train/init.h"

#include <torch/torch.h>

#include <cmath>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/sae/training_sae.h"

namespace saelab {

SaeInitOptions sae_init_options(const RunnerConfig& cfg) {
  SaeInitOptions o;
  o.decoder_heuristic_init = cfg.decoder_heuristic_init;
  o.decoder_heuristic_init_norm = cfg.decoder_heuristic_init_norm;
  o.init_encoder_as_decoder_transpose = cfg.init_encoder_as_decoder_transpose;
  o.decoder_orthogonal_init = cfg.decoder_orthogonal_init;
  o.normalize_sae_decoder = cfg.normalize_sae_decoder;
  return o;
}

static at::Tensor kaiming_uniform(int64_t rows, int64_t cols, at::Generator& gen) {
  double bound = std::sqrt(6.0 / static_cast<double>(cols));
  auto t = torch::empty({rows, cols}, torch::kFloat32);
  t.uniform_(-bound, bound, gen);
  return t;
}

void init_sae_weights(TrainingSae& sae, const SaeInitOptions& opts, at::Generator& gen) {
  torch::NoGradGuard ng;
  // d_out: the decoder's width (a transcoder's output; d_in for an SAE).
  int64_t d_in = sae.cfg().d_in, d_sae = sae.cfg().d_sae, d_out = sae.cfg().out_dim();
  auto& p = sae.params();
  p["W_enc"] = kaiming_uniform(d_in, d_sae, gen);
  p["W_dec"] = kaiming_uniform(d_sae, d_out, gen);
  if (opts.decoder_orthogonal_init) {
    // QR of a Gaussian matrix: orthonormal rows in blocks of d_out (rows beyond d_out cannot all
    // be orthogonal; each block of d_out is).
    auto w = torch::empty({d_sae, d_out}, torch::kFloat64);
    for (int64_t start = 0; start < d_sae; start += d_out) {
      int64_t n = std::min(d_out, d_sae - start);
      auto g = torch::empty({d_out, d_out}, torch::kFloat64).normal_(0.0, 1.0, gen);
      auto q = std::get<0>(at::linalg_qr(g));
      w.narrow(0, start, n).copy_(q.t().narrow(0, 0, n));
    }
    p["W_dec"] = w.to(torch::kFloat32);
  }
  if (opts.decoder_heuristic_init) {
    auto& W = p["W_dec"];
    W = W / W.norm(2, {1}, true) * opts.decoder_heuristic_init_norm;
  }
  if (opts.init_encoder_as_decoder_transpose || opts.decoder_heuristic_init)
    p["W_enc"] = p["W_dec"].t().contiguous().clone();
  // Drawn in float32 whatever the dtype, so a float64 run starts from the same weights.
  for (auto& [name, t] : p) t = t.to(sae.cfg().dtype).contiguous();
  if (opts.normalize_sae_decoder) set_decoder_norm_to_unit_norm(sae);
}

at::Tensor geometric_median(const at::Tensor& points, int64_t max_iter, double eps, double ftol) {
  torch::NoGradGuard ng;
  auto x = points.to(torch::kFloat64);
  auto median = x.mean(0);
  auto objective = [&](const at::Tensor& m) { return (x - m).norm(2, {1}).sum().item<double>(); };
  double prev = objective(median);
  for (int64_t i = 0; i < max_iter; ++i) {
    auto dist = (x - median).norm(2, {1});
    auto w = 1.0 / torch::clamp_min(dist, eps);
    median = (w.unsqueeze(1) * x).sum(0) / w.sum();
    double obj = objective(median);
    if (std::abs(prev - obj) <= ftol * obj) break;
    prev = obj;
  }
  return median.to(points.scalar_type());
}

void init_b_dec(TrainingSae& sae, const std::string& method, const at::Tensor& x) {
  auto& b = sae.params()["b_dec"];
  const auto dtype = sae.cfg().dtype;
  if (method == "geometric_median")
    b = geometric_median(x).to(dtype).contiguous();
  else if (method == "mean")
    b = x.mean(0).to(dtype).contiguous();
  else if (method == "zeros")
    b = torch::zeros({sae.cfg().out_dim()}, dtype);
  else
    fail("b_dec_init_method: expected geometric_median | mean | zeros, got '{}'", method);
}

double estimate_norm_scaling_factor(const at::Tensor& x) {
  double mean_norm = x.to(torch::kFloat64).norm(2, {1}).mean().item<double>();
  if (!(mean_norm > 0))
    fail("normalize_activations: the first batches have zero mean norm; cannot scale");
  return std::sqrt(static_cast<double>(x.size(1))) / mean_norm;
}

void set_decoder_norm_to_unit_norm(TrainingSae& sae) {
  torch::NoGradGuard ng;
  auto& W = sae.params()["W_dec"];
  W.div_(W.norm(2, {1}, true).clamp_min(1e-12));
}

void remove_gradient_parallel_to_decoder_directions(TrainingSae& sae) {
  torch::NoGradGuard ng;
  auto& g = sae.grads()["W_dec"];
  if (!g.defined()) return;
  const auto& W = sae.params().at("W_dec");
  if (fast::raw_loop_ok(g) && fast::raw_loop_ok(W) && g.scalar_type() == W.scalar_type() &&
      g.sizes() == W.sizes()) {
    fast::remove_row_parallel(g, W);  // one pass, no [d_sae, d_in] temporaries
    return;
  }
  auto parallel = (g * W).sum(1, true);
  g.sub_(parallel * W);
}

}  // namespace saelab
