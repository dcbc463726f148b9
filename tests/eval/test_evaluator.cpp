// The model-based evaluator (eval/evaluator.h) on a tiny random GPT-2: an exact-reconstruction SAE
// scores 1, an all-zero SAE 0, and every CE / KL / activation figure matches an independent float64
// computation here (the SAE by hand with tensor ops, the splice through run_with_hooks,
// log-softmax, CE and KL with plain loops).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <vector>

#include "model/test_transformer_models.h"
#include "saelab/core/error.h"
#include "saelab/eval/evaluator.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

constexpr int64_t kBos = 49;
const std::string kHook = "blocks.0.hook_resid_post";

Transformer make_model(at::ScalarType dtype, bool zero_unembed = false) {
  auto c = test::tiny_gpt2();
  auto w = test::tiny_weights(c, 7);
  if (zero_unembed) {
    w["unembed.W_U"].zero_();
    w["unembed.b_U"].zero_();
  }
  for (auto& [k, v] : w) v = v.to(dtype);
  return Transformer(c, w);
}

at::Tensor make_tokens(int64_t B, int64_t T, uint64_t seed, bool bos_first) {
  at::manual_seed(seed);
  at::Tensor t = torch::randint(0, kBos, {B, T}, torch::kLong);
  if (bos_first) t.select(1, 0).fill_(kBos);
  return t;
}

std::unique_ptr<Sae> standard_sae(int64_t d_in, int64_t d_sae, const std::string& dtype,
                                  bool apply_b_dec) {
  SaeConfig cfg;
  cfg.architecture = "standard";
  cfg.d_in = d_in;
  cfg.d_sae = d_sae;
  cfg.dtype = dtype;
  cfg.apply_b_dec_to_input = apply_b_dec;
  cfg.hook_name = kHook;
  return make_sae(cfg);
}

// d_sae = 2 d_in, W_enc = [I, −I], W_dec = [I; −I], b = 0: f = [ReLU(x), ReLU(−x)], x̂ = x exactly.
std::unique_ptr<Sae> exact_sae(int64_t d_in, const std::string& dtype = "float32") {
  auto sae = standard_sae(d_in, 2 * d_in, dtype, false);
  auto dt = sae->scalar_type();
  at::Tensor eye = torch::eye(d_in, torch::dtype(dt));
  sae->params()["W_enc"] = torch::cat({eye, -eye}, 1);
  sae->params()["W_dec"] = torch::cat({eye, -eye}, 0);
  return sae;
}

std::unique_ptr<Sae> random_sae(int64_t d_in, int64_t d_sae, const std::string& dtype,
                                uint64_t seed) {
  auto sae = standard_sae(d_in, d_sae, dtype, true);
  auto dt = sae->scalar_type();
  at::manual_seed(seed);
  sae->params()["W_enc"] = (torch::randn({d_in, d_sae}) * 0.4).to(dt);
  sae->params()["b_enc"] = (torch::randn({d_sae}) * 0.2 - 0.1).to(dt);
  sae->params()["W_dec"] = (torch::randn({d_sae, d_in}) * 0.3).to(dt);
  sae->params()["b_dec"] = (torch::randn({d_in}) * 0.1).to(dt);
  return sae;
}

// The standard SAE (or standard transcoder, with its skip term) by hand, in float64.
std::pair<at::Tensor, at::Tensor> sae_by_hand(const Sae& sae, const at::Tensor& x) {
  auto p = [&](const char* n) { return sae.param(n).to(at::kDouble); };
  at::Tensor xin = x.to(at::kDouble);
  if (sae.cfg().apply_b_dec_to_input) xin = xin - p("b_dec");
  at::Tensor f = torch::relu(xin.matmul(p("W_enc")) + p("b_enc"));
  at::Tensor out = f.matmul(p("W_dec")) + p("b_dec");
  if (sae.cfg().skip_connection) out = out + x.to(at::kDouble).matmul(p("W_skip").t());
  return {out, f};
}

struct Reference {
  double ce_clean = 0, ce_sae = 0, ce_abl = 0, kl_sae = 0, kl_abl = 0;
  double l0 = 0, mse = 0;
  int64_t n_tokens = 0;
  std::vector<double> cah;  // per latent, NaN when never fired
};

std::vector<double> log_softmax_loop(const at::Tensor& row) {  // row [V] float64
  const int64_t V = row.size(0);
  auto a = row.accessor<double, 1>();
  double mx = a[0];
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, a[v]);
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(a[v] - mx);
  std::vector<double> out(V);
  for (int64_t v = 0; v < V; ++v) out[v] = a[v] - mx - std::log(s);
  return out;
}

// Independent float64 evaluation. `head`: splice / ablate only that head of a [B, T, H, E] hook;
// `flatten`: a [B, T, H, E] hook fed to the SAE as [B, T, H·E]. A transcoder reads `hook` and is
// compared with, spliced into and ablated at its hook_name_out.
Reference reference(const Transformer& model64, const Sae& sae, const std::string& hook,
                    const std::vector<at::Tensor>& batches, const std::vector<int64_t>& excluded,
                    std::optional<int64_t> head = std::nullopt, bool flatten = false) {
  Reference r;
  int64_t n_ce = 0, n_kl = 0;
  const int64_t d_sae = sae.cfg().d_sae;
  std::vector<double> fires(d_sae, 0), prompts(d_sae, 0);
  double l0_sum = 0, sse = 0;
  for (const auto& tokens : batches) {
    const int64_t B = tokens.size(0), T = tokens.size(1);
    auto keep = [&](int64_t b, int64_t t) {
      for (int64_t id : excluded)
        if (tokens[b][t].item<int64_t>() == id) return false;
      return true;
    };
    const std::string out_hook = sae.cfg().is_transcoder() ? sae.cfg().hook_name_out : hook;
    auto cache = model64.run_with_cache(tokens, {hook, out_hook});
    at::Tensor act = cache.at(hook).to(at::kDouble);
    at::Tensor x = head ? act.select(2, *head) : (flatten ? act.flatten(2) : act);
    auto [xhat, f] = sae_by_hand(sae, x);
    if (out_hook != hook) act = x = cache.at(out_hook).to(at::kDouble);  // what it writes
    at::Tensor spliced_x = x.clone();
    for (int64_t b = 0; b < B; ++b) {
      std::vector<bool> fired_here(d_sae, false);
      for (int64_t t = 0; t < T; ++t) {
        if (!keep(b, t)) continue;
        spliced_x[b][t] = xhat[b][t];
        ++r.n_tokens;
        for (int64_t i = 0; i < d_sae; ++i)
          if (f[b][t][i].item<double>() > 0) {
            fires[i] += 1;
            l0_sum += 1;
            fired_here[i] = true;
          }
        sse += (x[b][t] - xhat[b][t]).pow(2).sum().item<double>();
      }
      for (int64_t i = 0; i < d_sae; ++i) prompts[i] += fired_here[i] ? 1 : 0;
    }
    at::Tensor spliced = act.clone();
    if (head)
      spliced.select(2, *head).copy_(spliced_x);
    else
      spliced = spliced_x.reshape(act.sizes());
    at::Tensor ablated = act.clone();
    if (head)
      ablated.select(2, *head).zero_();
    else
      ablated.zero_();
    auto with = [&](const at::Tensor& a) {
      return model64.run_with_hooks(
          tokens, {Hook{out_hook, [a](const at::Tensor&, const std::string&) { return a; }}});
    };
    at::Tensor clean = model64.forward(tokens), l_sae = with(spliced), l_abl = with(ablated);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        if (!keep(b, t)) continue;
        auto lc = log_softmax_loop(clean[b][t].contiguous()),
             ls = log_softmax_loop(l_sae[b][t].contiguous()),
             la = log_softmax_loop(l_abl[b][t].contiguous());
        if (t + 1 < T) {
          const int64_t next = tokens[b][t + 1].item<int64_t>();
          r.ce_clean -= lc[next];
          r.ce_sae -= ls[next];
          r.ce_abl -= la[next];
          ++n_ce;
        }
        for (size_t v = 0; v < lc.size(); ++v) {
          r.kl_sae += std::exp(lc[v]) * (lc[v] - ls[v]);
          r.kl_abl += std::exp(lc[v]) * (lc[v] - la[v]);
        }
        ++n_kl;
      }
  }
  r.ce_clean /= n_ce;
  r.ce_sae /= n_ce;
  r.ce_abl /= n_ce;
  r.kl_sae /= n_kl;
  r.kl_abl /= n_kl;
  r.l0 = l0_sum / r.n_tokens;
  r.mse = sse / r.n_tokens / sae.cfg().out_dim();
  for (int64_t i = 0; i < d_sae; ++i) r.cah.push_back(prompts[i] > 0 ? fires[i] / prompts[i] : NAN);
  return r;
}

double num(const json& m, const std::string& k) {
  EXPECT_TRUE(m.contains(k)) << k;
  return m.contains(k) ? m.at(k).get<double>() : NAN;
}

void expect_matches(const json& m, const Reference& r, double tol) {
  auto near = [&](const std::string& k, double want) {
    EXPECT_NEAR(num(m, k), want, tol * (1 + std::abs(want))) << k;
  };
  near("model_performance_preservation/ce_loss_without_sae", r.ce_clean);
  near("model_performance_preservation/ce_loss_with_sae", r.ce_sae);
  near("model_performance_preservation/ce_loss_with_ablation", r.ce_abl);
  near("model_performance_preservation/ce_loss_score",
       (r.ce_abl - r.ce_sae) / (r.ce_abl - r.ce_clean));
  near("model_behavior_preservation/kl_div_with_sae", r.kl_sae);
  near("model_behavior_preservation/kl_div_with_ablation", r.kl_abl);
  near("model_behavior_preservation/kl_div_score", (r.kl_abl - r.kl_sae) / r.kl_abl);
  near("sparsity/l0", r.l0);
  near("reconstruction_quality/mse", r.mse);
  EXPECT_EQ(m.at("n_tokens").get<int64_t>(), r.n_tokens);
}

TEST(Evaluator, ExactSaeScoresOneAndZeroSaeScoresZero) {
  at::set_num_threads(1);
  Transformer model = make_model(at::kFloat);
  std::vector<at::Tensor> batches{make_tokens(3, 8, 1, true), make_tokens(2, 8, 2, true)};
  EvalOptions eo;
  eo.exclude_token_ids = {kBos};
  json m = evaluate_sae_on_model(model, *exact_sae(16), kHook, std::nullopt, batches, eo);
  EXPECT_NEAR(num(m, "model_performance_preservation/ce_loss_score"), 1.0, 1e-5);
  EXPECT_NEAR(num(m, "model_behavior_preservation/kl_div_score"), 1.0, 1e-5);
  EXPECT_NEAR(num(m, "reconstruction_quality/explained_variance"), 1.0, 1e-5);
  EXPECT_EQ(m.at("n_tokens").get<int64_t>(), 5 * 7);  // BOS excluded
  EXPECT_GT(num(m, "model_performance_preservation/ce_loss_with_ablation"),
            num(m, "model_performance_preservation/ce_loss_without_sae"));
  EXPECT_FALSE(m.contains("notes"));

  // An all-zero SAE splices zeros everywhere (no exclusions): the same as the ablation.
  auto zero = standard_sae(16, 32, "float32", true);
  json z = evaluate_sae_on_model(model, *zero, kHook, std::nullopt, batches, EvalOptions{});
  EXPECT_NEAR(num(z, "model_performance_preservation/ce_loss_score"), 0.0, 1e-5);
  EXPECT_NEAR(num(z, "model_behavior_preservation/kl_div_score"), 0.0, 1e-5);
  EXPECT_EQ(num(z, "sparsity/l0"), 0.0);
  EXPECT_EQ(z.at("sparsity/dead_features").get<int64_t>(), 32);
}

TEST(Evaluator, FormulasMatchFloat64ReferenceWithExclusion) {
  at::set_num_threads(1);
  Transformer model64 = make_model(at::kDouble);
  std::vector<at::Tensor> batches{make_tokens(3, 8, 3, true), make_tokens(2, 8, 4, false)};
  batches[1][1][5] = kBos;  // an excluded token mid-sequence
  auto sae = random_sae(16, 24, "float64", 11);
  EvalOptions eo;
  eo.exclude_token_ids = {kBos};
  ModelEvaluator ev(model64, *sae, kHook, std::nullopt, eo);
  for (auto& b : batches) ev.add_batch(b);
  json m = ev.metrics();
  Reference r = reference(model64, *sae, kHook, batches, {kBos});
  expect_matches(m, r, 1e-9);
  const double score = num(m, "model_performance_preservation/ce_loss_score");
  EXPECT_GT(score, -5.0);  // a random SAE: neither 0 nor 1
  EXPECT_LT(score, 0.999);
  at::Tensor cah = ev.consistent_activation_heuristic();
  ASSERT_EQ(cah.size(0), 24);
  double sum = 0;
  int n = 0;
  for (int64_t i = 0; i < 24; ++i) {
    if (std::isnan(r.cah[i])) {
      EXPECT_TRUE(std::isnan(cah[i].item<double>())) << i;
    } else {
      EXPECT_NEAR(cah[i].item<double>(), r.cah[i], 1e-12) << i;
      sum += r.cah[i];
      ++n;
    }
  }
  ASSERT_GT(n, 0);
  EXPECT_NEAR(num(m, "sparsity/consistent_activation_heuristic"), sum / n, 1e-12);

  // Same data through the float32 model and SAE: close to the float64 reference.
  Transformer model32 = make_model(at::kFloat);
  auto sae32 = random_sae(16, 24, "float32", 11);
  json m32 = evaluate_sae_on_model(model32, *sae32, kHook, std::nullopt, batches, eo);
  expect_matches(m32, reference(model64, *sae32, kHook, batches, {kBos}), 2e-4);
}

TEST(Evaluator, HookZFlattenedAndSingleHead) {
  at::set_num_threads(1);
  Transformer model64 = make_model(at::kDouble);
  const std::string hz = "blocks.1.attn.hook_z";  // [B, T, 4 heads, 4]
  std::vector<at::Tensor> batches{make_tokens(2, 8, 5, true)};
  EvalOptions eo;
  eo.exclude_token_ids = {kBos};
  json all =
      evaluate_sae_on_model(model64, *exact_sae(16, "float64"), hz, std::nullopt, batches, eo);
  EXPECT_NEAR(num(all, "model_performance_preservation/ce_loss_score"), 1.0, 1e-9);
  EXPECT_NEAR(num(all, "model_behavior_preservation/kl_div_score"), 1.0, 1e-9);

  auto flat = random_sae(16, 20, "float64", 12);
  expect_matches(evaluate_sae_on_model(model64, *flat, hz, std::nullopt, batches, eo),
                 reference(model64, *flat, hz, batches, {kBos}, std::nullopt, true), 1e-9);
  auto one = random_sae(4, 8, "float64", 13);
  expect_matches(evaluate_sae_on_model(model64, *one, hz, int64_t(2), batches, eo),
                 reference(model64, *one, hz, batches, {kBos}, int64_t(2)), 1e-9);
  json exact_head =
      evaluate_sae_on_model(model64, *exact_sae(4, "float64"), hz, int64_t(1), batches, eo);
  EXPECT_NEAR(num(exact_head, "model_performance_preservation/ce_loss_score"), 1.0, 1e-9);
}

TEST(Evaluator, UndefinedScoresAreNullWithNotes) {
  // With W_U = 0 and b_U = 0 every logit is 0: nothing the hook does changes the loss.
  Transformer model = make_model(at::kFloat, true);
  json m = evaluate_sae_on_model(model, *exact_sae(16), kHook, std::nullopt,
                                 {make_tokens(2, 6, 6, false)}, EvalOptions{});
  EXPECT_TRUE(std::isnan(num(m, "model_performance_preservation/ce_loss_score")));
  EXPECT_TRUE(std::isnan(num(m, "model_behavior_preservation/kl_div_score")));
  EXPECT_NEAR(num(m, "model_performance_preservation/ce_loss_without_sae"), std::log(50.0), 1e-5);
  const std::string dumped = m.dump();
  EXPECT_NE(dumped.find("\"model_performance_preservation/ce_loss_score\":null"), std::string::npos)
      << dumped;
  ASSERT_TRUE(m.contains("notes"));
  EXPECT_EQ(m.at("notes").size(), 2u);
}

TEST(Evaluator, Errors) {
  Transformer model = make_model(at::kFloat);
  std::vector<at::Tensor> batches{make_tokens(1, 4, 7, false)};
  try {
    evaluate_sae_on_model(model, *exact_sae(8), kHook, std::nullopt, batches, EvalOptions{});
    FAIL() << "expected a d_in mismatch";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("d_in 8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("width 16"), std::string::npos) << msg;
  }
  EXPECT_THROW(ModelEvaluator(model, *exact_sae(16), kHook, int64_t(0), EvalOptions{}),
               Error);  // no head axis
  EXPECT_THROW(ModelEvaluator(model, *exact_sae(16), "blocks.9.hook_resid_post", std::nullopt,
                              EvalOptions{}),
               Error);
  EvalOptions all_bos;
  all_bos.exclude_token_ids = {kBos};
  auto sae = exact_sae(16);  // the evaluator keeps a reference
  ModelEvaluator ev(model, *sae, kHook, std::nullopt, all_bos);
  EXPECT_THROW(ev.metrics(), Error);  // nothing added
  ev.add_batch(torch::full({2, 3}, kBos, torch::kLong));
  EXPECT_THROW(ev.metrics(), Error);  // every position excluded
}

// A transcoder replacing block 0's MLP: from ln2.hook_normalized (TransformerLens's LayerNorm hook
// after its weight and bias: the MLP's input) to hook_mlp_out. With a ReLU model, the transcoder
// holding the MLP's own weights is the MLP exactly: it scores 1.
// A random skip transcoder matches the float64 reference, and its ablation is the MLP's.
TEST(Evaluator, TranscoderReplacesTheMlp) {
  at::set_num_threads(1);
  auto c = test::tiny_gpt2();
  c.act_fn = "relu";
  auto w = test::tiny_weights(c, 7);
  for (auto& [k, v] : w) v = v.to(at::kDouble);
  Transformer model64(c, w);
  const std::string in = "blocks.0.ln2.hook_normalized", out = "blocks.0.hook_mlp_out";
  std::vector<at::Tensor> batches{make_tokens(3, 8, 1, true), make_tokens(2, 8, 2, true)};
  EvalOptions eo;
  eo.exclude_token_ids = {kBos};

  SaeConfig tc;
  tc.architecture = "standard";
  tc.d_in = c.d_model;
  tc.d_out = c.d_model;
  tc.d_sae = c.d_mlp;
  tc.dtype = "float64";
  tc.apply_b_dec_to_input = false;
  tc.hook_name = in;
  tc.hook_name_out = out;
  auto mlp = make_sae(tc);
  mlp->params()["W_enc"] = w.at("blocks.0.mlp.W_in").clone();
  mlp->params()["b_enc"] = w.at("blocks.0.mlp.b_in").clone();
  mlp->params()["W_dec"] = w.at("blocks.0.mlp.W_out").clone();
  mlp->params()["b_dec"] = w.at("blocks.0.mlp.b_out").clone();
  json m = evaluate_sae_on_model(model64, *mlp, in, std::nullopt, batches, eo);
  EXPECT_NEAR(num(m, "model_performance_preservation/ce_loss_score"), 1.0, 1e-9);
  EXPECT_NEAR(num(m, "model_behavior_preservation/kl_div_with_sae"), 0.0, 1e-12);
  EXPECT_NEAR(num(m, "reconstruction_quality/explained_variance"), 1.0, 1e-9);
  expect_matches(m, reference(model64, *mlp, in, batches, {kBos}), 1e-9);

  tc.skip_connection = true;
  tc.d_sae = 24;
  auto skip = make_sae(tc);
  at::manual_seed(21);
  for (auto& [name, p] : skip->params()) p = torch::randn(p.sizes(), torch::kDouble) * 0.3;
  json s = evaluate_sae_on_model(model64, *skip, in, std::nullopt, batches, eo);
  const Reference r = reference(model64, *skip, in, batches, {kBos});
  expect_matches(s, r, 1e-9);
  // The ablation zeroes the MLP's output: the same CE as the MLP-equal transcoder's run.
  EXPECT_NEAR(num(s, "model_performance_preservation/ce_loss_with_ablation"),
              num(m, "model_performance_preservation/ce_loss_with_ablation"), 1e-12);

  // A transcoder whose output hook comes first, or that names none, is refused.
  auto bad = make_sae(tc);
  bad->cfg().hook_name_out = "blocks.0.hook_resid_pre";
  EXPECT_THROW(evaluate_sae_on_model(model64, *bad, in, std::nullopt, batches, eo), Error);
  bad->cfg().hook_name_out = "";
  EXPECT_THROW(evaluate_sae_on_model(model64, *bad, in, std::nullopt, batches, eo), Error);
}

}  // namespace
}  // namespace saelab
