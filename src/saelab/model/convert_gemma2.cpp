// Gemma-2 (Hugging Face Gemma2ForCausalLM) -> TransformerLens names, as TL's convert_gemma_weights.
// Gemma's RMSNorm multiplies by (1 + w): the canonical weights store that effective scale. Four
// norms per block: input (ln1), post-attention (ln1_post), pre-feedforward (ln2), post-feedforward
// (ln2_post). The embedding is stored unscaled; the runtime multiplies by cfg.embedding_scale
// (sqrt(d_model)), and the tied unembedding is the unscaled W_E transposed.
#include <torch/torch.h>

#include "saelab/model/loader_internal.h"

namespace saelab::detail {

StateDict convert_gemma2(const ModelConfig& cfg, const HfTensors& t) {
  const int64_t D = cfg.d_model, H = cfg.n_heads, K = cfg.n_key_value_heads, Dh = cfg.d_head,
                M = cfg.d_mlp;
  auto norm = [&](const std::string& name) { return (t.get(name, {D}) + 1.0f).contiguous(); };
  StateDict sd;
  sd["embed.W_E"] = t.get("embed_tokens.weight", {cfg.d_vocab, D});
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string h = "layers." + std::to_string(l) + ".";
    const std::string b = "blocks." + std::to_string(l) + ".";
    sd[b + "ln1.w"] = norm(h + "input_layernorm.weight");
    sd[b + "ln1_post.w"] = norm(h + "post_attention_layernorm.weight");
    sd[b + "ln2.w"] = norm(h + "pre_feedforward_layernorm.weight");
    sd[b + "ln2_post.w"] = norm(h + "post_feedforward_layernorm.weight");
    sd[b + "attn.W_Q"] =
        heads_in_from_linear(t.get(h + "self_attn.q_proj.weight", {H * Dh, D}), H, Dh);
    sd[b + "attn.W_K"] =
        heads_in_from_linear(t.get(h + "self_attn.k_proj.weight", {K * Dh, D}), K, Dh);
    sd[b + "attn.W_V"] =
        heads_in_from_linear(t.get(h + "self_attn.v_proj.weight", {K * Dh, D}), K, Dh);
    sd[b + "attn.W_O"] =
        heads_out_from_linear(t.get(h + "self_attn.o_proj.weight", {D, H * Dh}), H, Dh);
    sd[b + "mlp.W_in"] = t.get(h + "mlp.up_proj.weight", {M, D}).t().contiguous();
    sd[b + "mlp.W_gate"] = t.get(h + "mlp.gate_proj.weight", {M, D}).t().contiguous();
    sd[b + "mlp.W_out"] = t.get(h + "mlp.down_proj.weight", {D, M}).t().contiguous();
  }
  sd["ln_final.w"] = norm("norm.weight");
  sd["unembed.W_U"] = unembed_from(t, "lm_head.weight", sd["embed.W_E"], cfg.tie_word_embeddings);
  return sd;
}

}  // namespace saelab::detail
