// The parts every training SAE shares: input centring, the reconstruction error with SAELens's
// mse_loss_normalization, gradient collection from autograd leaves, and the export to SAELens's
// inference layout with the activation scale folded in.
#include "saelab/train/training_sae.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/train/config.h"
#include "saelab/train/fast_training_sae.h"

namespace saelab {

TrainingSaeConfig training_sae_config(const RunnerConfig& cfg) {
  TrainingSaeConfig t;
  t.architecture = cfg.architecture;
  t.d_in = cfg.d_in;
  t.d_sae = cfg.resolved_d_sae();
  t.k = cfg.k();
  t.apply_b_dec_to_input = cfg.apply_b_dec_to_input;
  t.scale_sparsity_penalty_by_decoder_norm = cfg.scale_sparsity_penalty_by_decoder_norm;
  t.lp_norm = cfg.lp_norm;
  t.mse_loss_normalization = cfg.mse_loss_normalization;
  t.use_ghost_grads = cfg.use_ghost_grads;
  t.aux_loss_coefficient = cfg.aux_loss_coefficient;
  t.jumprelu_init_threshold = cfg.jumprelu_init_threshold;
  t.jumprelu_bandwidth = cfg.jumprelu_bandwidth;
  t.topk_threshold_lr = cfg.topk_threshold_lr;
  t.matryoshka_widths = cfg.matryoshka_widths;
  return t;
}

TrainingSae::TrainingSae(TrainingSaeConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.d_in <= 0 || cfg_.d_sae <= 0)
    fail("training SAE: expected d_in > 0 and d_sae > 0, got d_in={} d_sae={}", cfg_.d_in,
         cfg_.d_sae);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  params_["W_enc"] = torch::zeros({cfg_.d_in, cfg_.d_sae}, f32);
  params_["W_dec"] = torch::zeros({cfg_.d_sae, cfg_.d_in}, f32);
  params_["b_dec"] = torch::zeros({cfg_.d_in}, f32);
}

at::Tensor TrainingSae::sae_in(const at::Tensor& x, const at::Tensor& b_dec) const {
  return cfg_.apply_b_dec_to_input ? x - b_dec : x;
}

at::Tensor TrainingSae::mse_elements(const at::Tensor& x_hat, const at::Tensor& x) const {
  auto err = (x_hat - x).pow(2);
  if (cfg_.mse_loss_normalization && *cfg_.mse_loss_normalization == "dense_batch") {
    // SAELens's batch_norm_mse_loss_fn: divide by the norm of the batch-centred target.
    auto centred = x - x.mean(0, /*keepdim=*/true);
    err = err / (centred.norm(2, {-1}, /*keepdim=*/true) + 1e-6);
  }
  return err;
}

std::map<std::string, at::Tensor> TrainingSae::leaves() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, p] : params_) out[name] = p.detach().requires_grad_(true);
  return out;
}

void TrainingSae::collect_grads(const std::map<std::string, at::Tensor>& leaves) {
  for (const auto& [name, leaf] : leaves) {
    auto g = leaf.grad();
    grads_[name] = g.defined() ? g.detach() : torch::zeros_like(params_.at(name));
  }
}

at::Tensor TrainingSae::decode(const at::Tensor& f) const {
  torch::NoGradGuard ng;
  return f.mm(params_.at("W_dec")) + params_.at("b_dec");
}

void TrainingSae::export_params(std::map<std::string, at::Tensor>& out) const {
  for (const auto& [name, p] : params_) out[name] = p.detach().clone();
}

std::unique_ptr<Sae> TrainingSae::to_inference(const SaeConfig& base, double s) const {
  SaeConfig c = base;
  const auto& a = cfg_.architecture;
  c.architecture = (a == "batchtopk" || a == "matryoshka_batchtopk") ? "jumprelu" : a;
  c.d_in = cfg_.d_in;
  c.d_sae = cfg_.d_sae;
  c.k = a == "topk" ? cfg_.k : 0;
  c.apply_b_dec_to_input = cfg_.apply_b_dec_to_input;
  c.dtype = "float32";
  std::map<std::string, at::Tensor> p;
  export_params(p);
  if (s != 1.0) {
    // Trained on s·x: z = (s·x − b)W + c = (x − b/s)(s·W) + c and x̂/s = f(W_dec/s) + b/s.
    p["W_enc"] = p["W_enc"] * s;
    p["W_dec"] = p["W_dec"] / s;
    p["b_dec"] = p["b_dec"] / s;
  }
  auto sae = make_sae(c);
  for (auto& [name, t] : sae->params()) {
    auto it = p.find(name);
    if (it == p.end())
      fail("training SAE export: no parameter '{}' for architecture {}", name, c.architecture);
    t = it->second.to(at::kCPU, torch::kFloat32).contiguous();
  }
  return sae;
}

void TrainingSae::to(const at::Device& device) {
  for (auto* m : {&params_, &grads_, &buffers_})
    for (auto& [name, t] : *m)
      if (t.defined()) t = t.to(device);
}

at::Device training_device(const std::string& name) {
  at::Device d(at::kCPU);
  try {
    d = at::Device(name);
  } catch (const std::exception&) {
    fail("device = '{}': expected cpu, cuda or cuda:N", name);
  }
  if (d.is_cpu()) return d;
  if (!d.is_cuda())
    fail("device = '{}': saelab trains on cpu or cuda (LibTorch {} here)", name, TORCH_VERSION);
  if (!torch::cuda::is_available())
    fail(
        "device = '{}': this saelab was built against a LibTorch without CUDA or no GPU is visible "
        "(LibTorch {}); build against a CUDA LibTorch (scripts/gpu-build.sh) or set device = "
        "\"cpu\"",
        name, TORCH_VERSION);
  if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count()))
    fail("device = '{}': only {} CUDA device(s) visible", name, torch::cuda::device_count());
  return d;
}

std::unique_ptr<TrainingSae> make_standard_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_gated_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_topk_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_batchtopk_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_jumprelu_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_matryoshka_training_sae(const TrainingSaeConfig& cfg);

std::unique_ptr<TrainingSae> make_training_sae(const TrainingSaeConfig& cfg) {
  if (cfg.use_fast_path)
    if (auto fast = make_fast_training_sae(cfg)) return fast;
  const auto& a = cfg.architecture;
  if (a == "standard") return make_standard_training_sae(cfg);
  if (a == "gated") return make_gated_training_sae(cfg);
  if (a == "topk") return make_topk_training_sae(cfg);
  if (a == "batchtopk") return make_batchtopk_training_sae(cfg);
  if (a == "jumprelu") return make_jumprelu_training_sae(cfg);
  if (a == "matryoshka_batchtopk") return make_matryoshka_training_sae(cfg);
  fail(
      "architecture: expected standard | gated | topk | batchtopk | jumprelu | "
      "matryoshka_batchtopk, got '{}'",
      a);
}

}  // namespace saelab
