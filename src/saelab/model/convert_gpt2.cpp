// GPT-2 (Hugging Face GPT2LMHeadModel) -> TransformerLens names, as TL's convert_gpt2_weights.
// GPT-2 stores its projections as Conv1D, whose weight is [in, out] (the transpose of nn.Linear),
// and fuses q, k, v into one c_attn of width 3 * d_model.
#include <torch/torch.h>

#include "saelab/model/loader_internal.h"

namespace saelab::detail {

StateDict convert_gpt2(const ModelConfig& cfg, const HfTensors& t) {
  const int64_t D = cfg.d_model, H = cfg.n_heads, Dh = cfg.d_head, M = cfg.d_mlp, HD = H * Dh;
  StateDict sd;
  sd["embed.W_E"] = t.get("wte.weight", {cfg.d_vocab, D});
  at::Tensor wpe = t.get("wpe.weight");
  if (wpe.size(0) < cfg.n_ctx || wpe.size(1) != D)
    t.get("wpe.weight", {cfg.n_ctx, D});  // throws with the shapes
  sd["pos_embed.W_pos"] = wpe.slice(0, 0, cfg.n_ctx).contiguous();
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    const std::string b = "blocks." + std::to_string(l) + ".";
    sd[b + "ln1.w"] = t.get(h + "ln_1.weight", {D});
    sd[b + "ln1.b"] = t.get(h + "ln_1.bias", {D});
    at::Tensor W = t.get(h + "attn.c_attn.weight", {D, 3 * HD});
    at::Tensor qkv_b = t.get(h + "attn.c_attn.bias", {3 * HD}).reshape({3, H, Dh});
    const char* names[3] = {"Q", "K", "V"};
    for (int i = 0; i < 3; ++i) {
      // einops "m (i h) -> i m h"
      sd[b + "attn.W_" + names[i]] =
          W.slice(1, i * HD, (i + 1) * HD).reshape({D, H, Dh}).permute({1, 0, 2}).contiguous();
      sd[b + "attn.b_" + names[i]] = qkv_b[i].contiguous();
    }
    sd[b + "attn.W_O"] = t.get(h + "attn.c_proj.weight", {HD, D}).reshape({H, Dh, D}).contiguous();
    sd[b + "attn.b_O"] = t.get(h + "attn.c_proj.bias", {D});
    sd[b + "ln2.w"] = t.get(h + "ln_2.weight", {D});
    sd[b + "ln2.b"] = t.get(h + "ln_2.bias", {D});
    sd[b + "mlp.W_in"] = t.get(h + "mlp.c_fc.weight", {D, M});
    sd[b + "mlp.b_in"] = t.get(h + "mlp.c_fc.bias", {M});
    sd[b + "mlp.W_out"] = t.get(h + "mlp.c_proj.weight", {M, D});
    sd[b + "mlp.b_out"] = t.get(h + "mlp.c_proj.bias", {D});
  }
  sd["ln_final.w"] = t.get("ln_f.weight", {D});
  sd["ln_final.b"] = t.get("ln_f.bias", {D});
  sd["unembed.W_U"] = unembed_from(t, "lm_head.weight", sd["embed.W_E"], cfg.tie_word_embeddings);
  sd["unembed.b_U"] = torch::zeros({cfg.d_vocab}, torch::kFloat);
  return sd;
}

}  // namespace saelab::detail
