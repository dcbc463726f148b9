// The hook catalogue (which TransformerLens hook names a model has, their shapes and layers) and
// HookState, the per-run dispatcher the forward pass calls at each hook point.
#include "saelab/model/hooks.h"

#include <torch/torch.h>

#include <cctype>

#include "saelab/core/error.h"

namespace saelab {

namespace {

bool is_norm(const ModelConfig& cfg) {
  const std::string& t = cfg.normalization_type;
  return !(t == "none" || t.empty());
}

std::vector<std::string> pre_block_hooks(const ModelConfig& cfg) {
  std::vector<std::string> out{"hook_embed"};
  const std::string& p = cfg.positional_embedding_type;
  if (p == "standard" || p == "shortformer") out.push_back("hook_pos_embed");
  return out;
}

std::vector<std::string> post_block_hooks(const ModelConfig& cfg) {
  if (!is_norm(cfg)) return {};
  return {"ln_final.hook_scale", "ln_final.hook_normalized"};
}

std::string shape_str(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::optional<int64_t> hook_block_index(const std::string& name) {
  static const std::string pre = "blocks.";
  if (name.compare(0, pre.size(), pre) != 0) return std::nullopt;
  size_t i = pre.size(), j = i;
  while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
  if (j == i || j >= name.size() || name[j] != '.' || j - i > 9) return std::nullopt;
  return std::stoll(name.substr(i, j - i));
}

std::vector<std::string> block_hook_suffixes(const ModelConfig& cfg) {
  const bool norm = is_norm(cfg), rotary = cfg.positional_embedding_type == "rotary";
  const bool post = cfg.use_normalization_before_and_after, attn_only = cfg.d_mlp == 0;
  std::vector<std::string> s{"hook_resid_pre"};
  if (norm) s.insert(s.end(), {"ln1.hook_scale", "ln1.hook_normalized"});
  s.insert(s.end(), {"attn.hook_q", "attn.hook_k", "attn.hook_v"});
  if (rotary) s.insert(s.end(), {"attn.hook_rot_q", "attn.hook_rot_k"});
  s.insert(s.end(),
           {"attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "attn.hook_result"});
  if (post) s.insert(s.end(), {"ln1_post.hook_scale", "ln1_post.hook_normalized"});
  s.push_back("hook_attn_out");
  if (!attn_only) {
    s.push_back("hook_resid_mid");
    if (norm) s.insert(s.end(), {"ln2.hook_scale", "ln2.hook_normalized"});
    s.push_back("mlp.hook_pre");
    if (cfg.gated_mlp) s.push_back("mlp.hook_pre_linear");
    s.push_back("mlp.hook_post");
    if (post) s.insert(s.end(), {"ln2_post.hook_scale", "ln2_post.hook_normalized"});
    s.push_back("hook_mlp_out");
  }
  s.push_back("hook_resid_post");
  return s;
}

std::vector<std::string> model_hook_names(const ModelConfig& cfg) {
  std::vector<std::string> out = pre_block_hooks(cfg);
  const auto suffixes = block_hook_suffixes(cfg);
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (const auto& s : suffixes) out.push_back(fmt::format("blocks.{}.{}", l, s));
  for (auto& n : post_block_hooks(cfg)) out.push_back(n);
  return out;
}

void check_hook_name(const ModelConfig& cfg, const std::string& name) {
  if (auto layer = hook_block_index(name)) {
    if (*layer >= cfg.n_layers)
      fail("unknown hook '{}': block {} out of range, the model has {} blocks (0..{})", name,
           *layer, cfg.n_layers, cfg.n_layers - 1);
    const std::string prefix = fmt::format("blocks.{}.", *layer);
    const auto suffixes = block_hook_suffixes(cfg);
    const std::string rest = name.substr(prefix.size());
    for (const auto& s : suffixes)
      if (s == rest) return;
    std::vector<std::string> valid;
    for (const auto& s : suffixes) valid.push_back(prefix + s);
    fail("unknown hook '{}'; valid hooks of block {}: {}", name, *layer, join(valid));
  }
  auto pre = pre_block_hooks(cfg), post = post_block_hooks(cfg);
  for (const auto& n : pre)
    if (n == name) return;
  for (const auto& n : post)
    if (n == name) return;
  pre.insert(pre.end(), post.begin(), post.end());
  fail(
      "unknown hook '{}'; valid hooks outside the blocks: {}; block hooks are "
      "blocks.<0..{}>.<name>, e.g. blocks.0.hook_resid_pre",
      name, join(pre), cfg.n_layers - 1);
}

std::vector<int64_t> model_hook_shape(const ModelConfig& cfg, const std::string& name,
                                      int64_t batch, int64_t pos) {
  check_hook_name(cfg, name);
  auto ends_with = [&](const char* suffix) {
    std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  const int64_t h = cfg.n_heads, kv = cfg.n_key_value_heads, e = cfg.d_head;
  if (ends_with("hook_scale")) return {batch, pos, 1};
  if (ends_with("attn.hook_q") || ends_with("attn.hook_rot_q") || ends_with("attn.hook_z"))
    return {batch, pos, h, e};
  if (ends_with("attn.hook_k") || ends_with("attn.hook_v") || ends_with("attn.hook_rot_k"))
    return {batch, pos, kv, e};
  if (ends_with("attn.hook_attn_scores") || ends_with("attn.hook_pattern"))
    return {batch, h, pos, pos};
  if (ends_with("attn.hook_result")) return {batch, pos, h, cfg.d_model};
  if (ends_with("mlp.hook_pre") || ends_with("mlp.hook_pre_linear") || ends_with("mlp.hook_post"))
    return {batch, pos, cfg.d_mlp};
  return {batch, pos, cfg.d_model};
}

int64_t model_hook_layer(const ModelConfig& cfg, const std::string& name) {
  check_hook_name(cfg, name);
  if (auto layer = hook_block_index(name)) return *layer;
  if (name.compare(0, 9, "ln_final.") == 0) return cfg.n_layers - 1;
  return 0;
}

HookState::HookState(const std::vector<Hook>& hooks, const std::vector<std::string>& cache_names,
                     bool stop_when_cached)
    : pending_(cache_names.begin(), cache_names.end()), stop_when_cached_(stop_when_cached) {
  for (const auto& h : hooks) {
    if (!h.fn) fail("hook '{}' has no function", h.name);
    fns_[h.name].push_back(&h.fn);
  }
}

bool HookState::wants(const std::string& name) const {
  return fns_.count(name) > 0 || pending_.count(name) > 0;
}

at::Tensor HookState::operator()(const std::string& name, at::Tensor act) {
  auto it = fns_.find(name);
  if (it != fns_.end()) {
    for (const HookFn* fn : it->second) {
      at::Tensor out = (*fn)(act, name);
      if (!out.defined() || out.sizes() != act.sizes())
        fail("hook '{}' returned shape {}, expected the activation's shape {}", name,
             out.defined() ? shape_str(out.sizes()) : std::string("(undefined)"),
             shape_str(act.sizes()));
      act = out.to(act.dtype());
    }
  }
  auto p = pending_.find(name);
  if (p != pending_.end()) {
    cache_[name] = act.contiguous();  // consumers write caches to disk; views would pin more memory
    pending_.erase(p);
    if (stop_when_cached_ && pending_.empty()) throw StopForward{};
  }
  return act;
}

int64_t sae_hook_width(const ModelConfig& cfg, const std::string& hook,
                       std::optional<int64_t> head) {
  const auto shape = model_hook_shape(cfg, hook, 1, 2);  // checks the name
  if (shape.size() == 4 && hook.find("pattern") == std::string::npos &&
      hook.find("attn_scores") == std::string::npos) {
    if (head) {
      if (*head < 0 || *head >= shape[2])
        fail("hook_head_index = {}: {} has {} heads", *head, hook, shape[2]);
      return shape[3];
    }
    return shape[2] * shape[3];
  }
  if (shape.size() == 3) {
    if (head)
      fail("hook_head_index = {}: {} has no head axis (use a per-head hook such as hook_z)", *head,
           hook);
    return shape[2];
  }
  fail(
      "hook_name = '{}': SAEs train on [batch, pos, d] or per-head [batch, pos, head, d_head] "
      "hooks; this one is not",
      hook);
}

}  // namespace saelab
