// Tiny random models of every family, built in the tests from canonical weight maps
// (model_config.h). Shared by test_transformer*.cpp and test_hooks*.cpp.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "saelab/model/model_config.h"
#include "saelab/model/transformer.h"

namespace saelab::test {

using Weights = std::map<std::string, at::Tensor>;

inline ModelConfig tiny_gpt2() {
  ModelConfig c;
  c.model_name = "tiny-gpt2";
  c.family = "gpt2";
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_key_value_heads = 4;
  c.d_head = 4;
  c.d_mlp = 32;
  c.d_vocab = 50;
  c.n_ctx = 16;
  c.act_fn = "gelu_new";
  c.normalization_type = "LN";
  c.eps = 1e-5;
  c.positional_embedding_type = "standard";
  return c;
}

inline ModelConfig tiny_neo() {
  ModelConfig c = tiny_gpt2();
  c.model_name = "tiny-neo";
  c.family = "gpt_neo";
  c.use_attn_scale = false;
  c.attn_types = {"local", "global"};
  c.window_size = 3;
  return c;
}

inline ModelConfig tiny_othello() {
  ModelConfig c = tiny_gpt2();
  c.model_name = "tiny-othello";
  c.family = "othello_mingpt";
  c.act_fn = "gelu";
  c.d_vocab = 61;
  return c;
}

inline ModelConfig tiny_shortformer() {
  ModelConfig c = tiny_gpt2();
  c.model_name = "tiny-attn-only";
  c.family = "attn_only_shortformer";
  c.d_mlp = 0;
  c.act_fn = "";
  c.normalization_type = "none";
  c.positional_embedding_type = "shortformer";
  return c;
}

inline ModelConfig tiny_llama() {
  ModelConfig c;
  c.model_name = "tiny-llama";
  c.family = "llama";
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_key_value_heads = 2;
  c.d_head = 8;
  c.d_mlp = 48;
  c.d_vocab = 50;
  c.n_ctx = 32;
  c.act_fn = "silu";
  c.gated_mlp = true;
  c.normalization_type = "RMS";
  c.eps = 1e-6;
  c.positional_embedding_type = "rotary";
  c.rotary_dim = 8;
  c.rotary_base = 10000.0;
  return c;
}

inline ModelConfig tiny_qwen2() {
  ModelConfig c = tiny_llama();
  c.model_name = "tiny-qwen2";
  c.family = "qwen2";
  c.attn_qkv_bias = true;
  c.rotary_base = 1000000.0;
  return c;
}

inline ModelConfig tiny_mistral() {
  ModelConfig c = tiny_llama();
  c.model_name = "tiny-mistral";
  c.family = "mistral";
  c.attn_types = {"local", "local"};
  c.window_size = 3;
  return c;
}

inline ModelConfig tiny_gemma2() {
  ModelConfig c;
  c.model_name = "tiny-gemma2";
  c.family = "gemma2";
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_key_value_heads = 2;
  c.d_head = 8;
  c.d_mlp = 32;
  c.d_vocab = 50;
  c.n_ctx = 32;
  c.act_fn = "gelu_pytorch_tanh";
  c.gated_mlp = true;
  c.normalization_type = "RMS";
  c.eps = 1e-6;
  c.positional_embedding_type = "rotary";
  c.rotary_dim = 8;
  c.rotary_base = 10000.0;
  c.attn_scale = std::sqrt(12.0);  // query_pre_attn_scalar 12 (deliberately != d_head)
  c.attn_types = {"local", "global"};
  c.window_size = 3;
  c.attn_scores_soft_cap = 50.0;
  c.output_logits_soft_cap = 30.0;
  c.use_normalization_before_and_after = true;
  c.embedding_scale = std::sqrt(16.0);
  return c;
}

inline std::vector<ModelConfig> all_tiny_configs() {
  return {tiny_gpt2(),  tiny_neo(),   tiny_othello(), tiny_shortformer(),
          tiny_llama(), tiny_qwen2(), tiny_mistral(), tiny_gemma2()};
}

// Random canonical weights for cfg; `scale` multiplies the matrices (large scales drive the soft
// caps). Biases present for LN models (Neo: no q/k/v bias) and Qwen2's q/k/v.
inline Weights tiny_weights(const ModelConfig& c, uint64_t seed, double scale = 1.0) {
  at::manual_seed(seed);
  const int64_t d = c.d_model, h = c.n_heads, kv = c.n_key_value_heads, e = c.d_head, m = c.d_mlp,
                V = c.d_vocab;
  const bool ln = c.normalization_type == "LN", rms = c.normalization_type == "RMS";
  const bool biases = ln;  // GPT-2 style models carry biases everywhere
  auto mat = [&](std::vector<int64_t> shape, double fan_in) {
    return torch::randn(shape) * (scale / std::sqrt(fan_in));
  };
  auto vec = [&](int64_t n) { return torch::randn({n}) * 0.1; };
  Weights w;
  w["embed.W_E"] = torch::randn({V, d});
  if (c.positional_embedding_type == "standard" || c.positional_embedding_type == "shortformer")
    w["pos_embed.W_pos"] = torch::randn({c.n_ctx, d}) * 0.5;
  auto norm = [&](const std::string& name) {
    if (ln || rms) w[name + ".w"] = 1.0 + torch::randn({d}) * 0.2;
    if (ln) w[name + ".b"] = vec(d);
  };
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    norm(b + "ln1");
    w[b + "attn.W_Q"] = mat({h, d, e}, d) * 2.0;
    w[b + "attn.W_K"] = mat({kv, d, e}, d) * 2.0;
    w[b + "attn.W_V"] = mat({kv, d, e}, d);
    w[b + "attn.W_O"] = mat({h, e, d}, h * e);
    if ((biases && c.family != "gpt_neo") || c.attn_qkv_bias) {
      w[b + "attn.b_Q"] = torch::randn({h, e}) * 0.3;
      w[b + "attn.b_K"] = torch::randn({kv, e}) * 0.3;
      w[b + "attn.b_V"] = torch::randn({kv, e}) * 0.3;
    }
    if (biases) w[b + "attn.b_O"] = vec(d);
    if (c.use_normalization_before_and_after) norm(b + "ln1_post");
    if (m > 0) {
      norm(b + "ln2");
      w[b + "mlp.W_in"] = mat({d, m}, d);
      if (c.gated_mlp) w[b + "mlp.W_gate"] = mat({d, m}, d);
      w[b + "mlp.W_out"] = mat({m, d}, m);
      if (biases) {
        w[b + "mlp.b_in"] = vec(m);
        w[b + "mlp.b_out"] = vec(d);
      }
      if (c.use_normalization_before_and_after) norm(b + "ln2_post");
    }
  }
  norm("ln_final");
  w["unembed.W_U"] = mat({d, V}, d) * 3.0;
  if (biases) w["unembed.b_U"] = vec(V);
  return w;
}

inline at::Tensor random_tokens(const ModelConfig& c, int64_t batch, int64_t pos, uint64_t seed) {
  at::manual_seed(seed);
  return torch::randint(0, c.d_vocab, {batch, pos}, torch::kLong);
}

// Largest absolute difference, in float64.
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace saelab::test
