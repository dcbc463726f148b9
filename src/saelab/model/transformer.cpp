// The forward pass of Transformer (transformer.h): embedding, blocks (pre-norm, attention,
// optional Gemma-2 post-norms, MLP, residual adds), final norm and unembedding, calling the hook
// points of hooks.h on the way. The parts live in norms.cpp, attention.cpp, mlp.cpp, rotary.cpp.
#include "saelab/model/transformer.h"

#include <torch/torch.h>

#include <optional>

#include "saelab/core/error.h"
#include "saelab/model/rotary.h"
#include "saelab/model/transformer_parts.h"

namespace saelab {

namespace {

at::Tensor forward_pass(const ModelConfig& cfg, const TransformerWeights& tw,
                        const at::Tensor& tokens, HookState& hs, bool need_logits) {
  const int64_t batch = tokens.size(0), pos = tokens.size(1), d = cfg.d_model;
  const NormKind kind = norm_kind(cfg);
  const std::string none;
  at::Tensor embed = tw.W_E.index_select(0, tokens.reshape({-1})).view({batch, pos, d});
  if (cfg.embedding_scale != 1.0) embed = embed * cfg.embedding_scale;
  embed = run_hook(hs, none, "hook_embed", embed);
  at::Tensor resid = embed, shortformer_pos;
  const std::string& ptype = cfg.positional_embedding_type;
  if (ptype == "standard" || ptype == "shortformer") {
    at::Tensor pe = tw.W_pos.narrow(0, 0, pos).unsqueeze(0).expand({batch, pos, d});
    pe = run_hook(hs, none, "hook_pos_embed", pe);
    if (ptype == "standard")
      resid = embed + pe;
    else
      shortformer_pos = pe;
  }
  std::optional<RotaryTables> rotary;
  if (ptype == "rotary") {
    auto [sin, cos] = rotary_sin_cos(
        cfg, at::arange(pos, at::TensorOptions().dtype(at::kLong).device(tokens.device())),
        tw.W_E.scalar_type());
    rotary = RotaryTables{sin, cos};
  }
  const bool post = cfg.use_normalization_before_and_after;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const BlockWeights& bw = tw.blocks[l];
    const std::string prefix = "blocks." + std::to_string(l) + ".";
    resid = run_hook(hs, prefix, "hook_resid_pre", resid);
    at::Tensor x = apply_norm(cfg, kind, bw.ln1, resid, hs, prefix + "ln1.");
    at::Tensor attn_out = attention_forward(cfg, bw.attn, x, shortformer_pos,
                                            rotary ? &*rotary : nullptr, hs, prefix);
    if (post) attn_out = apply_norm(cfg, kind, bw.ln1_post, attn_out, hs, prefix + "ln1_post.");
    attn_out = run_hook(hs, prefix, "hook_attn_out", attn_out);
    if (cfg.d_mlp == 0) {  // attention-only: no resid_mid, as in TransformerLens
      resid = run_hook(hs, prefix, "hook_resid_post", resid + attn_out);
      continue;
    }
    at::Tensor resid_mid = run_hook(hs, prefix, "hook_resid_mid", resid + attn_out);
    at::Tensor x2 = apply_norm(cfg, kind, bw.ln2, resid_mid, hs, prefix + "ln2.");
    at::Tensor mlp_out = mlp_forward(cfg, bw.mlp, x2, hs, prefix);
    if (post) mlp_out = apply_norm(cfg, kind, bw.ln2_post, mlp_out, hs, prefix + "ln2_post.");
    mlp_out = run_hook(hs, prefix, "hook_mlp_out", mlp_out);
    resid = run_hook(hs, prefix, "hook_resid_post", resid_mid + mlp_out);
  }
  // ln_final's hooks still run when they are wanted without the logits.
  if (!need_logits && !hs.wants("ln_final.hook_normalized") && !hs.wants("ln_final.hook_scale"))
    return at::Tensor();
  at::Tensor x = apply_norm(cfg, kind, tw.ln_final, resid, hs, "ln_final.");
  if (!need_logits) return at::Tensor();
  at::Tensor logits = at::matmul(x, tw.W_U);
  if (tw.b_U.defined()) logits = logits + tw.b_U;
  if (cfg.output_logits_soft_cap > 0)
    logits = (logits / cfg.output_logits_soft_cap).tanh() * cfg.output_logits_soft_cap;
  return logits;
}

}  // namespace

Transformer::Transformer(ModelConfig cfg, std::map<std::string, at::Tensor> weights)
    : cfg_(std::move(cfg)), weights_(std::move(weights)) {
  validate_model(cfg_, weights_);
  prepare();
}

Transformer::~Transformer() = default;
Transformer::Transformer(Transformer&&) noexcept = default;
Transformer& Transformer::operator=(Transformer&&) noexcept = default;

void Transformer::prepare() {
  // Not under NoGradGuard: weights that require grad keep their link through the flattening.
  prepared_ = prepare_weights(cfg_, weights_);
  // The canonical W_Q / W_K / W_V become views of the fused matrix, so the model holds each
  // attention weight once (a 3 GB difference for an 8B Llama).
  const int64_t d = cfg_.d_model, h = cfg_.n_heads, kv = cfg_.n_key_value_heads, e = cfg_.d_head;
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const AttnWeights& a = prepared_->blocks[l].attn;
    const std::string p = "blocks." + std::to_string(l) + ".attn.";
    weights_[p + "W_Q"] = a.W_Q.reshape({d, h, e}).permute({1, 0, 2});
    weights_[p + "W_K"] = a.W_K.reshape({d, kv, e}).permute({1, 0, 2});
    weights_[p + "W_V"] = a.W_V.reshape({d, kv, e}).permute({1, 0, 2});
  }
}

const at::Tensor& Transformer::weight(const std::string& name) const {
  auto it = weights_.find(name);
  if (it == weights_.end()) fail("model '{}' has no weight '{}'", cfg_.model_name, name);
  return it->second;
}

void Transformer::to(const at::Device& device) {
  for (auto& [name, t] : weights_) t = t.to(device);
  prepare();
}

at::Device Transformer::device() const { return weights_.at("embed.W_E").device(); }

at::Tensor Transformer::checked_tokens(const at::Tensor& tokens) const {
  if (!tokens.defined()) fail("tokens: expected a [batch, pos] tensor of token ids, got none");
  if (at::isFloatingType(tokens.scalar_type()) || tokens.scalar_type() == at::kBool)
    fail("tokens: expected integer token ids, got dtype {}",
         std::string(c10::toString(tokens.scalar_type())));
  at::Tensor t = tokens.dim() == 1 ? tokens.unsqueeze(0) : tokens;
  if (t.dim() != 2) fail("tokens: expected shape [batch, pos], got {} dimensions", tokens.dim());
  if (t.size(0) == 0 || t.size(1) == 0)
    fail("tokens: expected at least one sequence of at least one token, got [{}, {}]", t.size(0),
         t.size(1));
  if (cfg_.n_ctx > 0 && t.size(1) > cfg_.n_ctx)
    fail("tokens: sequences of {} tokens are longer than the model's context n_ctx = {}", t.size(1),
         cfg_.n_ctx);
  t = t.to(at::kLong).to(device());
  at::Tensor bad = (t < 0).logical_or(t >= cfg_.d_vocab);
  if (bad.any().item<bool>()) {
    at::Tensor where = bad.nonzero()[0];
    const int64_t b = where[0].item<int64_t>(), p = where[1].item<int64_t>();
    fail(
        "token id {} (sequence {}, position {}) is out of range: the model's vocabulary has {} "
        "tokens (ids 0..{})",
        t[b][p].item<int64_t>(), b, p, cfg_.d_vocab, cfg_.d_vocab - 1);
  }
  return t;
}

Transformer::RunResult Transformer::run(const at::Tensor& tokens, const std::vector<Hook>& hooks,
                                        const std::vector<std::string>& cache_names,
                                        bool return_logits) const {
  for (const auto& h : hooks) check_hook_name(h.name);
  for (const auto& n : cache_names) check_hook_name(n);
  at::Tensor tok = checked_tokens(tokens);
  RunResult result;
  if (!return_logits && cache_names.empty()) {
    if (hooks.empty()) return result;  // nothing asked for
  }
  std::optional<at::NoGradGuard> no_grad;
  if (!grad_enabled_) no_grad.emplace();
  HookState hs(hooks, cache_names, /*stop_when_cached=*/!return_logits && !cache_names.empty());
  try {
    result.logits = forward_pass(cfg_, *prepared_, tok, hs, return_logits);
  } catch (const HookState::StopForward&) {
  }
  result.cache = std::move(hs.cache());
  return result;
}

at::Tensor Transformer::forward(const at::Tensor& tokens) const {
  return run(tokens, {}, {}, true).logits;
}

std::map<std::string, at::Tensor> Transformer::run_with_cache(const at::Tensor& tokens,
                                                              const std::vector<std::string>& names,
                                                              bool return_logits) const {
  RunResult r = run(tokens, {}, names, return_logits);
  if (return_logits) r.cache["logits"] = r.logits;
  return std::move(r.cache);
}

at::Tensor Transformer::run_with_hooks(const at::Tensor& tokens,
                                       const std::vector<Hook>& hooks) const {
  return run(tokens, hooks, {}, true).logits;
}

}  // namespace saelab
