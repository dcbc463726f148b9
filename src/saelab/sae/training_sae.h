// Training SAEs: one class per architecture (each in its folder under sae/, listed in
// registry.cpp), each owning its parameters (float32 unless TrainingSaeConfig::dtype says float64)
// by SAELens's training names and exposing ONE step interface, forward_backward, that fills a
// gradient for every parameter and returns the batch's losses and activations. The trainer only
// talks to this interface, so a hand-written forward/backward can replace the LibTorch
// autograd bodies without touching any caller.
//
// Parameters (training names): W_enc [d_in, d_sae], W_dec [d_sae, d_out], b_dec [d_out] (d_out =
// d_in for an SAE), W_skip [d_out, d_in] for a skip transcoder, and
//   standard, topk, batchtopk, matryoshka_batchtopk: b_enc [d_sae]
//   gated: b_gate, b_mag, r_mag [d_sae]
//   jumprelu: b_enc, log_threshold [d_sae] (threshold = exp(log_threshold), as SAELens trains it)
// Buffers (state that Adam does not touch): batchtopk / matryoshka: topk_threshold (0-dim float64).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saelab/sae/sae.h"

namespace saelab {

class Collectives;

// What the training SAE needs of the run config (kept separate so tests build one in two lines).
struct TrainingSaeConfig {
  std::string architecture = "standard";
  int64_t d_in = 0;
  int64_t d_sae = 0;
  at::ScalarType dtype = at::kFloat;   // of the parameters, gradients and Adam moments
  std::string activation_fn = "relu";  // standard: relu | tanh-relu (f = tanh(ReLU(z)))
  int64_t k = 0;  // topk: per token; batchtopk/matryoshka: mean per token (k·N kept per batch)
  bool apply_b_dec_to_input = true;
  bool scale_sparsity_penalty_by_decoder_norm = false;
  double lp_norm = 1.0;
  std::optional<std::string> mse_loss_normalization;  // null | "dense_batch"
  bool use_ghost_grads = false;
  double aux_loss_coefficient = 1.0;
  double jumprelu_init_threshold = 0.001;
  double jumprelu_bandwidth = 0.001;
  double topk_threshold_lr = 0.01;
  std::vector<int64_t> matryoshka_widths;  // increasing; the last level d_sae is implied
  // Transcoders: the decoder writes d_out (0: d_in, an SAE) and the loss compares it with the
  // step's target instead of x; skip_connection adds W_skip [d_out, d_in] (output = decode(f) +
  // x W_skipᵀ, trained with the rest, initialised to zeros).
  int64_t d_out = 0;
  bool skip_connection = false;
  int64_t out_dim() const { return d_out > 0 ? d_out : d_in; }
  // Hand-written forward/backward (fast_*.cpp) where one implements this configuration;
  // false forces the autograd bodies (the tests' reference).
  bool use_fast_path = true;
};

// Per-step inputs that the trainer owns.
struct StepContext {
  double l1_coefficient = 0.0;  // current (warmed-up) sparsity coefficient
  double l0_coefficient = 0.0;  // jumprelu's current L0 coefficient
  at::Tensor dead_mask;  // bool [d_sae]: latents dead for dead_feature_window steps (or undefined)
  // Data-parallel ranks holding the rest of the global batch (null: x is the whole batch). Losses
  // and gradients stay means over this rank's rows (the trainer averages them over ranks);
  // batch-wide selections (batchtopk, matryoshka) select over the global batch.
  Collectives* dist = nullptr;
  // What the decoder's output is compared with, [N, out_dim] (undefined: x itself, an SAE). A
  // transcoder's output activations; TrainingSae::step sets it.
  at::Tensor target;
  // Called by a hand-written step as soon as grads()[name] is final (nothing in the step writes it
  // afterwards), so that the trainer can start averaging it over ranks while the step computes
  // the rest. Steps need not call it; the trainer averages whatever was not announced.
  std::function<void(const std::string& name)> grad_ready;
};

struct TrainStepOutput {
  double loss = 0.0;                     // the total loss that was differentiated
  std::map<std::string, double> losses;  // mse_loss, l1_loss, auxiliary_reconstruction_loss, ...
  at::Tensor feature_acts;               // [N, d_sae] detached latent activations
  at::Tensor sae_out;                    // [N, out_dim] detached reconstruction / output
  // Optional [d_sae]: on how many of the N tokens each latent fired (feature_acts > 0). A step that
  // knows its active entries (the k-sparse ones) counts them in O(N·k); when undefined the
  // trainer counts feature_acts, an O(N·d_sae) pass.
  at::Tensor fire_counts;
};

class TrainingSae {
 public:
  explicit TrainingSae(TrainingSaeConfig cfg);
  virtual ~TrainingSae() = default;

  const TrainingSaeConfig& cfg() const { return cfg_; }
  // Trained parameters by name; the trainer updates them in place (they never require grad).
  std::map<std::string, at::Tensor>& params() { return params_; }
  const std::map<std::string, at::Tensor>& params() const { return params_; }
  // d loss / d param for the last forward_backward, same names and shapes as params().
  std::map<std::string, at::Tensor>& grads() { return grads_; }
  // Non-trained state saved with checkpoints (batchtopk's threshold).
  std::map<std::string, at::Tensor>& buffers() { return buffers_; }

  // One training step, what the trainer calls: x [N, d_in] and the target y [N, out_dim] (an SAE
  // passes x or an undefined tensor), both already normalised. With a skip connection the
  // architecture's forward_backward trains on y − x W_skipᵀ, and W_skip's gradient is added here
  // (out.sae_out then includes the skip term).
  TrainStepOutput step(const at::Tensor& x, const at::Tensor& y, StepContext ctx);
  // The architecture's forward pass on x [N, d_in], every loss term against ctx.target (or x), and
  // the gradients of the summed loss into grads().
  virtual TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) = 0;
  // Latent activations without gradients, as the training forward computes them.
  virtual at::Tensor encode(const at::Tensor& x) const = 0;
  at::Tensor decode(const at::Tensor& f) const;
  // Called after the optimiser step with that step's output (batchtopk updates its threshold).
  virtual void after_step(const TrainStepOutput& out) { (void)out; }
  // Frees the [N, d_sae] work buffers a hand-written step keeps from one step to the next (the
  // next step allocates them again). The trainer calls it when its loop ends, so that the
  // end-of-run evaluation does not hold them beside its own.
  virtual void release_work_buffers() {}

  // The SAE in SAELens's inference layout (batchtopk/matryoshka as jumprelu, log_threshold as
  // threshold), with activation scaling folded in: trained on s·x and (transcoders) s_out·y, it
  // saves W_enc·s, W_dec/s_out, b_dec/s_out, W_skip·s/s_out (thresholds and b_enc unchanged).
  // base carries the cfg.json metadata fields. An SAE has s_out = s.
  std::unique_ptr<Sae> to_inference(const SaeConfig& base, double s, double s_out) const;
  // The inverse: takes the weights of an inference SAE of this architecture (from_pretrained_path)
  // into the training parameters, unfolding the activation scales. Errors name `where`.
  void load_inference(const Sae& sae, double s, double s_out, const std::string& where);

  // What a step's decoder output is compared with: ctx.target, or x for an SAE.
  static const at::Tensor& target(const at::Tensor& x, const StepContext& ctx) {
    return ctx.target.defined() ? ctx.target : x;
  }

  // Moves parameters, gradients and buffers to device (call before the first step: the fast
  // paths allocate their work buffers like the parameters). The inference SAE is always on CPU.
  void to(const at::Device& device);

 protected:
  at::Tensor sae_in(const at::Tensor& x, const at::Tensor& b_dec) const;
  // Reconstruction error per element under mse_loss_normalization, [N, d_in].
  at::Tensor mse_elements(const at::Tensor& x_hat, const at::Tensor& x) const;
  // Leaf copies of the parameters that record gradients.
  std::map<std::string, at::Tensor> leaves() const;
  void collect_grads(const std::map<std::string, at::Tensor>& leaves);
  virtual void export_params(std::map<std::string, at::Tensor>& out) const;
  // Sets every parameter from `in` (inference names); overrides map their own names first.
  virtual void import_params(const std::map<std::string, at::Tensor>& in, const std::string& where);

  TrainingSaeConfig cfg_;
  std::map<std::string, at::Tensor> params_;
  std::map<std::string, at::Tensor> grads_;
  std::map<std::string, at::Tensor> buffers_;
};

// The device a run config's `device` names ("cpu", "cuda", "cuda:N"), checked against what this
// LibTorch can use: one-line error for a CUDA device in a CPU-only build or a missing GPU.
at::Device training_device(const std::string& name);

// The architecture's training SAE with parameters allocated (zeros; the trainer initialises them):
// its hand-written step when cfg.use_fast_path and one implements cfg, else its autograd body.
std::unique_ptr<TrainingSae> make_training_sae(const TrainingSaeConfig& cfg);
// The hand-written step for cfg, or nullptr where only the autograd body implements it
// (mse_loss_normalization; standard with ghost grads or lp_norm != 1).
std::unique_ptr<TrainingSae> make_fast_training_sae(const TrainingSaeConfig& cfg);

// A gradient buffer of params()[name]'s shape and dtype for hand-written steps, reused while it
// still fits.
at::Tensor& fast_grad_buffer(TrainingSae& sae, const std::string& name);

}  // namespace saelab
