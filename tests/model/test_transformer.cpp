// The transformer runtime on tiny random models of every family: residual identities, attention
// recomputed independently in float64 from the hooked q/k/v, causality, local windows, GQA,
// shortformer positions, Gemma-2's scale and soft caps, logits from ln_final, and input errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "saelab/core/error.h"
#include "saelab/model/transformer.h"
#include "test_transformer_models.h"

using namespace saelab;
using namespace saelab::test;

namespace {

at::Tensor D(const at::Tensor& t) { return t.to(at::kDouble); }

std::string L(int64_t l, const std::string& s) { return "blocks." + std::to_string(l) + "." + s; }

// x / sqrt(mean x^2 + eps) [* w], or LayerNorm, in float64, written independently of norms.cpp.
at::Tensor rms_ref(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor xd = D(x);
  return xd / (xd.pow(2).mean(-1, true) + eps).sqrt() * D(w);
}

bool has(const Weights& w, const std::string& n) { return w.count(n) > 0; }

// The input the attention of block l reads, per TransformerLens: ln1's output (LN: hook_normalized
// includes w and b; RMS: hook_normalized * w), or resid_pre without normalization.
at::Tensor attn_input(const ModelConfig& c, const Weights& w,
                      std::map<std::string, at::Tensor>& cache, int64_t l) {
  if (c.normalization_type == "none") return D(cache.at(L(l, "hook_resid_pre")));
  at::Tensor n = D(cache.at(L(l, "ln1.hook_normalized")));
  if (c.normalization_type == "RMS") n = n * D(w.at(L(l, "ln1.w")));
  return n;
}

const std::vector<std::string>& all_names(const Transformer& m) {
  static std::map<std::string, std::vector<std::string>> memo;
  auto& v = memo[m.cfg().model_name];
  if (v.empty()) v = m.hook_names();
  return v;
}

}  // namespace

TEST(TransformerFamilies, ResidualIdentitiesHold) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 1));
    auto cache = m.run_with_cache(random_tokens(cfg, 2, 7, 2), all_names(m), true);
    at::Tensor first = D(cache.at("hook_embed"));
    if (cfg.positional_embedding_type == "standard") first = first + D(cache.at("hook_pos_embed"));
    EXPECT_LT(max_abs_diff(cache.at(L(0, "hook_resid_pre")), first), 1e-6);
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      at::Tensor pre = D(cache.at(L(l, "hook_resid_pre"))),
                 attn = D(cache.at(L(l, "hook_attn_out")));
      if (cfg.d_mlp == 0) {
        EXPECT_EQ(cache.count(L(l, "hook_resid_mid")), 0u);
        EXPECT_LT(max_abs_diff(cache.at(L(l, "hook_resid_post")), pre + attn), 1e-5);
      } else {
        at::Tensor mid = D(cache.at(L(l, "hook_resid_mid")));
        EXPECT_LT(max_abs_diff(mid, pre + attn), 1e-5);
        EXPECT_LT(max_abs_diff(cache.at(L(l, "hook_resid_post")),
                               mid + D(cache.at(L(l, "hook_mlp_out")))),
                  1e-5);
      }
      if (l + 1 < cfg.n_layers)
        EXPECT_EQ(
            max_abs_diff(cache.at(L(l + 1, "hook_resid_pre")), cache.at(L(l, "hook_resid_post"))),
            0.0);
    }
  }
}

TEST(TransformerFamilies, HookShapesMatchTheActivations) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 3));
    auto names = m.hook_names();
    auto cache = m.run_with_cache(random_tokens(cfg, 3, 5, 4), names, true);
    ASSERT_EQ(cache.size(), names.size() + 1);
    for (const auto& n : names) {
      ASSERT_TRUE(cache.count(n)) << n;
      EXPECT_EQ(cache.at(n).sizes().vec(), m.hook_shape(n, 3, 5)) << n;
    }
    EXPECT_EQ(cache.at("logits").sizes().vec(), (std::vector<int64_t>{3, 5, cfg.d_vocab}));
  }
  // Spot-check shapes written out by hand (TransformerLens conventions).
  ModelConfig g = tiny_gemma2();
  Transformer m(g, tiny_weights(g, 3));
  EXPECT_EQ(m.hook_shape("blocks.1.attn.hook_k", 2, 5), (std::vector<int64_t>{2, 5, 2, 8}));
  EXPECT_EQ(m.hook_shape("blocks.1.attn.hook_q", 2, 5), (std::vector<int64_t>{2, 5, 4, 8}));
  EXPECT_EQ(m.hook_shape("blocks.1.attn.hook_pattern", 2, 5), (std::vector<int64_t>{2, 4, 5, 5}));
  EXPECT_EQ(m.hook_shape("blocks.0.mlp.hook_pre_linear", 2, 5), (std::vector<int64_t>{2, 5, 32}));
  EXPECT_EQ(m.hook_shape("blocks.0.ln1.hook_scale", 2, 5), (std::vector<int64_t>{2, 5, 1}));
}

TEST(TransformerFamilies, AttentionRecomputedFromHookedQKV) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Weights w = tiny_weights(cfg, 5);
    Transformer m(cfg, w);
    const int64_t B = 2, P = 6, h = cfg.n_heads, kv = cfg.n_key_value_heads;
    auto cache = m.run_with_cache(random_tokens(cfg, B, P, 6), all_names(m));
    const bool rotary = cfg.positional_embedding_type == "rotary";
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      SCOPED_TRACE(l);
      // q, k, v are the input projected by each head's W_Q / W_K / W_V (+ bias).
      at::Tensor x = attn_input(cfg, w, cache, l), xqk = x;
      if (cfg.positional_embedding_type == "shortformer") xqk = x + D(cache.at("hook_pos_embed"));
      auto proj = [&](const at::Tensor& in, const std::string& W, const std::string& b) {
        at::Tensor y = at::einsum("bpd,hde->bphe", {in, D(w.at(L(l, W)))});
        return has(w, L(l, b)) ? y + D(w.at(L(l, b))) : y;
      };
      EXPECT_LT(max_abs_diff(cache.at(L(l, "attn.hook_q")), proj(xqk, "attn.W_Q", "attn.b_Q")),
                1e-4);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "attn.hook_k")), proj(xqk, "attn.W_K", "attn.b_K")),
                1e-4);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "attn.hook_v")), proj(x, "attn.W_V", "attn.b_V")), 1e-4);
      at::Tensor q = D(cache.at(L(l, rotary ? "attn.hook_rot_q" : "attn.hook_q")));
      at::Tensor k = D(cache.at(L(l, rotary ? "attn.hook_rot_k" : "attn.hook_k")));
      at::Tensor v = D(cache.at(L(l, "attn.hook_v")));
      double scale = cfg.use_attn_scale
                         ? (cfg.attn_scale > 0 ? cfg.attn_scale : std::sqrt(double(cfg.d_head)))
                         : 1.0;
      const bool local = !cfg.attn_types.empty() && cfg.attn_types[l] == "local";
      at::Tensor scores = torch::empty({B, h, P, P}, torch::kDouble);
      at::Tensor z = torch::empty({B, P, h, cfg.d_head}, torch::kDouble);
      for (int64_t head = 0; head < h; ++head) {
        const int64_t g = head / (h / kv);  // GQA group
        at::Tensor s = at::matmul(q.select(2, head), k.select(2, g).transpose(1, 2)) / scale;
        if (cfg.attn_scores_soft_cap > 0)
          s = cfg.attn_scores_soft_cap * (s / cfg.attn_scores_soft_cap).tanh();
        for (int64_t i = 0; i < P; ++i)
          for (int64_t j = 0; j < P; ++j)
            if (j > i || (local && j <= i - cfg.window_size))
              s.select(1, i).select(1, j).fill_(-INFINITY);
        scores.select(1, head).copy_(s);
        z.select(2, head).copy_(at::matmul(at::softmax(s, -1), v.select(2, g)));
      }
      at::Tensor got = D(cache.at(L(l, "attn.hook_attn_scores")));
      EXPECT_TRUE(at::equal(got.isinf(), scores.isinf()));
      at::Tensor fin = scores.isfinite();
      EXPECT_LT(max_abs_diff(got.masked_select(fin), scores.masked_select(fin)), 1e-4);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "attn.hook_pattern")), at::softmax(scores, -1)), 1e-5);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "attn.hook_z")), z), 1e-5);
      // attn_out = sum_h z_h W_O[h] + b_O, then Gemma-2's post-norm.
      at::Tensor out = at::einsum("bphe,hed->bpd",
                                  {D(cache.at(L(l, "attn.hook_z"))), D(w.at(L(l, "attn.W_O")))});
      if (has(w, L(l, "attn.b_O"))) out = out + D(w.at(L(l, "attn.b_O")));
      if (cfg.use_normalization_before_and_after)
        out = rms_ref(out, w.at(L(l, "ln1_post.w")), cfg.eps);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "hook_attn_out")), out), 1e-4);
    }
  }
}

TEST(TransformerFamilies, MlpAndNormsRecomputed) {
  for (const auto& cfg : all_tiny_configs()) {
    if (cfg.d_mlp == 0) continue;
    SCOPED_TRACE(cfg.model_name);
    Weights w = tiny_weights(cfg, 7);
    Transformer m(cfg, w);
    auto cache = m.run_with_cache(random_tokens(cfg, 2, 5, 8), all_names(m));
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      at::Tensor mid = D(cache.at(L(l, "hook_resid_mid"))), x;
      if (cfg.normalization_type == "LN") {
        at::Tensor c = mid - mid.mean(-1, true);
        at::Tensor sd = (c.pow(2).mean(-1, true) + cfg.eps).sqrt();
        EXPECT_LT(max_abs_diff(cache.at(L(l, "ln2.hook_scale")), sd), 1e-5);
        x = c / sd * D(w.at(L(l, "ln2.w"))) + D(w.at(L(l, "ln2.b")));
        EXPECT_LT(max_abs_diff(cache.at(L(l, "ln2.hook_normalized")), x), 1e-4);
      } else {
        at::Tensor n = mid / (mid.pow(2).mean(-1, true) + cfg.eps).sqrt();
        EXPECT_LT(max_abs_diff(cache.at(L(l, "ln2.hook_normalized")), n), 1e-5);
        x = n * D(w.at(L(l, "ln2.w")));
      }
      at::Tensor post;
      auto gelu_tanh = [](const at::Tensor& a) {
        return 0.5 * a * (1 + (std::sqrt(2.0 / M_PI) * (a + 0.044715 * a.pow(3))).tanh());
      };
      if (cfg.gated_mlp) {
        at::Tensor gate = at::matmul(x, D(w.at(L(l, "mlp.W_gate"))));
        at::Tensor lin = at::matmul(x, D(w.at(L(l, "mlp.W_in"))));
        EXPECT_LT(max_abs_diff(cache.at(L(l, "mlp.hook_pre")), gate), 1e-4);
        EXPECT_LT(max_abs_diff(cache.at(L(l, "mlp.hook_pre_linear")), lin), 1e-4);
        at::Tensor act = cfg.act_fn == "silu" ? gate / (1 + (-gate).exp()) : gelu_tanh(gate);
        post = act * lin;
      } else {
        at::Tensor pre = at::matmul(x, D(w.at(L(l, "mlp.W_in")))) + D(w.at(L(l, "mlp.b_in")));
        EXPECT_LT(max_abs_diff(cache.at(L(l, "mlp.hook_pre")), pre), 1e-4);
        post =
            cfg.act_fn == "gelu" ? 0.5 * pre * (1 + (pre / std::sqrt(2.0)).erf()) : gelu_tanh(pre);
      }
      EXPECT_LT(max_abs_diff(cache.at(L(l, "mlp.hook_post")), post), 1e-4);
      at::Tensor out = at::matmul(D(cache.at(L(l, "mlp.hook_post"))), D(w.at(L(l, "mlp.W_out"))));
      if (has(w, L(l, "mlp.b_out"))) out = out + D(w.at(L(l, "mlp.b_out")));
      if (cfg.use_normalization_before_and_after)
        out = rms_ref(out, w.at(L(l, "ln2_post.w")), cfg.eps);
      EXPECT_LT(max_abs_diff(cache.at(L(l, "hook_mlp_out")), out), 1e-4);
    }
  }
}

TEST(TransformerFamilies, LogitsAreTheUnembeddedFinalNorm) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Weights w = tiny_weights(cfg, 9);
    Transformer m(cfg, w);
    at::Tensor tokens = random_tokens(cfg, 2, 6, 10);
    const std::string last = L(cfg.n_layers - 1, "hook_resid_post");
    std::vector<std::string> names{last};
    if (cfg.normalization_type != "none") names.push_back("ln_final.hook_normalized");
    auto cache = m.run_with_cache(tokens, names, true);
    at::Tensor x;
    if (cfg.normalization_type == "none")
      x = D(cache.at(last));
    else if (cfg.normalization_type == "LN")
      x = D(cache.at("ln_final.hook_normalized"));
    else
      x = D(cache.at("ln_final.hook_normalized")) * D(w.at("ln_final.w"));
    at::Tensor logits = at::matmul(x, D(w.at("unembed.W_U")));
    if (has(w, "unembed.b_U")) logits = logits + D(w.at("unembed.b_U"));
    if (cfg.output_logits_soft_cap > 0) logits = 30.0 * (logits / 30.0).tanh();
    EXPECT_LT(max_abs_diff(cache.at("logits"), logits), 1e-4);
    EXPECT_LT(max_abs_diff(m.forward(tokens), logits), 1e-4);
  }
}

TEST(TransformerFamilies, LaterTokensLeaveEarlierLogitsUnchanged) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 11));
    at::Tensor a = random_tokens(cfg, 1, 8, 12), b = a.clone();
    b[0][6] = (b[0][6].item<int64_t>() + 1) % cfg.d_vocab;
    b[0][7] = (b[0][7].item<int64_t>() + 7) % cfg.d_vocab;
    at::Tensor la = m.forward(a), lb = m.forward(b);
    EXPECT_LT(max_abs_diff(la.narrow(1, 0, 6), lb.narrow(1, 0, 6)), 1e-6);
    EXPECT_GT(max_abs_diff(la.narrow(1, 6, 2), lb.narrow(1, 6, 2)), 1e-3);  // the change is seen
  }
}

TEST(TransformerFamilies, BatchEqualsSequencesOneByOne) {
  for (const auto& cfg : all_tiny_configs()) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 13));
    at::Tensor t = random_tokens(cfg, 3, 5, 14);
    at::Tensor all = m.forward(t);
    const double tol = 1e-5 * std::max(1.0, all.abs().max().item<double>());
    for (int64_t b = 0; b < 3; ++b) EXPECT_LT(max_abs_diff(all[b], m.forward(t[b])[0]), tol);
  }
}

TEST(TransformerWindows, KeysOutsideTheWindowGetZeroWeight) {
  for (const auto& cfg : {tiny_neo(), tiny_gemma2(), tiny_mistral()}) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 15));
    const int64_t P = 8, W = cfg.window_size;
    auto cache = m.run_with_cache(random_tokens(cfg, 2, P, 16),
                                  {L(0, "attn.hook_pattern"), L(1, "attn.hook_pattern")});
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      at::Tensor p = cache.at(L(l, "attn.hook_pattern"));
      const bool local = cfg.attn_types[l] == "local";
      double outside = 0, inside_far = 0;
      for (int64_t i = 0; i < P; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          double s = p.select(2, i).select(2, j).abs().sum().item<double>();
          if (j <= i - W) (local ? outside : inside_far) += s;
        }
      if (local)
        EXPECT_EQ(outside, 0.0) << "layer " << l;
      else
        EXPECT_GT(inside_far, 0.0) << "layer " << l;  // global layers do look far back
      // Keys within the window (i - W < j <= i) all get weight.
      for (int64_t i = 0; i < P; ++i)
        for (int64_t j = std::max<int64_t>(0, i - W + 1); j <= i; ++j)
          EXPECT_GT(p.select(2, i).select(2, j).min().item<double>(), 0.0);
    }
  }
}

TEST(TransformerWindows, TokenOutsideEveryWindowLeavesLayer0OutputUnchanged) {
  for (const auto& cfg : {tiny_neo(), tiny_gemma2(), tiny_mistral()}) {
    SCOPED_TRACE(cfg.model_name);
    ASSERT_EQ(cfg.attn_types[0], "local");
    Transformer m(cfg, tiny_weights(cfg, 17));
    const int64_t P = 8, W = cfg.window_size;
    at::Tensor a = random_tokens(cfg, 1, P, 18), b = a.clone();
    b[0][1] = (b[0][1].item<int64_t>() + 5) % cfg.d_vocab;
    const std::string h = L(0, "hook_resid_post");
    at::Tensor ra = m.run_with_cache(a, {h}).at(h), rb = m.run_with_cache(b, {h}).at(h);
    // Position i sees token 1 iff i - W < 1, i.e. i < W + 1.
    EXPECT_LT(max_abs_diff(ra.narrow(1, W + 1, P - W - 1), rb.narrow(1, W + 1, P - W - 1)), 1e-6);
    EXPECT_GT(max_abs_diff(ra.narrow(1, 1, W), rb.narrow(1, 1, W)), 1e-3);
  }
}

TEST(TransformerGqa, EqualsTheModelWithRepeatedKeyValueHeads) {
  for (const auto& cfg : {tiny_llama(), tiny_qwen2(), tiny_gemma2()}) {
    SCOPED_TRACE(cfg.model_name);
    Weights w = tiny_weights(cfg, 19);
    ModelConfig full = cfg;
    full.n_key_value_heads = cfg.n_heads;
    Weights wf = w;
    const int64_t rep = cfg.n_heads / cfg.n_key_value_heads;
    for (int64_t l = 0; l < cfg.n_layers; ++l)
      for (const char* n : {"attn.W_K", "attn.W_V", "attn.b_K", "attn.b_V"})
        if (has(w, L(l, n))) wf[L(l, n)] = w.at(L(l, n)).repeat_interleave(rep, 0);
    Transformer a(cfg, w), b(full, wf);
    at::Tensor t = random_tokens(cfg, 2, 7, 20);
    EXPECT_LT(max_abs_diff(a.forward(t), b.forward(t)), 1e-5);
  }
}

TEST(TransformerShortformer, PositionsReachOnlyQueriesAndKeys) {
  ModelConfig cfg = tiny_shortformer();
  Weights w = tiny_weights(cfg, 21);
  Transformer m(cfg, w);
  at::Tensor t = random_tokens(cfg, 2, 6, 22);
  auto cache = m.run_with_cache(t, m.hook_names());
  EXPECT_EQ(max_abs_diff(cache.at(L(0, "hook_resid_pre")), cache.at("hook_embed")), 0.0);
  at::Tensor expect_embed = D(w.at("embed.W_E")).index_select(0, t.reshape(-1)).view({2, 6, 16});
  EXPECT_LT(max_abs_diff(cache.at("hook_embed"), expect_embed), 1e-6);
  EXPECT_LT(max_abs_diff(cache.at("hook_pos_embed")[1], w.at("pos_embed.W_pos").narrow(0, 0, 6)),
            1e-7);
  // Same tokens at other positions: V (and the residual) are position-free, Q is not.
  at::Tensor same = torch::full({1, 6}, 7, torch::kLong);
  auto c2 = m.run_with_cache(same, {L(0, "attn.hook_v"), L(0, "attn.hook_q")});
  at::Tensor v = c2.at(L(0, "attn.hook_v"))[0], q = c2.at(L(0, "attn.hook_q"))[0];
  EXPECT_LT(max_abs_diff(v[0], v[5]), 1e-6);
  EXPECT_GT(max_abs_diff(q[0], q[5]), 1e-3);
}

TEST(TransformerGemma2, EmbeddingScaleIsInsideHookEmbed) {
  ModelConfig cfg = tiny_gemma2();
  Weights w = tiny_weights(cfg, 23);
  Transformer m(cfg, w);
  at::Tensor t = random_tokens(cfg, 1, 4, 24);
  at::Tensor e = m.run_with_cache(t, {"hook_embed"}).at("hook_embed");
  EXPECT_LT(max_abs_diff(e[0], D(w.at("embed.W_E")).index_select(0, t[0]) * 4.0), 1e-5);
}

TEST(TransformerGemma2, SoftCapsBoundScoresAndLogits) {
  ModelConfig cfg = tiny_gemma2();
  Weights w =
      tiny_weights(cfg, 25, /*scale=*/40.0);  // drives raw scores and logits far past the caps
  Transformer m(cfg, w);
  auto cache =
      m.run_with_cache(random_tokens(cfg, 2, 10, 26),
                       {L(0, "attn.hook_attn_scores"), L(1, "attn.hook_attn_scores")}, true);
  for (int64_t l = 0; l < 2; ++l) {
    at::Tensor s = cache.at(L(l, "attn.hook_attn_scores"));
    at::Tensor fin = s.masked_select(s.isfinite());
    EXPECT_LE(fin.abs().max().item<double>(), 50.0);
    EXPECT_GT(fin.abs().max().item<double>(), 45.0);  // the cap was actually exercised
  }
  at::Tensor logits = cache.at("logits");
  EXPECT_LE(logits.abs().max().item<double>(), 30.0);
  EXPECT_GT(logits.abs().max().item<double>(), 28.0);
}

TEST(TransformerErrors, TokenIdsOutsideTheVocabularyNameTheIdAndSize) {
  ModelConfig cfg = tiny_gpt2();
  Transformer m(cfg, tiny_weights(cfg, 27));
  at::Tensor t = torch::tensor({{1, 2, 50, 3}}, torch::kLong);
  try {
    m.forward(t);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("token id 50"), std::string::npos) << msg;
    EXPECT_NE(msg.find("50 tokens"), std::string::npos) << msg;
  }
  EXPECT_THROW(m.forward(torch::tensor({{1, -1}}, torch::kLong)), Error);
  EXPECT_THROW(m.forward(torch::zeros({1, 17}, torch::kLong)), Error);  // longer than n_ctx 16
  EXPECT_THROW(m.forward(torch::zeros({1, 3}, torch::kFloat)), Error);
}

TEST(TransformerErrors, MissingMisshapedAndUnexpectedWeightsAreNamed) {
  ModelConfig cfg = tiny_llama();
  auto expect_error = [&](Weights w, const std::string& needle) {
    try {
      Transformer m(cfg, std::move(w));
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Weights w = tiny_weights(cfg, 29);
  Weights missing = w;
  missing.erase("blocks.1.mlp.W_gate");
  expect_error(missing, "missing 'blocks.1.mlp.W_gate'");
  Weights bad = w;
  bad["blocks.0.attn.W_K"] = torch::zeros({4, 32, 8});  // 4 kv heads instead of 2
  expect_error(bad, "'blocks.0.attn.W_K' has shape [4, 32, 8], expected [2, 32, 8]");
  Weights extra = w;
  extra["blocks.0.attn.b_q"] = torch::zeros({4, 8});
  expect_error(extra, "unexpected tensor(s) 'blocks.0.attn.b_q'");
  Weights with_buffers = w;  // TransformerLens buffers are tolerated
  with_buffers["blocks.0.attn.mask"] = torch::ones({32, 32});
  with_buffers["blocks.0.attn.IGNORE"] = torch::tensor(-1e5);
  EXPECT_NO_THROW(Transformer(cfg, with_buffers));
  ModelConfig bad_cfg = cfg;
  bad_cfg.n_key_value_heads = 3;
  EXPECT_THROW(Transformer(bad_cfg, w), Error);
  bad_cfg = cfg;
  bad_cfg.act_fn = "gelu_quick";
  EXPECT_THROW(Transformer(bad_cfg, w), Error);
}
