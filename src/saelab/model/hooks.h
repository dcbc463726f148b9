// Hook points in TransformerLens's names: the catalogue of which hooks a model
// has and their shapes, and the per-run state that reads, replaces and caches activations.
// Transformer (transformer.h) is the user-facing API; this header is what it and its parts share.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "saelab/model/model_config.h"

namespace saelab {

// A hook reads the activation at `name` and returns the activation to continue with: return
// `act` to only read it, or a tensor of the same shape to replace it (SAE splices, ablations).
using HookFn = std::function<at::Tensor(const at::Tensor& act, const std::string& name)>;
struct Hook {
  std::string name;
  HookFn fn;
};

// "blocks.L.<rest>" -> L (no check of <rest>); any other name -> nullopt.
std::optional<int64_t> hook_block_index(const std::string& name);

// The hooks of a model, in the order the forward pass reaches them.
//   global (before the blocks): hook_embed, hook_pos_embed (learned / shortformer positions)
//   per block: hook_resid_pre, ln1.hook_scale, ln1.hook_normalized, attn.hook_q, attn.hook_k,
//     attn.hook_v, attn.hook_rot_q, attn.hook_rot_k (rotary), attn.hook_attn_scores,
//     attn.hook_pattern, attn.hook_z, attn.hook_result (computed only when asked for),
//     ln1_post.* (Gemma-2), hook_attn_out, hook_resid_mid, ln2.*, mlp.hook_pre,
//     mlp.hook_pre_linear (gated), mlp.hook_post, ln2_post.* (Gemma-2), hook_mlp_out,
//     hook_resid_post
//   global (after the blocks): ln_final.hook_scale, ln_final.hook_normalized
std::vector<std::string> model_hook_names(const ModelConfig& cfg);
std::vector<std::string> block_hook_suffixes(const ModelConfig& cfg);  // "hook_resid_pre", ...
// Throws saelab::Error for a name the model does not have, listing the valid hooks of that block
// (or the global hooks and the block range).
void check_hook_name(const ModelConfig& cfg, const std::string& name);
// TransformerLens shapes with the leading batch axis, e.g. attn.hook_pattern [batch, head, q, k].
std::vector<int64_t> model_hook_shape(const ModelConfig& cfg, const std::string& name,
                                      int64_t batch, int64_t pos);
// The block a hook belongs to, as SAELens's hook_layer: blocks.L.* -> L, hook_embed and
// hook_pos_embed -> 0, ln_final.* -> n_layers - 1.
int64_t model_hook_layer(const ModelConfig& cfg, const std::string& name);
// The width of the rows an SAE at `name` reads: d of a [batch, pos, d] hook; for a per-head hook
// [batch, pos, head, d_head], d_head with a head index, else head·d_head (hook_z flattened as
// SAELens does). Attention patterns and scores are not SAE inputs. Errors name the hook and the
// head index.
int64_t sae_hook_width(const ModelConfig& cfg, const std::string& name,
                       std::optional<int64_t> head_index);

// One forward pass's hooks and cache. The runtime calls operator() at every hook point.
class HookState {
 public:
  // Hooks run in the given order; the cache records each named activation after the hooks ran.
  // With stop_when_cached, operator() throws StopForward once every cache name has been recorded
  // (run_with_cache without logits stops there).
  HookState(const std::vector<Hook>& hooks, const std::vector<std::string>& cache_names,
            bool stop_when_cached);
  struct StopForward {};

  bool empty() const { return fns_.empty() && pending_.empty(); }
  // True when a hook or the cache wants `name` (for activations computed only on demand).
  bool wants(const std::string& name) const;
  at::Tensor operator()(const std::string& name, at::Tensor act);
  std::map<std::string, at::Tensor>& cache() { return cache_; }

 private:
  std::map<std::string, std::vector<const HookFn*>> fns_;
  std::set<std::string> pending_;  // cache names not yet recorded
  std::map<std::string, at::Tensor> cache_;
  bool stop_when_cached_;
};

}  // namespace saelab
