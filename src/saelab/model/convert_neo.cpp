// GPT-Neo (Hugging Face GPTNeoForCausalLM, e.g. TinyStories) -> TransformerLens names, as TL's
// convert_neo_weights: separate q/k/v nn.Linear without bias, out_proj with bias, MLP as nn.Linear.
// The learned positions are trimmed to n_ctx (TL trims TinyStories to 512).
#include <torch/torch.h>

#include "saelab/model/loader_internal.h"

namespace saelab::detail {

StateDict convert_gpt_neo(const ModelConfig& cfg, const HfTensors& t) {
  const int64_t D = cfg.d_model, H = cfg.n_heads, Dh = cfg.d_head, M = cfg.d_mlp, HD = H * Dh;
  StateDict sd;
  sd["embed.W_E"] = t.get("wte.weight", {cfg.d_vocab, D});
  at::Tensor wpe = t.get("wpe.weight");
  if (wpe.size(0) < cfg.n_ctx || wpe.size(1) != D) t.get("wpe.weight", {cfg.n_ctx, D});  // throws
  sd["pos_embed.W_pos"] = wpe.slice(0, 0, cfg.n_ctx).contiguous();
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    const std::string b = "blocks." + std::to_string(l) + ".";
    sd[b + "ln1.w"] = t.get(h + "ln_1.weight", {D});
    sd[b + "ln1.b"] = t.get(h + "ln_1.bias", {D});
    sd[b + "attn.W_Q"] =
        heads_in_from_linear(t.get(h + "attn.attention.q_proj.weight", {HD, D}), H, Dh);
    sd[b + "attn.W_K"] =
        heads_in_from_linear(t.get(h + "attn.attention.k_proj.weight", {HD, D}), H, Dh);
    sd[b + "attn.W_V"] =
        heads_in_from_linear(t.get(h + "attn.attention.v_proj.weight", {HD, D}), H, Dh);
    sd[b + "attn.W_O"] =
        heads_out_from_linear(t.get(h + "attn.attention.out_proj.weight", {D, HD}), H, Dh);
    sd[b + "attn.b_O"] = t.get(h + "attn.attention.out_proj.bias", {D});
    sd[b + "ln2.w"] = t.get(h + "ln_2.weight", {D});
    sd[b + "ln2.b"] = t.get(h + "ln_2.bias", {D});
    sd[b + "mlp.W_in"] = t.get(h + "mlp.c_fc.weight", {M, D}).t().contiguous();
    sd[b + "mlp.b_in"] = t.get(h + "mlp.c_fc.bias", {M});
    sd[b + "mlp.W_out"] = t.get(h + "mlp.c_proj.weight", {D, M}).t().contiguous();
    sd[b + "mlp.b_out"] = t.get(h + "mlp.c_proj.bias", {D});
  }
  sd["ln_final.w"] = t.get("ln_f.weight", {D});
  sd["ln_final.b"] = t.get("ln_f.bias", {D});
  sd["unembed.W_U"] = unembed_from(t, "lm_head.weight", sd["embed.W_E"], cfg.tie_word_embeddings);
  return sd;
}

}  // namespace saelab::detail
