// The parts every training SAE shares: input centring, the reconstruction error with SAELens's
// mse_loss_normalization, gradient collection from autograd leaves, and the export to SAELens's
// inference layout with the activation scale folded in.
#include "saelab/sae/training_sae.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/registry.h"

namespace saelab {

TrainingSae::TrainingSae(TrainingSaeConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.d_in <= 0 || cfg_.d_sae <= 0)
    fail("training SAE: expected d_in > 0 and d_sae > 0, got d_in={} d_sae={}", cfg_.d_in,
         cfg_.d_sae);
  auto f32 = torch::TensorOptions().dtype(cfg_.dtype);
  params_["W_enc"] = torch::zeros({cfg_.d_in, cfg_.d_sae}, f32);
  params_["W_dec"] = torch::zeros({cfg_.d_sae, cfg_.out_dim()}, f32);
  params_["b_dec"] = torch::zeros({cfg_.out_dim()}, f32);
  if (cfg_.skip_connection) params_["W_skip"] = torch::zeros({cfg_.out_dim(), cfg_.d_in}, f32);
}

TrainStepOutput TrainingSae::step(const at::Tensor& x, const at::Tensor& y, StepContext ctx) {
  if (!cfg_.skip_connection) {
    ctx.target = y.defined() && !y.is_same(x) ? y : at::Tensor();
    return forward_backward(x, ctx);
  }
  const auto& W_skip = params_.at("W_skip");
  const auto xs = x.to(W_skip.scalar_type());
  const auto skip = xs.mm(W_skip.t());
  ctx.target = y.to(W_skip.scalar_type()) - skip;
  TrainStepOutput out = forward_backward(x, ctx);  // the autograd bodies record their own graph
  torch::NoGradGuard ng;
  // The reconstruction loss is (1/N) Σ (decode(f) + skip − y)², so W_skip gets gᵀ x with
  // g = 2(ŷ − y)/N; every other term (sparsity, AuxK's detached residual) is independent of it.
  const auto g = (out.sae_out - ctx.target).mul_(2.0 / static_cast<double>(x.size(0)));
  at::mm_out(fast_grad_buffer(*this, "W_skip"), g.t(), xs);
  out.sae_out = out.sae_out + skip;
  return out;
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

std::unique_ptr<Sae> TrainingSae::to_inference(const SaeConfig& base, double s,
                                               double s_out) const {
  SaeConfig c = base;
  c.architecture = find_architecture(cfg_.architecture, "architecture").saved_as;
  c.activation_fn = cfg_.activation_fn;
  c.d_in = cfg_.d_in;
  c.d_sae = cfg_.d_sae;
  c.k = find_architecture(c.architecture, "architecture").k_sparse ? cfg_.k : 0;
  c.apply_b_dec_to_input = cfg_.apply_b_dec_to_input;
  c.dtype = sae_dtype_name(cfg_.dtype);
  c.d_out = cfg_.d_out;
  c.skip_connection = cfg_.skip_connection;
  std::map<std::string, at::Tensor> p;
  export_params(p);
  if (s != 1.0 || s_out != 1.0) {
    // Trained on s·x: z = (s·x − b)W + c = (x − b/s)(s·W) + c and x̂/s = f(W_dec/s) + b/s (an SAE:
    // s_out = s); a transcoder's output s_out·ŷ = f W_dec + b_dec + s·x W_skipᵀ.
    p["W_enc"] = p["W_enc"] * s;
    p["W_dec"] = p["W_dec"] / s_out;
    p["b_dec"] = p["b_dec"] / s_out;
    if (p.count("W_skip")) p["W_skip"] = p["W_skip"] * (s / s_out);
  }
  auto sae = make_sae(c);
  for (auto& [name, t] : sae->params()) {
    auto it = p.find(name);
    if (it == p.end())
      fail("training SAE export: no parameter '{}' for architecture {}", name, c.architecture);
    t = it->second.to(at::kCPU, cfg_.dtype).contiguous();
  }
  return sae;
}

void TrainingSae::import_params(const std::map<std::string, at::Tensor>& in,
                                const std::string& where) {
  torch::NoGradGuard ng;
  for (auto& [name, p] : params_) {
    auto it = in.find(name);
    if (it == in.end())
      fail("{}: no parameter '{}' for architecture {}", where, name, cfg_.architecture);
    if (it->second.sizes() != p.sizes())
      fail("{}: parameter '{}' has {} elements in a different shape than this run's", where, name,
           it->second.numel());
    p.copy_(it->second.to(p.device(), p.scalar_type()));
  }
}

void TrainingSae::load_inference(const Sae& sae, double s, double s_out, const std::string& where) {
  const auto& c = sae.cfg();
  const std::string want = find_architecture(cfg_.architecture, "architecture").saved_as;
  if (c.architecture != want || c.d_in != cfg_.d_in || c.d_sae != cfg_.d_sae ||
      c.d_out != cfg_.d_out || c.skip_connection != cfg_.skip_connection)
    fail(
        "{}: the SAE there is a {} SAE with d_in={} d_sae={} d_out={}{}, but this run trains {} "
        "(saved as {}) with d_in={} d_sae={} d_out={}{}",
        where, c.architecture, c.d_in, c.d_sae, c.d_out, c.skip_connection ? " (skip)" : "",
        cfg_.architecture, want, cfg_.d_in, cfg_.d_sae, cfg_.d_out,
        cfg_.skip_connection ? " (skip)" : "");
  std::map<std::string, at::Tensor> p;
  for (const auto& [name, t] : sae.params()) p[name] = t.to(at::kCPU, cfg_.dtype);
  if (s != 1.0 || s_out != 1.0) {
    // to_inference folded the scales in: undo it.
    p["W_enc"] = p["W_enc"] / s;
    p["W_dec"] = p["W_dec"] * s_out;
    p["b_dec"] = p["b_dec"] * s_out;
    if (p.count("W_skip")) p["W_skip"] = p["W_skip"] * (s_out / s);
  }
  import_params(p, where);
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

at::Tensor& fast_grad_buffer(TrainingSae& sae, const std::string& name) {
  const auto& p = sae.params().at(name);
  auto& g = sae.grads()[name];
  if (!g.defined() || g.sizes() != p.sizes() || g.scalar_type() != p.scalar_type() ||
      !g.is_contiguous())
    g = at::empty_like(p, at::MemoryFormat::Contiguous);
  return g;
}

std::unique_ptr<TrainingSae> make_fast_training_sae(const TrainingSaeConfig& cfg) {
  const Architecture& a = find_architecture(cfg.architecture, "architecture");
  // The hand-written steps implement SAELens's default loss; mse_loss_normalization only the
  // autograd bodies.
  if (cfg.mse_loss_normalization || !a.make_fast_training_sae) return nullptr;
  return a.make_fast_training_sae(cfg);
}

std::unique_ptr<TrainingSae> make_training_sae(const TrainingSaeConfig& cfg) {
  if (cfg.use_fast_path)
    if (auto fast = make_fast_training_sae(cfg)) return fast;
  return find_architecture(cfg.architecture, "architecture").make_training_sae(cfg);
}

}  // namespace saelab
