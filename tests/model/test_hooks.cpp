// Hook points: names and errors, hook_layer, run_with_cache stopping early, and run_with_hooks
// reading and replacing activations (the splice that CE-with-SAE and ablation evals use).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/model/transformer.h"
#include "test_transformer_models.h"

using namespace saelab;
using namespace saelab::test;

namespace {

at::Tensor D(const at::Tensor& t) { return t.to(at::kDouble); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Hooks, UnknownNameListsTheValidHooksOfItsBlock) {
  ModelConfig cfg = tiny_gpt2();
  Transformer m(cfg, tiny_weights(cfg, 1));
  at::Tensor t = random_tokens(cfg, 1, 4, 2);
  std::string msg = error_of([&] { m.run_with_cache(t, {"blocks.0.hook_mlp_outt"}); });
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_NE(msg.find("unknown hook 'blocks.0.hook_mlp_outt'; valid hooks of block 0: "),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("blocks.0.hook_mlp_out,"), std::string::npos) << msg;
  EXPECT_NE(msg.find("blocks.0.attn.hook_pattern"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("blocks.1."), std::string::npos) << msg;
  msg = error_of([&] {
    m.run_with_hooks(t, {{"blocks.2.hook_resid_pre",
                          [](const at::Tensor& a, const std::string&) { return a; }}});
  });
  EXPECT_NE(msg.find("block 2 out of range"), std::string::npos) << msg;
  msg = error_of([&] { m.hook_shape("hook_embedding", 1, 1); });
  EXPECT_NE(
      msg.find("valid hooks outside the blocks: hook_embed, hook_pos_embed, ln_final.hook_scale"),
      std::string::npos)
      << msg;
  // Family-specific hooks exist only where the architecture has them.
  EXPECT_THROW(m.check_hook_name("blocks.0.attn.hook_rot_q"), Error);
  EXPECT_THROW(m.check_hook_name("blocks.0.mlp.hook_pre_linear"), Error);
  ModelConfig g = tiny_gemma2();
  Transformer gm(g, tiny_weights(g, 1));
  EXPECT_NO_THROW(gm.check_hook_name("blocks.1.attn.hook_rot_k"));
  EXPECT_NO_THROW(gm.check_hook_name("blocks.1.mlp.hook_pre_linear"));
  EXPECT_NO_THROW(gm.check_hook_name("blocks.1.ln2_post.hook_normalized"));
  EXPECT_THROW(gm.check_hook_name("hook_pos_embed"), Error);
  ModelConfig s = tiny_shortformer();
  Transformer sm(s, tiny_weights(s, 1));
  EXPECT_THROW(sm.check_hook_name("blocks.0.hook_resid_mid"), Error);
  EXPECT_THROW(sm.check_hook_name("ln_final.hook_normalized"), Error);
}

TEST(Hooks, HookNamesCountAndLayer) {
  ModelConfig cfg = tiny_gpt2();
  Transformer m(cfg, tiny_weights(cfg, 1));
  std::vector<std::string> expect{"hook_embed", "hook_pos_embed"};
  for (const char* b : {"blocks.0.", "blocks.1."})
    for (const char* s : {"hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q",
                          "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
                          "attn.hook_pattern", "attn.hook_z", "attn.hook_result", "hook_attn_out",
                          "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", "mlp.hook_pre",
                          "mlp.hook_post", "hook_mlp_out", "hook_resid_post"})
      expect.push_back(std::string(b) + s);
  expect.push_back("ln_final.hook_scale");
  expect.push_back("ln_final.hook_normalized");
  EXPECT_EQ(m.hook_names(), expect);
  EXPECT_EQ(m.hook_layer("blocks.1.attn.hook_z"), 1);
  EXPECT_EQ(m.hook_layer("blocks.0.hook_resid_pre"), 0);
  EXPECT_EQ(m.hook_layer("hook_embed"), 0);
  EXPECT_EQ(m.hook_layer("ln_final.hook_normalized"), 1);
  EXPECT_THROW(m.hook_layer("blocks.x.hook_resid_pre"), Error);
}

TEST(Hooks, RunWithCacheStopsEarlyWithTheSameValues) {
  for (const auto& cfg : {tiny_gpt2(), tiny_gemma2()}) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 3));
    at::Tensor t = random_tokens(cfg, 2, 6, 4);
    std::vector<std::string> names{"blocks.0.attn.hook_z", "blocks.0.hook_resid_post",
                                   "hook_embed"};
    auto full = m.run_with_cache(t, names, true);
    auto part = m.run_with_cache(t, names);
    ASSERT_EQ(part.size(), 3u);  // no logits
    for (const auto& n : names) EXPECT_EQ(max_abs_diff(part.at(n), full.at(n)), 0.0) << n;
    // Nothing after the last requested hook runs: a hook in block 1 is never called...
    int calls = 0;
    Hook counter{"blocks.1.hook_resid_pre", [&](const at::Tensor& a, const std::string&) {
                   ++calls;
                   return a;
                 }};
    m.run(t, {counter}, names, false);
    EXPECT_EQ(calls, 0);
    // ...unless logits are asked for.
    auto r = m.run(t, {counter}, names, true);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(max_abs_diff(r.logits, full.at("logits")), 0.0);
  }
}

TEST(Hooks, ZeroingTheLastMlpOutMatchesTheManualUnembedding) {
  ModelConfig cfg = tiny_gpt2();
  Weights w = tiny_weights(cfg, 5);
  Transformer m(cfg, w);
  at::Tensor t = random_tokens(cfg, 2, 6, 6);
  auto clean = m.run_with_cache(t, {"blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out"}, true);
  std::vector<std::string> seen;
  at::Tensor seen_act;
  Hook zero{"blocks.1.hook_mlp_out", [&](const at::Tensor& a, const std::string& name) {
              seen.push_back(name);
              seen_act = a.clone();
              return at::zeros_like(a);
            }};
  at::Tensor logits = m.run_with_hooks(t, {zero});
  ASSERT_EQ(seen, std::vector<std::string>{"blocks.1.hook_mlp_out"});
  EXPECT_EQ(max_abs_diff(seen_act, clean.at("blocks.1.hook_mlp_out")),
            0.0);  // hook reads the activation
  // With mlp_out = 0, resid_post = resid_mid: logits = LN_final(resid_mid) W_U + b_U, in float64.
  at::Tensor x = D(clean.at("blocks.1.hook_resid_mid"));
  at::Tensor c = x - x.mean(-1, true);
  at::Tensor n = c / (c.pow(2).mean(-1, true) + cfg.eps).sqrt() * D(w.at("ln_final.w")) +
                 D(w.at("ln_final.b"));
  at::Tensor expect = at::matmul(n, D(w.at("unembed.W_U"))) + D(w.at("unembed.b_U"));
  EXPECT_LT(max_abs_diff(logits, expect), 1e-4);
  EXPECT_GT(max_abs_diff(logits, clean.at("logits")), 1e-2);  // and it did change the output
}

TEST(Hooks, ReplacementInAnEarlyBlockFlowsDownstream) {
  ModelConfig cfg = tiny_llama();
  Transformer m(cfg, tiny_weights(cfg, 7));
  at::Tensor t = random_tokens(cfg, 2, 5, 8);
  auto clean = m.run_with_cache(t, {"blocks.0.hook_resid_mid"}, true);
  Hook zero{"blocks.0.hook_mlp_out",
            [](const at::Tensor& a, const std::string&) { return at::zeros_like(a); }};
  auto r = m.run(t, {zero}, {"blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"}, true);
  EXPECT_EQ(r.cache.at("blocks.0.hook_mlp_out").abs().max().item<double>(),
            0.0);  // cached after the hook
  EXPECT_LT(
      max_abs_diff(r.cache.at("blocks.1.hook_resid_pre"), clean.at("blocks.0.hook_resid_mid")),
      1e-6);
  EXPECT_GT(max_abs_diff(r.logits, clean.at("logits")), 1e-3);
  // Two hooks on one name run in order.
  Hook add_one{"blocks.0.hook_mlp_out",
               [](const at::Tensor& a, const std::string&) { return a + 1; }};
  auto r2 = m.run(t, {zero, add_one}, {"blocks.0.hook_mlp_out"}, false);
  EXPECT_EQ(r2.cache.at("blocks.0.hook_mlp_out").min().item<double>(), 1.0);
}

TEST(Hooks, ReplacingWithTheWrongShapeIsAnError) {
  ModelConfig cfg = tiny_gpt2();
  Transformer m(cfg, tiny_weights(cfg, 9));
  Hook bad{"blocks.0.attn.hook_z",
           [](const at::Tensor& a, const std::string&) { return a.flatten(2); }};
  std::string msg = error_of([&] { m.run_with_hooks(random_tokens(cfg, 1, 3, 1), {bad}); });
  EXPECT_NE(msg.find("hook 'blocks.0.attn.hook_z' returned shape [1, 3, 16], expected the "
                     "activation's shape [1, 3, 4, 4]"),
            std::string::npos)
      << msg;
}

TEST(Hooks, PerHeadResultSumsToAttnOutAndCanAblateAHead) {
  ModelConfig cfg = tiny_gpt2();
  Weights w = tiny_weights(cfg, 11);
  Transformer m(cfg, w);
  at::Tensor t = random_tokens(cfg, 2, 5, 12);
  auto c = m.run_with_cache(
      t, {"blocks.0.attn.hook_result", "blocks.0.attn.hook_z", "blocks.0.hook_attn_out"});
  at::Tensor result = D(c.at("blocks.0.attn.hook_result"));
  EXPECT_LT(
      max_abs_diff(result.sum(2) + D(w.at("blocks.0.attn.b_O")), c.at("blocks.0.hook_attn_out")),
      1e-5);
  // Zeroing head 2's z removes exactly its result from attn_out.
  Hook ablate{"blocks.0.attn.hook_z", [](const at::Tensor& a, const std::string&) {
                at::Tensor z = a.clone();
                z.select(2, 2).zero_();
                return z;
              }};
  auto r = m.run(t, {ablate}, {"blocks.0.hook_attn_out"}, false);
  EXPECT_LT(max_abs_diff(r.cache.at("blocks.0.hook_attn_out"),
                         D(c.at("blocks.0.hook_attn_out")) - result.select(2, 2)),
            1e-5);
}

TEST(Hooks, RunsWithoutGradientsByDefault) {
  ModelConfig cfg = tiny_gpt2();
  Weights w = tiny_weights(cfg, 13);
  for (auto& [k, v] : w) v.set_requires_grad(true);
  Transformer m(cfg, w);
  at::Tensor t = random_tokens(cfg, 1, 3, 1);
  EXPECT_FALSE(m.forward(t).requires_grad());
  m.set_grad_enabled(true);
  EXPECT_TRUE(m.forward(t).requires_grad());
}
