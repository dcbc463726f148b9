// `saelab eval --model DIR --dataset FILE`: the model-based evals end to end on the tiny GPT-2
// folder written by tests/fixtures/model/make_tiny_models.py, a pretokenized jsonl dataset and SAEs
// written by save_sae; the exact-reconstruction SAE must score 1, and a d_in mismatch is a one-line
// error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "model/test_load_fixtures.h"
#include "saelab/core/json.h"
#include "saelab/sae/sae.h"
#include "test_util.h"

namespace saelab {
namespace {

using test::run_saelab;
using test::shell_quote;

const std::string kHook = "blocks.0.hook_resid_post";

// d_sae = 2 d_in, W_enc = [I, −I], W_dec = [I; −I]: x̂ = x exactly.
void write_exact_sae(const std::string& dir, int64_t d_in) {
  SaeConfig cfg;
  cfg.architecture = "standard";
  cfg.d_in = d_in;
  cfg.d_sae = 2 * d_in;
  cfg.apply_b_dec_to_input = false;
  cfg.model_name = "tiny-gpt2";
  cfg.hook_name = kHook;
  cfg.hook_layer = 0;
  cfg.context_size = 8;
  auto sae = make_sae(cfg);
  at::Tensor eye = torch::eye(d_in);
  sae->params()["W_enc"] = torch::cat({eye, -eye}, 1);
  sae->params()["W_dec"] = torch::cat({eye, -eye}, 0);
  save_sae(*sae, dir);
}

// Rows of 8 ids, each starting with the model's BOS (49).
void write_dataset(const std::string& path, int rows) {
  at::manual_seed(3);
  at::Tensor ids = torch::randint(0, 49, {rows, 8}, torch::kLong);
  std::string text;
  for (int r = 0; r < rows; ++r) {
    json row = json::array({49});
    for (int t = 1; t < 8; ++t) row.push_back(ids[r][t].item<int64_t>());
    text += json{{"input_ids", row}}.dump() + "\n";
  }
  test::write_text(path, text);
}

TEST(EvalModelCli, JsonHasEveryMetricAndExactSaeScoresOne) {
  test::TempDir d;
  const std::string sae = d.path() + "/sae", data = d.path() + "/tokens.jsonl";
  write_exact_sae(sae, 16);
  write_dataset(data, 5);
  auto r = run_saelab("eval --sae " + shell_quote(sae) + " --model " +
                      shell_quote(test::tiny_model("gpt2")) + " --dataset " + shell_quote(data) +
                      " --n-eval-batches 3 --batch-size-prompts 2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  json m = json::parse(r.out);
  for (const char* k : {"model_performance_preservation/ce_loss_without_sae",
                        "model_performance_preservation/ce_loss_with_sae",
                        "model_performance_preservation/ce_loss_with_ablation",
                        "model_performance_preservation/ce_loss_score",
                        "model_behavior_preservation/kl_div_with_sae",
                        "model_behavior_preservation/kl_div_with_ablation",
                        "model_behavior_preservation/kl_div_score",
                        "reconstruction_quality/explained_variance",
                        "reconstruction_quality/mse",
                        "reconstruction_quality/cossim",
                        "shrinkage/l2_norm_in",
                        "shrinkage/l2_norm_out",
                        "shrinkage/l2_ratio",
                        "shrinkage/relative_reconstruction_bias",
                        "sparsity/l0",
                        "sparsity/l1",
                        "sparsity/dead_features",
                        "sparsity/dense_features",
                        "sparsity/below_1e-5",
                        "sparsity/below_1e-6",
                        "sparsity/consistent_activation_heuristic",
                        "n_tokens",
                        "n_prompts"})
    EXPECT_TRUE(m.contains(k) && m.at(k).is_number()) << k << " in " << r.out;
  EXPECT_EQ(m.at("n_prompts").get<int64_t>(), 5);     // 2 + 2 + 1: the data ran out
  EXPECT_EQ(m.at("n_tokens").get<int64_t>(), 5 * 7);  // BOS (49) excluded
  EXPECT_NEAR(m.at("model_performance_preservation/ce_loss_score").get<double>(), 1.0, 1e-5);
  EXPECT_NEAR(m.at("model_behavior_preservation/kl_div_score").get<double>(), 1.0, 1e-5);
  EXPECT_NEAR(m.at("reconstruction_quality/explained_variance").get<double>(), 1.0, 1e-5);
  // CE of a 50-token vocabulary model on random ids: positive and finite.
  // The log10 density histogram: every latent counted once, the dead ones in the first bin.
  const json& h = m.at("plots/feature_density_line_chart");
  ASSERT_EQ(h.at("counts").size(), 50u);
  ASSERT_EQ(h.at("bin_edges").size(), 51u);
  int64_t latents = 0;
  for (const auto& c : h.at("counts")) latents += c.get<int64_t>();
  EXPECT_EQ(latents, 32);
  EXPECT_EQ(h.at("counts")[0].get<int64_t>(), m.at("sparsity/dead_features").get<int64_t>());
  const double ce = m.at("model_performance_preservation/ce_loss_without_sae").get<double>();
  EXPECT_GT(ce, 0.0);
  EXPECT_TRUE(std::isfinite(ce));

  // The table form names the groups.
  auto t = run_saelab("eval --sae " + shell_quote(sae) + " --model " +
                      shell_quote(test::tiny_model("gpt2")) + " --dataset " + shell_quote(data) +
                      " --n-eval-batches 1 --batch-size-prompts 2");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find("model_performance_preservation"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("ce_loss_score"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("feature density histogram"), std::string::npos) << t.out;
}

TEST(EvalModelCli, DinMismatchIsOneLineError) {
  test::TempDir d;
  const std::string sae = d.path() + "/sae", data = d.path() + "/tokens.jsonl";
  write_exact_sae(sae, 8);
  write_dataset(data, 2);
  auto r = run_saelab("eval --sae " + shell_quote(sae) + " --model " +
                      shell_quote(test::tiny_model("gpt2")) + " --dataset " + shell_quote(data) +
                      " --json");
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("d_in = 8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("width 16"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace
}  // namespace saelab
