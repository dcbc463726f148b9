// What the trainer measures and logs (SAELens's metric names), the resampling of dead latents
// (Anthropic 2023) and the held-out evaluation behind the end-of-run summary.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/eval/density.h"
#include "saelab/eval/metrics.h"
#include "saelab/log/metrics_logger.h"
#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/train/trainer.h"

namespace saelab {

const std::vector<std::string> kModelEvalSkippedKeys = {
    "sparsity/dead_features", "sparsity/dense_features", "sparsity/below_1e-5",
    "sparsity/below_1e-6"};

namespace {

bool skipped_in_training_log(const std::string& key) {
  return std::find(kModelEvalSkippedKeys.begin(), kModelEvalSkippedKeys.end(), key) !=
         kModelEvalSkippedKeys.end();
}

}  // namespace

FeatureRecovery feature_recovery(const at::Tensor& true_features, const at::Tensor& W_dec) {
  torch::NoGradGuard ng;
  auto t = true_features.to(at::kCPU, torch::kFloat64);
  auto w = W_dec.to(at::kCPU, torch::kFloat64);
  t = t / t.norm(2, {1}, true).clamp_min(1e-12);
  w = w / w.norm(2, {1}, true).clamp_min(1e-12);
  auto best = std::get<0>(t.mm(w.t()).max(1));  // [n_features]
  FeatureRecovery r;
  r.mmcs = best.mean().item<double>();
  r.features_recovered = (best > 0.9).to(torch::kFloat64).mean().item<double>();
  return r;
}

at::Tensor Trainer::sparsity_for_save() const {
  if (window_tokens_ > 0) return log10_density(window_fires_, window_tokens_);
  if (last_window_log10_.defined()) return last_window_log10_;
  return at::Tensor();
}

void Trainer::log_step(const at::Tensor& x, const TrainStepOutput& out, double lr,
                       double coefficient) {
  torch::NoGradGuard ng;
  // Explained variance of the (global) batch from sums, so that ranks can add theirs:
  // Σ‖x − x̂‖², Σx and Σ‖x‖² give Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖²/N.
  const int64_t d = x.size(1);
  at::Tensor sums;
  if (fast::raw_loop_ok(x) && fast::raw_loop_ok(out.sae_out) &&
      x.scalar_type() == out.sae_out.scalar_type() && x.sizes() == out.sae_out.sizes()) {
    sums = fast::explained_variance_sums(x, out.sae_out);
  } else {
    auto xd = x.to(torch::kFloat64);
    sums = torch::cat({(xd - out.sae_out.to(torch::kFloat64)).pow(2).sum().reshape({1}), xd.sum(0),
                       xd.pow(2).sum().reshape({1})})
               .cpu();
  }
  double n = static_cast<double>(x.size(0));
  if (distributed()) {
    opts_.dist->sum_(sums);
    n *= opts_.dist->world_size();
  }
  if (!logger_) return;
  const at::Tensor sx = sums.narrow(0, 1, d);
  const double resid = sums[0].item<double>();
  const double var = sums[d + 1].item<double>() - sx.dot(sx).item<double>() / n;
  std::map<std::string, double> m;
  m["losses/overall_loss"] = out.loss;
  for (const auto& [k, v] : out.losses) m["losses/" + k] = v;
  m["metrics/explained_variance"] = 1.0 - resid / var;
  m["metrics/l0"] = last_l0_;
  m["sparsity/mean_passes_since_fired"] = since_fired_.to(torch::kFloat64).mean().item<double>();
  m["sparsity/dead_features"] = static_cast<double>(dead_mask().sum().item<int64_t>());
  m["details/current_learning_rate"] = lr;
  m["details/current_l1_coefficient"] = coefficient;
  m["details/n_training_tokens"] = static_cast<double>(n_tokens_);
  if (sae_->buffers().count("topk_threshold"))
    m["details/topk_threshold"] = sae_->buffers().at("topk_threshold").item<double>();
  if (auto truth = source_->true_features()) {
    auto r = feature_recovery(*truth, sae_->params().at("W_dec"));
    m["metrics/mmcs"] = r.mmcs;
    m["metrics/features_recovered"] = r.features_recovered;
  }
  logger_->log_scalars(step_, m);
}

void Trainer::log_density_and_resample(const at::Tensor& x) {
  if (window_tokens_ == 0) return;
  auto log10 = log10_density(window_fires_, window_tokens_);
  auto ds = summarize_fire_counts(window_fires_, window_tokens_);
  std::map<std::string, double> m;
  m["metrics/mean_log10_feature_sparsity"] = ds.mean_log10;
  m["sparsity/below_1e-5"] = static_cast<double>(ds.below_1e5);
  m["sparsity/below_1e-6"] = static_cast<double>(ds.below_1e6);
  m["sparsity/dense_features"] = static_cast<double>(ds.dense);
  // Never on the last step: the final SAE would be saved with freshly re-initialised latents.
  if (cfg_.resample_dead_latents && step_ < cfg_.steps()) {
    auto freq = window_fires_ / static_cast<double>(window_tokens_);
    auto dead = freq < cfg_.dead_feature_threshold;
    int64_t n = dead.sum().item<int64_t>();
    // Resampling draws from the whole global batch, as a single process would.
    if (n > 0) resample_dead_latents(dead, distributed() ? opts_.dist->gather_rows(x) : x);
    m["sparsity/resampled_features"] = static_cast<double>(n);
  }
  if (logger_) {
    logger_->log_scalars(step_, m);
    logger_->log_histogram(step_, "plots/feature_density_line_chart", log10);
    // The same window's histogram and zone counts, for the training report's density slider.
    json record = density_summary_json(ds);
    const json h = density_histogram_json(log10);
    record["bin_edges"] = h["bin_edges"];
    record["counts"] = h["counts"];
    record["n_training_tokens"] = n_tokens_;
    record["window_tokens"] = window_tokens_;
    logger_->log_density_window(step_, record);
  }
  last_window_log10_ = log10;
  window_fires_.zero_();
  window_tokens_ = 0;
}

void Trainer::resample_dead_latents(const at::Tensor& dead, const at::Tensor& x) {
  torch::NoGradGuard ng;
  auto idx = dead.nonzero().squeeze(1);
  const int64_t n = idx.numel();
  // Inputs are drawn with probability ∝ (their squared reconstruction error)².
  auto x_hat = sae_->decode(sae_->encode(x));
  auto loss = (x - x_hat).to(torch::kFloat64).pow(2).sum(1);
  auto weights = loss.pow(2);
  if (!(weights.sum().item<double>() > 0)) weights = torch::ones_like(weights);
  // gen_ is a CPU generator (its state is checkpointed): draw on CPU whatever the device.
  auto pick = torch::multinomial(weights.cpu(), n, /*replacement=*/true, gen_).to(x.device());
  auto dirs = x.index_select(0, pick);
  dirs = dirs / dirs.norm(2, {1}, true).clamp_min(1e-12);
  auto& p = sae_->params();
  auto enc_norms = p["W_enc"].norm(2, {0});
  auto alive = dead.logical_not();
  double mean_alive =
      alive.any().item<bool>() ? enc_norms.masked_select(alive).mean().item<double>() : 1.0;
  p["W_dec"].index_copy_(0, idx, dirs);
  p["W_enc"].index_copy_(1, idx, (dirs * (0.2 * mean_alive)).t().contiguous());
  adam_.reset_moments("W_dec", 0, idx);
  adam_.reset_moments("W_enc", 1, idx);
  for (const char* name : {"b_enc", "b_gate", "b_mag", "r_mag"}) {
    auto it = p.find(name);
    if (it == p.end()) continue;
    it->second.index_fill_(0, idx, 0.0);
    adam_.reset_moments(name, 0, idx);
  }
  if (p.count("log_threshold")) adam_.reset_moments("log_threshold", 0, idx);
  since_fired_.index_fill_(0, idx, 0);
}

const json& Trainer::run_model_eval() {
  if (model_eval_step_ == step_) return model_eval_result_;
  torch::NoGradGuard ng;
  auto sae = inference_sae();
  model_eval_result_ = opts_.model_eval(*sae);
  model_eval_step_ = step_;
  if (logger_) {
    std::map<std::string, double> m;
    for (const auto& [k, v] : model_eval_result_.items())
      if (v.is_number() && k.find('/') != std::string::npos && !skipped_in_training_log(k))
        m[k] = v.get<double>();
    // An undefined score is NaN here; metrics.jsonl writes it as null.
    logger_->log_scalars(step_, m);
    logger_->flush();
  }
  return model_eval_result_;
}

json Trainer::final_eval() {
  json e = json::object();
  torch::NoGradGuard ng;
  auto sae = inference_sae();
  if (opts_.summary_eval_batches > 0) try {
      ReconstructionStats stats;
      // In chunks of rows: the forward's [rows, d_sae] intermediates of a whole batch would
      // make this the run's peak of memory; the statistics merge chunks exactly. Chunks of 2^21
      // latent activations (8 MiB in float32; 16 MiB chunks raised the peak RSS of a 512 × 8192
      // batchtopk run by 60 MiB over its training loop's, 8 MiB ones not at all).
      const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{1} << 21) / sae_->cfg().d_sae);
      for (int64_t i = 0; i < opts_.summary_eval_batches; ++i) {
        const Batch b =
            split(source_->next_batch(cfg_.train_batch_size_tokens).to(torch::kFloat32));
        for (int64_t r = 0; r < b.x.size(0); r += chunk_rows) {
          const int64_t n = std::min(chunk_rows, b.x.size(0) - r);
          auto fwd = sae->forward(b.x.narrow(0, r, n));
          stats.add(b.y.narrow(0, r, n), fwd.reconstruction, fwd.acts_post);
        }
      }
      auto m = stats.metrics();
      auto ds = summarize_fire_counts(stats.fire_counts(), stats.n_tokens());
      e["metrics/explained_variance"] = m["reconstruction_quality/explained_variance"];
      e["reconstruction_quality/mse"] = m["reconstruction_quality/mse"];
      e["metrics/l0"] = m["sparsity/l0"];
      e["sparsity/dead_features"] = ds.dead;
      e["sparsity/dense_features"] = ds.dense;
      e["n_eval_tokens"] = stats.n_tokens();
      final_log10_density_ = stats.log10_feature_density().to(torch::kFloat32);
    } catch (const Error& err) {
      e["eval_error"] = err.what();
    }
  if (auto truth = source_->true_features()) {
    auto r = feature_recovery(*truth, sae->param("W_dec"));
    e["metrics/mmcs"] = r.mmcs;
    e["metrics/features_recovered"] = r.features_recovered;
  }
  if (opts_.model_eval) {
    // The model evals on the final SAE (logged at the last step; reused when that step already
    // ran them). They replace the activation eval's value of the same name (the summary shows what
    // metrics.jsonl logged), except the density counts, which that eval takes over more tokens.
    try {
      const json& m = run_model_eval();
      for (const auto& [k, v] : m.items()) {
        if (k == "n_tokens")
          e["n_model_eval_tokens"] = v;
        else if (k == "n_prompts")
          e["n_model_eval_prompts"] = v;
        else if (k == "notes")
          e["model_eval_notes"] = v;
        else if (!e.contains(k) || !skipped_in_training_log(k))
          e[k] = v;
      }
    } catch (const Error& err) {
      e["model_eval_error"] = err.what();
    }
  }
  return e;
}

}  // namespace saelab
