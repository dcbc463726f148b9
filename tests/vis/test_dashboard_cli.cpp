// `saelab vis` end to end on the tiny GPT-2 fixture (tests/fixtures/model/make_tiny_models.py) at
// blocks.0.hook_resid_pre, where the test computes the activations itself in float64:
// x = W_E[token] + W_pos[position], acts = relu((x - b_dec) W_enc + b_enc). The --json contract,
// the Neuronpedia bodies and the one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "model/test_load_fixtures.h"
#include "saelab/core/json.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"
#include "test_util.h"
#include "vis/dashboard_fixture.h"

namespace saelab {
namespace {

using test::run_saelab;
using test::shell_quote;

json read_json(const std::string& path) {
  std::ifstream in(path);
  json j;
  in >> j;
  return j;
}

TEST(VisCli, JsonMatchesFloat64Reference) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 6, 12);
  auto r = run_saelab(fx.args + " --features 0,3,5,19 --top-k 5 --quantile-groups 4 " +
                      "--examples-per-group 2 --window 3 --out " + shell_quote(d / "dash.html") +
                      " --json " + shell_quote(d / "stats.json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json st = read_json(d / "stats.json");
  const test::VisReference ref = test::vis_reference(fx, /*include_bos=*/false);
  EXPECT_EQ(st["loss_effects"], "computed");
  LoadedWeights lw = load_model_weights(test::tiny_model("gpt2"));
  for (auto& [k, v] : lw.weights) v = v.to(torch::kDouble);
  const Transformer model64(lw.cfg, lw.weights);
  EXPECT_EQ(st["n_tokens"].get<int64_t>(), 6 * 11);  // BOS (49) at position 0 is not counted
  ASSERT_EQ(st["features"].size(), 4u);
  for (const auto& f : st["features"]) {
    const int64_t i = f["index"].get<int64_t>();
    SCOPED_TRACE("latent " + std::to_string(i));
    const at::Tensor a = ref.acts.select(2, i);  // [prompts, ctx] float64
    const at::Tensor counted = a.index({ref.counted});
    const int64_t fires = counted.gt(0).sum().item<int64_t>();
    EXPECT_NEAR(f["density"].get<double>(), double(fires) / (6 * 11), 1e-12);
    EXPECT_NEAR(f["max_act"].get<double>(), fires ? counted.max().item<double>() : 0.0, 1e-4);
    if (fires) EXPECT_NEAR(f["mean_act"].get<double>(), counted.sum().item<double>() / fires, 1e-4);
    // Top examples: the largest counted acts, with their ids and context acts.
    std::vector<std::tuple<double, int64_t, int64_t>> all;
    for (int64_t b = 0; b < 6; ++b)
      for (int64_t t = 1; t < 12; ++t)
        if (a[b][t].item<double>() > 0) all.push_back({a[b][t].item<double>(), b, t});
    std::sort(all.begin(), all.end(),
              [](auto& x, auto& y) { return std::get<0>(x) > std::get<0>(y); });
    const auto& top = f["top_examples"];
    ASSERT_EQ(top.size(), std::min<size_t>(5, all.size()));
    for (size_t k = 0; k < top.size(); ++k) {
      const auto [v, b, t] = all[k];
      EXPECT_EQ(top[k]["prompt"].get<int64_t>(), b);
      EXPECT_EQ(top[k]["position"].get<int64_t>(), t);
      EXPECT_NEAR(top[k]["act"].get<double>(), v, 1e-4);
      const int64_t start = std::max<int64_t>(0, t - 3);
      EXPECT_EQ(top[k]["context_start"].get<int64_t>(), start);
      for (size_t c = 0; c < top[k]["token_ids"].size(); ++c) {
        EXPECT_EQ(top[k]["token_ids"][c].get<int64_t>(), fx.tokens[b][start + c].item<int64_t>());
        EXPECT_NEAR(top[k]["acts"][c].get<double>(), a[b][start + c].item<double>(), 1e-4);
      }
      // Loss effect: the next-token CE at t with act · W_dec[i] removed from the hook there,
      // minus the clean CE, with the float64 model; null at the window's last position.
      if (t + 1 >= 12) {
        EXPECT_TRUE(top[k]["loss_effect"].is_null());
        continue;
      }
      const at::Tensor delta = ref.W_dec[i] * v;
      Hook h{test::kVisHook, [&](const at::Tensor& x, const std::string&) {
               at::Tensor r = x.clone();
               r[0][t] -= delta;
               return r;
             }};
      const at::Tensor row = fx.tokens[b].unsqueeze(0);
      const int64_t next = fx.tokens[b][t + 1].item<int64_t>();
      const double want =
          -model64.run_with_hooks(row, {h})[0][t].log_softmax(-1)[next].item<double>() +
          model64.forward(row)[0][t].log_softmax(-1)[next].item<double>();
      ASSERT_TRUE(top[k]["loss_effect"].is_number()) << top[k].dump();
      EXPECT_NEAR(top[k]["loss_effect"].get<double>(), want, 1e-4 * (1 + std::abs(want)));
    }
    if (fires == 0) {
      EXPECT_TRUE(top.empty());
      EXPECT_TRUE(f["quantile_groups"].empty());
    } else {
      int64_t total = 0;
      for (const auto& c : f["histogram"]["counts"]) total += c.get<int64_t>();
      EXPECT_EQ(total, fires);
      int64_t in_bands = 0;
      for (const auto& g : f["quantile_groups"]) in_bands += g["count"].get<int64_t>();
      EXPECT_EQ(in_bands, fires);
    }
    // Logit effects W_dec[i] @ W_U and decoder neighbours, in float64.
    const at::Tensor eff = ref.W_dec[i].matmul(ref.W_U);
    const auto [tv, ti] = eff.topk(10);
    const auto [bv, bi] = eff.topk(10, 0, false);
    ASSERT_EQ(f["top_logits"].size(), 10u);
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(f["top_logits"][k]["token_id"].get<int64_t>(), ti[k].item<int64_t>());
      EXPECT_NEAR(f["top_logits"][k]["value"].get<double>(), tv[k].item<double>(), 1e-4);
      EXPECT_EQ(f["bottom_logits"][k]["token_id"].get<int64_t>(), bi[k].item<int64_t>());
      EXPECT_NEAR(f["bottom_logits"][k]["value"].get<double>(), bv[k].item<double>(), 1e-4);
    }
    const at::Tensor Wn = ref.W_dec / ref.W_dec.norm(2, 1, true);
    at::Tensor cos = Wn.matmul(Wn[i]);
    cos[i] = -2;
    const auto [cv, ci] = cos.topk(10);
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(f["neighbours"][k]["index"].get<int64_t>(), ci[k].item<int64_t>());
      EXPECT_NEAR(f["neighbours"][k]["cosine"].get<double>(), cv[k].item<double>(), 1e-5);
    }
    // Pearson r over counted tokens with every other latent (d_sae 20: all are candidates).
    const at::Tensor A = ref.acts.index({ref.counted});  // [n, d_sae]
    const at::Tensor xi = A.select(1, i) - A.select(1, i).mean();
    for (const auto& c : f["correlated"]) {
      const int64_t j = c["index"].get<int64_t>();
      const at::Tensor xj = A.select(1, j) - A.select(1, j).mean();
      const double want =
          (xi * xj).sum().item<double>() /
          std::sqrt((xi * xi).sum().item<double>() * (xj * xj).sum().item<double>());
      EXPECT_NEAR(c["corr"].get<double>(), want, 1e-4) << "with " << j;
    }
  }

  // With the flag, BOS positions are counted.
  auto r2 = run_saelab(fx.args + " --features 0 --include-special-tokens --out " +
                       shell_quote(d / "d2.html") + " --json " + shell_quote(d / "s2.json"));
  ASSERT_EQ(r2.rc, 0) << r2.err;
  const json s2 = read_json(d / "s2.json");
  EXPECT_EQ(s2["n_tokens"].get<int64_t>(), 6 * 12);
  const test::VisReference ref2 = test::vis_reference(fx, true);
  const at::Tensor a0 = ref2.acts.select(2, 0);
  EXPECT_NEAR(s2["features"][0]["density"].get<double>(), a0.gt(0).sum().item<double>() / 72.0,
              1e-12);
}

TEST(VisCli, NeuronpediaBodiesFollowTheUploadSchema) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 4, 12);
  auto r = run_saelab(fx.args + " --select all --out " + shell_quote(d / "dash.html") + " --json " +
                      shell_quote(d / "stats.json") + " --neuronpedia " + shell_quote(d / "np") +
                      " --neuronpedia-model-id GPT2-Small --neuronpedia-source 0-res-test");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json st = read_json(d / "stats.json");
  std::map<int64_t, json> by_index;
  for (const auto& f : st["features"]) by_index[f["index"].get<int64_t>()] = f;
  const json body = read_json(d / "np/batch-0000.json");
  EXPECT_EQ(body["modelId"], "gpt2-small");
  EXPECT_EQ(body["source"], "0-res-test");
  ASSERT_GE(body["features"].size(), 1u);
  ASSERT_LE(body["features"].size(), 128u);
  for (const auto& f : body["features"]) {
    const json& s = by_index.at(f["index"].get<int64_t>());
    EXPECT_EQ(f["density"], s["density"]);
    EXPECT_LE(f["topLogits"].size(), 20u);
    EXPECT_EQ(f["topLogits"][0]["value"], s["top_logits"][0]["value"]);
    EXPECT_TRUE(f["topLogits"][0]["token"].is_string());
    ASSERT_GE(f["activations"].size(), 1u);
    // The first activation is the top example: its values (0 at BOS, which is never counted), and
    // so its max where the example is.
    const auto& a = f["activations"][0];
    ASSERT_EQ(a["tokens"].size(), a["values"].size());
    const auto& ex = s["top_examples"][0];
    for (size_t k = 0; k < a["values"].size(); ++k)
      EXPECT_EQ(a["values"][k].get<double>(),
                ex["token_ids"][k] == 49 ? 0.0 : ex["acts"][k].get<double>());
    const auto& v = a["values"];
    const size_t argmax = std::max_element(v.begin(), v.end()) - v.begin();
    EXPECT_EQ(int64_t(argmax), ex["position"].get<int64_t>() - ex["context_start"].get<int64_t>());
    for (const auto& act : f["activations"])
      if (act.contains("quantileFraction")) {
        EXPECT_GE(act["quantileFraction"].get<double>(), 0.0);
        EXPECT_LE(act["quantileFraction"].get<double>(), 1.0);
      }
  }
}

void expect_one_line_error(const test::CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

// `saelab vis` on the fixture with extra options; its --json statistics.
json vis_stats(const test::VisFixture& fx, const test::TempDir& d, const std::string& extra) {
  auto r = run_saelab(fx.args + " " + extra + " --out " + shell_quote(d / "dash.html") +
                      " --json " + shell_quote(d / "stats.json"));
  EXPECT_EQ(r.rc, 0) << r.err;
  return r.rc == 0 ? read_json(d / "stats.json") : json::object();
}

// --select density (the default) picks the latents firing most often over all the windows' counted
// positions, not over the first batch (--batch-size-prompts 4 of 6 prompts here).
TEST(VisCli, SelectDensityCountsEveryWindow) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 6, 12);
  const json st = vis_stats(fx, d, "--n-features 5");
  ASSERT_TRUE(st.contains("features"));
  const test::VisReference ref = test::vis_reference(fx, /*include_bos=*/false);
  const at::Tensor fires = ref.acts.index({ref.counted}).gt(0).sum(0);  // [20]
  std::vector<std::pair<int64_t, int64_t>> order;                       // (-fires, index)
  for (int64_t i = 0; i < 20; ++i) order.push_back({-fires[i].item<int64_t>(), i});
  std::sort(order.begin(), order.end());
  std::vector<int64_t> want;
  for (int64_t k = 0; k < 5 && order[k].first < 0; ++k) want.push_back(order[k].second);
  std::sort(want.begin(), want.end());
  std::vector<int64_t> got;
  for (const auto& f : st["features"]) got.push_back(f["index"].get<int64_t>());
  EXPECT_EQ(got, want);
  EXPECT_EQ(st["n_prompts"], 6);  // the statistics pass read every window once
  EXPECT_EQ(st["n_tokens"], 6 * 11);
}

// With few selected latents, "correlated" ranks every other latent of the SAE: d_sae 64 is more
// than the 32 decoder-nearest candidates used above the pair budget.
TEST(VisCli, CorrelationsRankEveryLatent) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 64, 6, 12);
  const json st = vis_stats(fx, d, "--features 0,1");
  ASSERT_TRUE(st.contains("features"));
  EXPECT_EQ(st["correlated_over"], "all latents");
  const test::VisReference ref = test::vis_reference(fx, /*include_bos=*/false);
  const at::Tensor A = ref.acts.index({ref.counted});  // [n, 64]
  const at::Tensor C = A - A.mean(0, true);
  const at::Tensor norm = C.pow(2).sum(0).sqrt();
  for (const auto& f : st["features"]) {
    const int64_t i = f["index"].get<int64_t>();
    at::Tensor rr = C.select(1, i).matmul(C) / (norm[i] * norm);  // r with every latent
    rr.masked_fill_(norm.eq(0), -2);                              // undefined: not listed
    rr[i] = -2;
    const auto [rv, ri] = rr.topk(10);
    ASSERT_EQ(f["correlated"].size(), 10u);
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(f["correlated"][k]["index"].get<int64_t>(), ri[k].item<int64_t>()) << k;
      EXPECT_NEAR(f["correlated"][k]["corr"].get<double>(), rv[k].item<double>(), 1e-4) << k;
    }
  }
}

// A transcoder from ln1.hook_normalized (not a residual hook: an SAE there has no logit effects)
// to hook_mlp_out: its latents' logit effects are W_dec[i] @ W_U, through the hook it writes.
TEST(VisCli, TranscoderLogitEffectsGoThroughItsOutputHook) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 4, 12);
  SaeConfig cfg;
  cfg.architecture = "standard";
  cfg.d_in = 16;
  cfg.d_out = 16;
  cfg.d_sae = 12;
  cfg.apply_b_dec_to_input = false;
  cfg.model_name = "tiny-gpt2";
  cfg.hook_name = "blocks.0.ln1.hook_normalized";
  cfg.hook_name_out = "blocks.0.hook_mlp_out";
  cfg.context_size = 12;
  auto tc = make_sae(cfg);
  at::manual_seed(5);
  for (auto& [name, p] : tc->params()) p = torch::randn(p.sizes()) * 0.5;
  save_sae(*tc, d / "tc");
  auto r = run_saelab(
      "vis --sae " + shell_quote(d / "tc") + " --model " + shell_quote(test::tiny_model("gpt2")) +
      " --dataset " + shell_quote(fx.dataset) + " --n-prompts 4 --context-size 12 --features 0,7" +
      " --out " + shell_quote(d / "tc.html") + " --json " + shell_quote(d / "tc.json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json st = read_json(d / "tc.json");
  const at::Tensor W_U =
      load_model_weights(test::tiny_model("gpt2")).weights.at("unembed.W_U").to(torch::kDouble);
  ASSERT_EQ(st["features"].size(), 2u);
  EXPECT_EQ(st["loss_effects"], "computed");  // at the output hook (loss_effects.h)
  for (const auto& f : st["features"]) {
    const int64_t i = f["index"].get<int64_t>();
    for (const auto& e : f["top_examples"])
      EXPECT_EQ(e["loss_effect"].is_number(), e["position"].get<int64_t>() + 1 < 12) << e.dump();
    const at::Tensor eff = tc->param("W_dec")[i].to(torch::kDouble).matmul(W_U);
    const auto [tv, ti] = eff.topk(10);
    ASSERT_EQ(f["top_logits"].size(), 10u);
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(f["top_logits"][k]["token_id"].get<int64_t>(), ti[k].item<int64_t>());
      EXPECT_NEAR(f["top_logits"][k]["value"].get<double>(), tv[k].item<double>(), 1e-4);
    }
  }
  // Above --loss-effect-limit top examples, none is computed, and the file says why.
  r = run_saelab("vis --sae " + shell_quote(d / "tc") + " --model " +
                 shell_quote(test::tiny_model("gpt2")) + " --dataset " + shell_quote(fx.dataset) +
                 " --n-prompts 4 --context-size 12 --features 0,7 --loss-effect-limit 3 --out " +
                 shell_quote(d / "tc.html") + " --json " + shell_quote(d / "tc.json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json lim = read_json(d / "tc.json");
  EXPECT_EQ(lim["loss_effects"].get<std::string>().rfind("not computed", 0), 0u) << lim.dump();
  for (const auto& f : lim["features"])
    for (const auto& e : f["top_examples"]) EXPECT_TRUE(e["loss_effect"].is_null());
}

// The seed's probes come as `linear_probes.pt` (torch.save of a dict of [d_in, 8, 8] tensors):
// written here by Debian's python3-torch, read by --probe, cosines against a float64 computation.
TEST(VisCli, ProbesFromATorchSaveFile) {
  if (!test::python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  test::TempDir d;
  test::write_vis_sae(d / "sae", 16, 12);
  const json probes = json::parse(test::run_python(R"PY(
import json, torch
g = torch.Generator().manual_seed(3)
p = {"theirs vs mine": torch.randn(16, 8, 8, generator=g), "empty": torch.randn(16, 8, 8, generator=g)}
torch.save(p, ")PY" + std::string(d / "linear_probes.pt") +
                                                   R"PY(")
print(json.dumps({k: v.flatten().tolist() for k, v in p.items()}))
)PY"));
  auto r = run_saelab("vis --sae " + shell_quote(d / "sae") + " --model " +
                      shell_quote(test::tiny_model("othello")) +
                      " --dataset othello --n-prompts 4 --context-size 20 --features 0,5 --probe " +
                      shell_quote(d / "linear_probes.pt") + " --out " + shell_quote(d / "o.html") +
                      " --json " + shell_quote(d / "o.json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json st = read_json(d / "o.json");
  auto sae = load_sae(d / "sae");
  for (const auto& f : st["features"]) {
    const int64_t i = f["index"].get<int64_t>();
    const at::Tensor dec = sae->param("W_dec")[i].to(torch::kDouble);
    for (const char* name : {"theirs vs mine", "empty"}) {
      const auto v = probes.at(name).get<std::vector<double>>();
      const at::Tensor P = torch::tensor(v, torch::kDouble).reshape({16, 64});
      const at::Tensor cos = (dec / dec.norm()).matmul(P / P.norm(2, 0, true));
      ASSERT_EQ(f["probes"][name]["output"].size(), 64u) << name;
      for (int64_t q = 0; q < 64; ++q)
        EXPECT_NEAR(f["probes"][name]["output"][q].get<double>(), cos[q].item<double>(), 1e-5)
            << name << " square " << q;
    }
  }
}

TEST(VisCli, BadInputIsOneLineError) {
  test::TempDir d;
  const auto fx = test::make_vis_fixture(d.path(), 20, 2, 12);
  const std::string out = " --out " + shell_quote(d / "x.html");
  expect_one_line_error(run_saelab(fx.args + " --features 3,20" + out), "d_sae = 20");

  test::write_vis_sae(d / "narrow", 8, 4);
  expect_one_line_error(run_saelab("vis --sae " + shell_quote(d / "narrow") + " --model " +
                                   shell_quote(test::tiny_model("gpt2")) + " --dataset " +
                                   shell_quote(fx.dataset) + out),
                        "d_in = 8");

  test::write_text(d / "bad.jsonl", "{\"input_ids\": [49, 1, 2, 3, 60, 5, 6, 7, 8, 9, 10, 11]}\n");
  expect_one_line_error(run_saelab("vis --sae " + shell_quote(fx.sae) + " --model " +
                                   shell_quote(test::tiny_model("gpt2")) + " --dataset " +
                                   shell_quote(d / "bad.jsonl") + " --context-size 12" + out),
                        "token id 60");

  expect_one_line_error(
      run_saelab("vis --sae " + shell_quote(fx.sae) + " --model " +
                 shell_quote(test::tiny_model("gpt2")) + " --prompt 'the cat' --position 40" + out),
      "--position: 40");
}

}  // namespace
}  // namespace saelab
