// Hugging Face / TransformerLens checkpoints -> canonical weights -> logits, for every family,
// against the float64 reference forward pass that make_tiny_models.py computes from the stored
// tensors with plain torch ops (an implementation independent of saelab's).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/test_load_fixtures.h"
#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"

namespace saelab {
namespace {

using test::tiny_model;

void check_logits(const std::string& family) {
  at::set_num_threads(1);
  LoadedModel m = load_model(tiny_model(family));
  auto expected = load_safetensors(tiny_model(family) + "/expected.safetensors");
  at::Tensor logits = m.model->forward(expected.at("input_ids"));
  test::expect_close_rel(logits, expected.at("logits"), 1e-4, family);
}

TEST(ConvertLogits, Gpt2Conv1dSafetensors) { check_logits("gpt2"); }
TEST(ConvertLogits, GptNeoPytorchModelBinWithLocalLayer) { check_logits("gpt_neo"); }
TEST(ConvertLogits, LlamaShardedGqaUntied) { check_logits("llama"); }
TEST(ConvertLogits, Qwen2BiasesTiedOneKvHead) { check_logits("qwen2"); }
TEST(ConvertLogits, MistralF16SlidingWindow) { check_logits("mistral"); }
TEST(ConvertLogits, Gemma2Bf16ShardedSoftcapsPostNorms) { check_logits("gemma2"); }
TEST(ConvertLogits, AttnOnlyShortformerPth) { check_logits("attn_only"); }
TEST(ConvertLogits, OthelloPth) { check_logits("othello"); }

TEST(ConvertConfig, FamiliesFromConfigJson) {
  const LoadedWeights g = load_model_weights(tiny_model("gpt2"));
  EXPECT_EQ(g.cfg.family, "gpt2");
  EXPECT_EQ(g.cfg.d_model, 16);
  EXPECT_EQ(g.cfg.d_mlp, 64);  // n_inner null -> 4 * n_embd
  EXPECT_EQ(g.cfg.act_fn, "gelu_new");
  const LoadedWeights n = load_model_weights(tiny_model("gpt_neo"));
  EXPECT_EQ(n.cfg.family, "gpt_neo");
  EXPECT_FALSE(n.cfg.use_attn_scale);
  EXPECT_EQ(n.cfg.attn_types, (std::vector<std::string>{"global", "local"}));
  EXPECT_EQ(n.cfg.window_size, 3);
  const LoadedWeights q = load_model_weights(tiny_model("qwen2"));
  EXPECT_EQ(q.cfg.family, "qwen2");
  EXPECT_EQ(q.cfg.n_key_value_heads, 1);
  EXPECT_DOUBLE_EQ(q.cfg.rotary_base, 1e6);
  EXPECT_TRUE(q.cfg.attn_qkv_bias);
  const LoadedWeights gm = load_model_weights(tiny_model("gemma2"));
  EXPECT_EQ(gm.cfg.family, "gemma2");
  EXPECT_EQ(gm.cfg.d_head, 8);  // head_dim, not d_model / n_heads
  EXPECT_DOUBLE_EQ(gm.cfg.attn_scale, std::sqrt(6.0));
  EXPECT_DOUBLE_EQ(gm.cfg.embedding_scale, 4.0);
  EXPECT_DOUBLE_EQ(gm.cfg.attn_scores_soft_cap, 1.5);
  EXPECT_DOUBLE_EQ(gm.cfg.output_logits_soft_cap, 2.0);
  EXPECT_EQ(gm.cfg.attn_types,
            (std::vector<std::string>{"local", "global"}));  // HF: even layers slide
  const LoadedWeights mi = load_model_weights(tiny_model("mistral"));
  EXPECT_EQ(mi.cfg.attn_types, (std::vector<std::string>{"local", "local"}));
  EXPECT_EQ(mi.cfg.window_size, 3);
}

TEST(ConvertWeights, CanonicalNamesShapesAndValues) {
  // GQA shapes: Llama has 4 query heads and 2 key/value heads of 4.
  const LoadedWeights l = load_model_weights(tiny_model("llama"));
  EXPECT_EQ(l.weights.at("blocks.1.attn.W_Q").sizes().vec(), (std::vector<int64_t>{4, 16, 4}));
  EXPECT_EQ(l.weights.at("blocks.1.attn.W_K").sizes().vec(), (std::vector<int64_t>{2, 16, 4}));
  EXPECT_EQ(l.weights.at("blocks.1.attn.W_O").sizes().vec(), (std::vector<int64_t>{4, 4, 16}));
  EXPECT_EQ(l.weights.at("blocks.0.mlp.W_gate").sizes().vec(), (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(l.weights.count("blocks.0.ln1.b"), 0u);  // RMS: no bias
  // W_K[h, m, d] is row h * d_head + d, column m of the stored k_proj (the shard written by
  // python).
  auto shard_index = read_json_file(tiny_model("llama") + "/model.safetensors.index.json");
  const std::string kname = "model.layers.1.self_attn.k_proj.weight";
  auto shard = load_safetensors(tiny_model("llama") + "/" +
                                shard_index["weight_map"][kname].get<std::string>());
  at::Tensor k = shard.at(kname);
  EXPECT_FLOAT_EQ(l.weights.at("blocks.1.attn.W_K")[1][5][3].item<float>(),
                  k[1 * 4 + 3][5].item<float>());
  // Gemma stores the effective RMSNorm scale 1 + w; its bf16 weights arrive as float32.
  const LoadedWeights g = load_model_weights(tiny_model("gemma2"));
  auto gidx = read_json_file(tiny_model("gemma2") + "/model.safetensors.index.json");
  const std::string nname = "model.layers.0.post_feedforward_layernorm.weight";
  auto gshard =
      load_safetensors(tiny_model("gemma2") + "/" + gidx["weight_map"][nname].get<std::string>());
  ASSERT_EQ(gshard.at(nname).scalar_type(), at::kBFloat16);
  EXPECT_EQ(g.weights.at("blocks.0.ln2_post.w").scalar_type(), at::kFloat);
  EXPECT_TRUE(
      at::allclose(g.weights.at("blocks.0.ln2_post.w"), gshard.at(nname).to(at::kFloat) + 1.0f));
  // Tied embeddings (Qwen2 without lm_head): W_U is W_E transposed.
  const LoadedWeights q = load_model_weights(tiny_model("qwen2"));
  EXPECT_TRUE(at::equal(q.weights.at("unembed.W_U"), q.weights.at("embed.W_E").t()));
  // TL-native: the .pth buffers (mask, IGNORE) are dropped, absent LN leaves none.
  const LoadedWeights a = load_model_weights(tiny_model("attn_only"));
  EXPECT_EQ(a.cfg.family, "attn_only_shortformer");
  EXPECT_EQ(a.cfg.normalization_type, "none");
  EXPECT_EQ(a.weights.count("blocks.0.attn.mask"), 0u);
  EXPECT_EQ(a.cfg.d_mlp, 0);
}

TEST(ConvertWeights, KwargsTrimLayersAndContext) {
  const LoadedWeights g = load_model_weights(
      tiny_model("gpt2"),
      json{{"n_ctx", 8}, {"first_n_layers", 1}, {"center_writing_weights", false}});
  EXPECT_EQ(g.cfg.n_layers, 1);
  EXPECT_EQ(g.cfg.n_ctx, 8);
  EXPECT_EQ(g.weights.at("pos_embed.W_pos").size(0), 8);
  EXPECT_EQ(g.weights.count("blocks.1.attn.W_Q"), 0u);
  EXPECT_THROW(load_model_weights(tiny_model("gpt2"), json{{"n_ctx", 999}}), Error);
  try {
    load_model_weights(tiny_model("gpt2"), json{{"bogus_key", 1}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bogus_key"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace saelab
