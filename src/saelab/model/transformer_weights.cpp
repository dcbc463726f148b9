// Checking a ModelConfig and its canonical weights before anything runs, and preparing the
// weights for the forward pass (heads flattened, q/k/v fused). Every fault is one saelab::Error
// naming the config field or the weight.
#include <torch/torch.h>

#include <set>

#include "saelab/core/error.h"
#include "saelab/model/rotary.h"
#include "saelab/model/transformer.h"
#include "saelab/model/transformer_parts.h"

namespace saelab {

namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

struct Expected {
  std::string name;
  std::vector<int64_t> shape;
  bool required;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// TransformerLens state dicts carry these buffers; they are recomputed here.
bool is_tl_buffer(const std::string& name) {
  return ends_with(name, ".mask") || ends_with(name, ".IGNORE") || ends_with(name, ".rotary_sin") ||
         ends_with(name, ".rotary_cos");
}

void check_config(ModelConfig& c) {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) fail("model config '{}': {} must be positive, got {}", c.model_name, field, v);
  };
  positive(c.d_model, "d_model");
  positive(c.n_layers, "n_layers");
  positive(c.n_heads, "n_heads");
  positive(c.d_head, "d_head");
  positive(c.d_vocab, "d_vocab");
  if (c.n_key_value_heads == 0) c.n_key_value_heads = c.n_heads;
  if (c.n_key_value_heads < 0 || c.n_heads % c.n_key_value_heads != 0)
    fail("model config '{}': n_key_value_heads {} must divide n_heads {}", c.model_name,
         c.n_key_value_heads, c.n_heads);
  if (c.d_mlp < 0) fail("model config '{}': d_mlp must be >= 0, got {}", c.model_name, c.d_mlp);
  if (c.d_mlp > 0) check_activation_name(c.act_fn);
  const NormKind kind = norm_kind(c);
  if (c.use_normalization_before_and_after && kind == NormKind::None)
    fail("model config '{}': use_normalization_before_and_after needs normalization_type LN or RMS",
         c.model_name);
  const std::string& p = c.positional_embedding_type;
  if (p != "standard" && p != "shortformer" && p != "rotary" && p != "none")
    fail(
        "model config '{}': positional_embedding_type '{}' is not supported; expected standard, "
        "shortformer, rotary or none",
        c.model_name, p);
  if ((p == "standard" || p == "shortformer") && c.n_ctx <= 0)
    fail("model config '{}': n_ctx must be positive for learned positions, got {}", c.model_name,
         c.n_ctx);
  if (p == "rotary") {
    const int64_t r = effective_rotary_dim(c);
    if (r <= 0 || r % 2 != 0 || r > c.d_head)
      fail("model config '{}': rotary_dim {} must be even and at most d_head {}", c.model_name, r,
           c.d_head);
    if (c.rotary_base <= 0) fail("model config '{}': rotary_base must be positive", c.model_name);
  }
  if (!c.attn_types.empty() && int64_t(c.attn_types.size()) != c.n_layers)
    fail("model config '{}': attn_types has {} entries, expected one per layer ({})", c.model_name,
         c.attn_types.size(), c.n_layers);
  for (size_t l = 0; l < c.attn_types.size(); ++l) {
    const std::string& t = c.attn_types[l];
    if (t != "global" && t != "local")
      fail("model config '{}': attn_types[{}] is '{}', expected 'global' or 'local'", c.model_name,
           l, t);
    if (t == "local" && c.window_size < 1)
      fail("model config '{}': layer {} is local but window_size is {} (expected >= 1)",
           c.model_name, l, c.window_size);
  }
  if (c.attn_scores_soft_cap < 0 || c.output_logits_soft_cap < 0)
    fail("model config '{}': soft caps must be >= 0 (0 = off)", c.model_name);
}

std::vector<Expected> expected_weights(const ModelConfig& c) {
  const int64_t d = c.d_model, V = c.d_vocab, h = c.n_heads, kv = c.n_key_value_heads, e = c.d_head,
                m = c.d_mlp;
  const NormKind kind = norm_kind(c);
  // LNPre / RMSPre (weights folded away): the norm weights may be absent (= 1).
  const bool norm_w_required = !ends_with(c.normalization_type, "Pre");
  std::vector<Expected> out{{"embed.W_E", {V, d}, true}};
  const std::string& p = c.positional_embedding_type;
  if (p == "standard" || p == "shortformer") out.push_back({"pos_embed.W_pos", {c.n_ctx, d}, true});
  auto norm = [&](const std::string& name) {
    if (kind == NormKind::None) return;
    out.push_back({name + ".w", {d}, norm_w_required});
    if (kind == NormKind::LN) out.push_back({name + ".b", {d}, false});
  };
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    norm(b + "ln1");
    out.push_back({b + "attn.W_Q", {h, d, e}, true});
    out.push_back({b + "attn.W_K", {kv, d, e}, true});
    out.push_back({b + "attn.W_V", {kv, d, e}, true});
    out.push_back({b + "attn.W_O", {h, e, d}, true});
    out.push_back({b + "attn.b_Q", {h, e}, false});
    out.push_back({b + "attn.b_K", {kv, e}, false});
    out.push_back({b + "attn.b_V", {kv, e}, false});
    out.push_back({b + "attn.b_O", {d}, false});
    if (c.use_normalization_before_and_after) norm(b + "ln1_post");
    if (m == 0) continue;
    norm(b + "ln2");
    out.push_back({b + "mlp.W_in", {d, m}, true});
    out.push_back({b + "mlp.b_in", {m}, false});
    if (c.gated_mlp) out.push_back({b + "mlp.W_gate", {d, m}, true});
    out.push_back({b + "mlp.W_out", {m, d}, true});
    out.push_back({b + "mlp.b_out", {d}, false});
    if (c.use_normalization_before_and_after) norm(b + "ln2_post");
  }
  norm("ln_final");
  out.push_back({"unembed.W_U", {d, V}, true});
  out.push_back({"unembed.b_U", {V}, false});
  return out;
}

}  // namespace

// Validates cfg_ and weights_ in place (dtype unified, buffers dropped).
void validate_model(ModelConfig& cfg, std::map<std::string, at::Tensor>& weights) {
  check_config(cfg);
  const auto expected = expected_weights(cfg);
  std::set<std::string> known;
  for (const auto& x : expected) known.insert(x.name);
  std::vector<std::string> unexpected;
  for (auto it = weights.begin(); it != weights.end();) {
    if (is_tl_buffer(it->first)) {
      it = weights.erase(it);
      continue;
    }
    if (!known.count(it->first)) unexpected.push_back(it->first);
    ++it;
  }
  if (!unexpected.empty()) {
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 8; ++i)
      list += (i ? ", '" : "'") + unexpected[i] + "'";
    if (unexpected.size() > 8) list += fmt::format(" and {} more", unexpected.size() - 8);
    fail(
        "model weights of '{}': unexpected tensor(s) {} for a {} model (normalization {}, "
        "positions {}, d_mlp {}, gated {})",
        cfg.model_name, list, cfg.family.empty() ? std::string("?") : cfg.family,
        cfg.normalization_type, cfg.positional_embedding_type, cfg.d_mlp, cfg.gated_mlp);
  }
  at::ScalarType dtype = at::kFloat;
  auto we = weights.find("embed.W_E");
  if (we != weights.end() && we->second.defined() && we->second.scalar_type() == at::kDouble)
    dtype = at::kDouble;
  for (const auto& x : expected) {
    auto it = weights.find(x.name);
    if (it == weights.end() || !it->second.defined()) {
      if (x.required)
        fail("model weights of '{}': missing '{}' (expected shape {})", cfg.model_name, x.name,
             shape_str(x.shape));
      continue;
    }
    at::Tensor& t = it->second;
    if (!at::isFloatingType(t.scalar_type()))
      fail("model weights of '{}': '{}' has dtype {}, expected a floating-point tensor",
           cfg.model_name, x.name, std::string(c10::toString(t.scalar_type())));
    if (t.sizes() != at::IntArrayRef(x.shape))
      fail(
          "model weights of '{}': '{}' has shape {}, expected {} (d_model {}, n_heads {}, "
          "n_key_value_heads {}, d_head {}, d_mlp {}, d_vocab {}, n_ctx {})",
          cfg.model_name, x.name, shape_str(t.sizes()), shape_str(x.shape), cfg.d_model,
          cfg.n_heads, cfg.n_key_value_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx);
    t = t.to(dtype).contiguous();
  }
}

std::unique_ptr<TransformerWeights> prepare_weights(const ModelConfig& c,
                                                    const std::map<std::string, at::Tensor>& w) {
  auto get = [&](const std::string& name) {
    auto it = w.find(name);
    return it == w.end() ? at::Tensor() : it->second;
  };
  auto tw = std::make_unique<TransformerWeights>();
  tw->W_E = get("embed.W_E");
  tw->W_pos = get("pos_embed.W_pos");
  tw->W_U = get("unembed.W_U");
  tw->b_U = get("unembed.b_U");
  tw->ln_final = {get("ln_final.w"), get("ln_final.b")};
  const int64_t d = c.d_model, h = c.n_heads, kv = c.n_key_value_heads, e = c.d_head;
  // [heads, d_model, d_head] -> [d_model, heads * d_head], head-major like HF's q_proj rows.
  auto flat_in = [&](const at::Tensor& W, int64_t heads) {
    return W.permute({1, 0, 2}).reshape({d, heads * e});
  };
  auto flat_b = [&](const at::Tensor& b, int64_t heads) {
    return b.defined() ? b.reshape({heads * e}) : at::Tensor();
  };
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    BlockWeights bw;
    bw.ln1 = {get(p + "ln1.w"), get(p + "ln1.b")};
    bw.ln2 = {get(p + "ln2.w"), get(p + "ln2.b")};
    bw.ln1_post = {get(p + "ln1_post.w"), get(p + "ln1_post.b")};
    bw.ln2_post = {get(p + "ln2_post.w"), get(p + "ln2_post.b")};
    AttnWeights& a = bw.attn;
    // One fused [d_model, (h + 2 kv) * d_head] matrix; W_Q / W_K / W_V are column views of it.
    a.W_QKV = at::cat({flat_in(get(p + "attn.W_Q"), h), flat_in(get(p + "attn.W_K"), kv),
                       flat_in(get(p + "attn.W_V"), kv)},
                      1);
    a.W_Q = a.W_QKV.narrow(1, 0, h * e);
    a.W_K = a.W_QKV.narrow(1, h * e, kv * e);
    a.W_V = a.W_QKV.narrow(1, (h + kv) * e, kv * e);
    a.b_Q = flat_b(get(p + "attn.b_Q"), h);
    a.b_K = flat_b(get(p + "attn.b_K"), kv);
    a.b_V = flat_b(get(p + "attn.b_V"), kv);
    if (a.b_Q.defined() || a.b_K.defined() || a.b_V.defined()) {
      auto opts = a.W_Q.options();
      a.b_QKV = at::cat({a.b_Q.defined() ? a.b_Q : at::zeros({h * e}, opts),
                         a.b_K.defined() ? a.b_K : at::zeros({kv * e}, opts),
                         a.b_V.defined() ? a.b_V : at::zeros({kv * e}, opts)});
    }
    a.W_O = get(p + "attn.W_O");
    a.W_O_flat = a.W_O.reshape({h * e, d});
    a.b_O = get(p + "attn.b_O");
    a.local = !c.attn_types.empty() && c.attn_types[l] == "local";
    bw.mlp = {get(p + "mlp.W_in"), get(p + "mlp.b_in"), get(p + "mlp.W_gate"), get(p + "mlp.W_out"),
              get(p + "mlp.b_out")};
    tw->blocks.push_back(std::move(bw));
  }
  return tw;
}

}  // namespace saelab
