// ModelConfig: the architecture of a transformer in TransformerLens's terms
// (HookedTransformerConfig field names), filled by the loaders (loader_*.cpp) from a Hugging Face
// config.json or a TL config. The runtime (transformer.cpp) reads only this and the canonical
// weights (see weights below).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saelab {

struct ModelConfig {
  std::string model_name;  // what the user asked for (alias, repo id or path)
  std::string family;      // "gpt2" | "gpt_neo" | "gemma2" | "llama" | "mistral" | "qwen2" |
                           // "attn_only_shortformer" | "othello_mingpt"
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_key_value_heads = 0;  // == n_heads without GQA
  int64_t d_head = 0;
  int64_t d_mlp = 0;  // 0 for attention-only models
  int64_t d_vocab = 0;
  int64_t n_ctx = 0;
  std::string act_fn;              // "gelu_new" | "gelu" | "gelu_pytorch_tanh" | "silu" | "relu"
  bool gated_mlp = false;          // GeGLU / SwiGLU: mlp.W_gate present
  std::string normalization_type;  // "LN" | "RMS" | "none"
  double eps = 1e-5;
  // "standard" (learned, added to the residual) | "shortformer" (added to Q/K inputs only) |
  // "rotary" | "none"
  std::string positional_embedding_type = "standard";
  int64_t rotary_dim = 0;  // usually d_head
  double rotary_base = 10000.0;
  bool use_attn_scale = true;  // false for GPT-Neo (no 1/sqrt(d_head))
  double attn_scale = 0.0;  // divide scores by this when > 0 (Gemma-2: sqrt(query_pre_attn_scalar))
  // Per layer: "global" or "local" attention, and the local window (keys within window-1 back).
  std::vector<std::string> attn_types;
  int64_t window_size = 0;
  double attn_scores_soft_cap = 0.0;                // 0 = off (Gemma-2: 50)
  double output_logits_soft_cap = 0.0;              // 0 = off (Gemma-2: 30)
  bool use_normalization_before_and_after = false;  // Gemma-2's post-attn / post-mlp norms
  double embedding_scale = 1.0;  // Gemma: sqrt(d_model); where TL applies it relative to
                                 // hook_embed: check TransformerLens
  bool attn_qkv_bias = false;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  bool tie_word_embeddings = false;
  // Llama-3.1/3.2 "rope_type": "llama3" frequency scaling (TransformerLens's NTK-by-parts names);
  // the HF fields are rope_scaling.factor, low_freq_factor, high_freq_factor,
  // original_max_position_embeddings.
  bool use_NTK_by_parts_rope = false;
  double NTK_by_parts_factor = 8.0;
  double NTK_by_parts_low_freq_factor = 1.0;
  double NTK_by_parts_high_freq_factor = 4.0;
  int64_t NTK_original_ctx_len = 8192;
};

// Conventions the runtime (transformer.h) relies on; loaders must produce exactly these:
// - embed.W_E is stored UNSCALED (as in Hugging Face); the runtime multiplies the looked-up rows
//   by embedding_scale before hook_embed, so hook_embed equals TransformerLens's (TL folds the
//   sqrt(d_model) into W_E instead). Tied unembeddings use the unscaled matrix: W_U = W_E^T.
// - Every RMSNorm weight is the effective scale (Gemma: 1 + w_hf), normalized = x / rms(x) * w.
// - attn_types empty means all "global"; a "local" layer lets query i see key j iff
//   i - window_size < j <= i (GPT-Neo local layers, Gemma-2 even layers, Mistral/Qwen2 sliding).
// - rotary_dim 0 means d_head. attn_scale > 0 overrides sqrt(d_head) (Gemma-2:
//   sqrt(query_pre_attn_scalar)); use_attn_scale false means no scaling at all (GPT-Neo).
// - d_mlp 0 means attention-only (no ln2, no MLP, no hook_resid_mid, as in TransformerLens).

}  // namespace saelab
