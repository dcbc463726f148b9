// Llama, Mistral and Qwen2 (Hugging Face *ForCausalLM) -> TransformerLens names, as TL's
// convert_llama_weights / convert_mistral_weights / convert_qwen2_weights: q/k/v/o nn.Linear
// (k/v with n_key_value_heads under GQA), SwiGLU gate/up/down, RMSNorm weights as stored (these
// families multiply by w, not 1 + w). Qwen2 (and Llama with attention_bias) has q/k/v biases.
#include <torch/torch.h>

#include "saelab/model/loader_internal.h"

namespace saelab::detail {

StateDict convert_llama(const ModelConfig& cfg, const HfTensors& t) {
  const int64_t D = cfg.d_model, H = cfg.n_heads, K = cfg.n_key_value_heads, Dh = cfg.d_head,
                M = cfg.d_mlp;
  StateDict sd;
  sd["embed.W_E"] = t.get("embed_tokens.weight", {cfg.d_vocab, D});
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string h = "layers." + std::to_string(l) + ".";
    const std::string b = "blocks." + std::to_string(l) + ".";
    sd[b + "ln1.w"] = t.get(h + "input_layernorm.weight", {D});
    sd[b + "attn.W_Q"] =
        heads_in_from_linear(t.get(h + "self_attn.q_proj.weight", {H * Dh, D}), H, Dh);
    sd[b + "attn.W_K"] =
        heads_in_from_linear(t.get(h + "self_attn.k_proj.weight", {K * Dh, D}), K, Dh);
    sd[b + "attn.W_V"] =
        heads_in_from_linear(t.get(h + "self_attn.v_proj.weight", {K * Dh, D}), K, Dh);
    sd[b + "attn.W_O"] =
        heads_out_from_linear(t.get(h + "self_attn.o_proj.weight", {D, H * Dh}), H, Dh);
    if (cfg.attn_qkv_bias) {
      sd[b + "attn.b_Q"] = t.get(h + "self_attn.q_proj.bias", {H * Dh}).reshape({H, Dh});
      sd[b + "attn.b_K"] = t.get(h + "self_attn.k_proj.bias", {K * Dh}).reshape({K, Dh});
      sd[b + "attn.b_V"] = t.get(h + "self_attn.v_proj.bias", {K * Dh}).reshape({K, Dh});
      if (t.has(h + "self_attn.o_proj.bias"))
        sd[b + "attn.b_O"] = t.get(h + "self_attn.o_proj.bias", {D});
    }
    sd[b + "ln2.w"] = t.get(h + "post_attention_layernorm.weight", {D});
    sd[b + "mlp.W_in"] = t.get(h + "mlp.up_proj.weight", {M, D}).t().contiguous();
    sd[b + "mlp.W_gate"] = t.get(h + "mlp.gate_proj.weight", {M, D}).t().contiguous();
    sd[b + "mlp.W_out"] = t.get(h + "mlp.down_proj.weight", {D, M}).t().contiguous();
  }
  sd["ln_final.w"] = t.get("norm.weight", {D});
  sd["unembed.W_U"] = unembed_from(t, "lm_head.weight", sd["embed.W_E"], cfg.tie_word_embeddings);
  return sd;
}

}  // namespace saelab::detail
