// Model-based SAE evaluation: clean, SAE-spliced and zero-ablated forward passes per token batch,
// CE/KL accumulated in float64, activation metrics through ReconstructionStats (evaluator.h).
#include "saelab/eval/evaluator.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "saelab/core/error.h"
#include "saelab/eval/density.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Hooks whose activation carries a head axis [batch, pos, head, d] (SAELens: hook_q/k/v/z).
bool has_head_axis(const std::string& hook) {
  for (const char* s : {"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z",
                        "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_result"})
    if (ends_with(hook, s)) return true;
  return false;
}

std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Σ of the per-position terms where mask is true.
double masked_sum(const at::Tensor& values, const at::Tensor& mask) {
  return values.masked_select(mask).sum().item<double>();
}

}  // namespace

std::vector<int64_t> special_token_ids(const ModelConfig& cfg, std::optional<int64_t> pad) {
  std::vector<int64_t> ids;
  for (auto id : {cfg.bos_token_id, cfg.eos_token_id, pad})
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  return ids;
}

ModelEvaluator::ModelEvaluator(const Transformer& model, const Sae& sae, std::string hook_name,
                               std::optional<int64_t> hook_head_index, EvalOptions opts)
    : model_(model),
      sae_(sae),
      hook_(std::move(hook_name)),
      head_(hook_head_index),
      opts_(std::move(opts)) {
  model_.check_hook_name(hook_);
  head_dims_ = has_head_axis(hook_);
  hook_out_ = hook_;
  if (sae_.cfg().is_transcoder()) {
    hook_out_ = sae_.cfg().hook_name_out;
    if (hook_out_.empty())
      fail("transcoder eval: its cfg.json names no hook_name_out (the hook it replaces)");
    model_.check_hook_name(hook_out_);
    if (head_ || head_dims_ || has_head_axis(hook_out_))
      fail("transcoder eval: hooks with a head axis are not supported ({} -> {})", hook_,
           hook_out_);
    // The input must be computed before the output it replaces, in the same forward pass.
    const auto names = model_.hook_names();
    const auto in_at = std::find(names.begin(), names.end(), hook_);
    const auto out_at = std::find(names.begin(), names.end(), hook_out_);
    if (!(in_at < out_at))
      fail(
          "transcoder eval: hook_name '{}' must come before hook_name_out '{}' in the forward pass",
          hook_, hook_out_);
  }
  if (head_ && !head_dims_)
    fail(
        "hook_head_index: {} given for hook '{}', which has no head axis (expected "
        "attn.hook_q/k/v/z)",
        *head_, hook_);
  if (head_ && *head_ < 0) fail("hook_head_index: expected a head index >= 0, got {}", *head_);
}

void ModelEvaluator::add_batch(const at::Tensor& tokens_in) {
  if (tokens_in.dim() != 2 || tokens_in.size(0) == 0 || tokens_in.size(1) == 0)
    fail("eval tokens: expected a non-empty [batch, ctx] tensor of ids, got shape {}",
         shape_str(tokens_in.sizes()));
  at::NoGradGuard no_grad;
  const at::Tensor tokens = tokens_in.to(at::kLong);
  const int64_t B = tokens.size(0), T = tokens.size(1);

  at::Tensor mask = torch::ones({B, T}, torch::dtype(torch::kBool).device(tokens.device()));
  for (int64_t id : opts_.exclude_token_ids) mask = mask.logical_and(tokens.ne(id));

  std::vector<std::string> cached{hook_};
  if (hook_out_ != hook_) cached.push_back(hook_out_);
  auto clean = model_.run(tokens, {}, cached, opts_.compute_ce_kl);
  const at::Tensor act = clean.cache.at(hook_);

  // The SAE's input x [B, T, d_in] as a view of the hook activation.
  at::Tensor x;
  if (head_dims_) {
    if (act.dim() != 4)
      fail("hook '{}': expected a [batch, pos, head, d_head] activation, got {}", hook_,
           shape_str(act.sizes()));
    if (head_) {
      if (*head_ >= act.size(2))
        fail("hook_head_index: {} is out of range for hook '{}' with {} heads", *head_, hook_,
             act.size(2));
      x = act.select(2, *head_);
    } else {
      x = act.flatten(2);
    }
  } else {
    if (act.dim() != 3)
      fail("hook '{}': expected a [batch, pos, d] activation, got {}", hook_,
           shape_str(act.sizes()));
    x = act;
  }
  if (x.size(-1) != sae_.cfg().d_in)
    fail("SAE d_in {} does not match the width {} of hook '{}'{}", sae_.cfg().d_in, x.size(-1),
         hook_,
         head_ ? fmt::format(" (head {})", *head_)
               : (head_dims_ ? std::string(" (heads flattened)") : std::string()));

  // What the SAE reconstructs, at the hook it is spliced into: x, or a transcoder's output.
  const at::Tensor out_act = clean.cache.at(hook_out_);
  const at::Tensor target = hook_out_ == hook_ ? x : out_act;
  if (target.dim() != 3 || target.size(-1) != sae_.cfg().out_dim())
    fail("transcoder d_out {} does not match the width of hook '{}' (shape {})",
         sae_.cfg().out_dim(), hook_out_, shape_str(target.sizes()));
  // The model may run on a GPU (device = "cuda") while the inference SAE is on CPU.
  const at::Device sae_device = sae_.param("W_dec").device();
  SaeForward out = sae_.forward(x.to(sae_device));
  if (sae_device != x.device()) {
    out.reconstruction = out.reconstruction.to(x.device());
    out.acts_post = out.acts_post.to(x.device());
  }
  const at::Tensor& acts = out.acts_post;
  if (mask.any().item<bool>())
    stats_.add(target.index({mask}), out.reconstruction.index({mask}), acts.index({mask}));
  at::Tensor fired_in_prompt =
      acts.gt(0).logical_and(mask.unsqueeze(-1)).sum(1).gt(0).sum(0).to(at::kLong).cpu();
  fire_prompts_ = fire_prompts_.defined() ? fire_prompts_ + fired_in_prompt : fired_in_prompt;
  n_prompts_ += B;
  if (!opts_.compute_ce_kl) return;

  // The splice: the reconstruction where the token counts, the original activation elsewhere.
  const at::Tensor x_new =
      at::where(mask.unsqueeze(-1), out.reconstruction.to(out_act.scalar_type()), target);
  at::Tensor spliced;
  if (head_) {
    spliced = act.clone();
    spliced.select(2, *head_).copy_(x_new);
  } else {
    spliced = x_new.reshape(out_act.sizes());
  }
  const std::optional<int64_t> head = head_;
  Hook sae_hook{hook_out_, [&spliced](const at::Tensor&, const std::string&) { return spliced; }};
  Hook abl_hook{hook_out_, [head](const at::Tensor& a, const std::string&) {
                  if (!head) return at::zeros_like(a);
                  at::Tensor z = a.clone();
                  z.select(2, *head).zero_();
                  return z;
                }};
  const at::Tensor logits_sae = model_.run_with_hooks(tokens, {sae_hook});
  const at::Tensor logits_abl = model_.run_with_hooks(tokens, {abl_hook});

  // One prompt at a time so that only [T, d_vocab] is ever held in float64.
  for (int64_t b = 0; b < B; ++b) {
    const at::Tensor lp_clean = at::log_softmax(clean.logits[b].to(at::kDouble), -1);
    const at::Tensor lp_sae = at::log_softmax(logits_sae[b].to(at::kDouble), -1);
    const at::Tensor lp_abl = at::log_softmax(logits_abl[b].to(at::kDouble), -1);
    const at::Tensor m = mask[b];
    if (T >= 2) {
      const at::Tensor target = tokens[b].slice(0, 1).unsqueeze(1);
      const at::Tensor m_ce = m.slice(0, 0, T - 1);
      auto ce = [&](const at::Tensor& lp) {
        return -lp.slice(0, 0, T - 1).gather(1, target).squeeze(1);
      };
      ce_clean_ += masked_sum(ce(lp_clean), m_ce);
      ce_sae_ += masked_sum(ce(lp_sae), m_ce);
      ce_abl_ += masked_sum(ce(lp_abl), m_ce);
      n_ce_ += m_ce.sum().item<int64_t>();
    }
    const at::Tensor p = lp_clean.exp();
    kl_sae_ += masked_sum((p * (lp_clean - lp_sae)).sum(-1), m);
    kl_abl_ += masked_sum((p * (lp_clean - lp_abl)).sum(-1), m);
    n_kl_ += m.sum().item<int64_t>();
  }
}

at::Tensor ModelEvaluator::consistent_activation_heuristic() const {
  if (!fire_prompts_.defined())
    fail("consistent_activation_heuristic: no token batch was evaluated");
  return stats_.fire_counts().to(at::kDouble) /
         fire_prompts_.to(at::kDouble);  // 0/0 = NaN: never fired
}

json ModelEvaluator::metrics() const {
  if (n_prompts_ == 0) fail("model evals: no token batch was evaluated");
  if (stats_.n_tokens() == 0)
    fail("model evals: every position of the {} prompts holds an excluded token id", n_prompts_);
  json m = stats_.metrics();
  json notes = json::array();

  const at::Tensor fires = stats_.fire_counts();
  m["sparsity/mean_log10_feature_density"] =
      summarize_fire_counts(fires, stats_.n_tokens()).mean_log10;
  const at::Tensor cah = consistent_activation_heuristic();
  const at::Tensor fired = fires.gt(0);
  if (fired.any().item<bool>()) {
    m["sparsity/consistent_activation_heuristic"] = cah.masked_select(fired).mean().item<double>();
  } else {
    m["sparsity/consistent_activation_heuristic"] = kNaN;
    notes.push_back("sparsity/consistent_activation_heuristic is undefined: no latent fired");
  }
  m["n_prompts"] = n_prompts_;

  if (opts_.compute_ce_kl) {
    const std::string ce = "model_performance_preservation/", kl = "model_behavior_preservation/";
    double c0 = kNaN, cs = kNaN, ca = kNaN;
    if (n_ce_ > 0) {
      c0 = ce_clean_ / n_ce_;
      cs = ce_sae_ / n_ce_;
      ca = ce_abl_ / n_ce_;
    } else {
      notes.push_back(
          "CE losses are undefined: no predicted position (contexts of 1 token, or all excluded)");
    }
    m[ce + "ce_loss_without_sae"] = c0;
    m[ce + "ce_loss_with_sae"] = cs;
    m[ce + "ce_loss_with_ablation"] = ca;
    double score = kNaN;
    if (n_ce_ > 0 && ca != c0)
      score = (ca - cs) / (ca - c0);
    else if (n_ce_ > 0)
      notes.push_back(
          "ce_loss_score is undefined: ce_loss_with_ablation equals ce_loss_without_sae "
          "(zeroing the hook does not change the loss)");
    m[ce + "ce_loss_score"] = score;
    m[ce + "n_ce_tokens"] = n_ce_;

    const double ks = n_kl_ > 0 ? kl_sae_ / n_kl_ : kNaN, ka = n_kl_ > 0 ? kl_abl_ / n_kl_ : kNaN;
    m[kl + "kl_div_with_sae"] = ks;
    m[kl + "kl_div_with_ablation"] = ka;
    double kscore = kNaN;
    if (n_kl_ > 0 && ka != 0)
      kscore = (ka - ks) / ka;
    else if (n_kl_ > 0)
      notes.push_back(
          "kl_div_score is undefined: kl_div_with_ablation is 0 (zeroing the hook does not change "
          "the output distribution)");
    m[kl + "kl_div_score"] = kscore;
  }
  if (!notes.empty()) m["notes"] = notes;
  return m;
}

json evaluate_sae_on_model(const Transformer& model, const Sae& sae, const std::string& hook_name,
                           std::optional<int64_t> hook_head_index,
                           const std::vector<at::Tensor>& token_batches, const EvalOptions& opts) {
  ModelEvaluator ev(model, sae, hook_name, hook_head_index, opts);
  for (const auto& batch : token_batches) ev.add_batch(batch);
  return ev.metrics();
}

}  // namespace saelab
