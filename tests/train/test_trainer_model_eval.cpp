// The model-based evals inside training (TrainerOptions::model_eval, sources.h make_model_eval) on
// a tiny random GPT-2 built in memory: the eval names are logged at the eval step
// (wandb_log_frequency × eval_every_n_wandb_logs) and at the end, nowhere else; the end-of-run
// summary carries them; make_model_eval reuses the store's model; and the final CE / KL / explained
// variance figures match an independent float64 computation on the same prompts (the SAE by hand,
// the splice through run_with_hooks, log-softmax by tensor ops).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <set>

#include "model/test_transformer_models.h"
#include "saelab/config/runner_config.h"
#include "saelab/core/json.h"
#include "saelab/data/token_source.h"
#include "saelab/model/hooks.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"
#include "saelab/store/activations_store.h"
#include "saelab/train/sources.h"
#include "saelab/train/trainer.h"
#include "test_util.h"

namespace saelab {
namespace {

const std::string kHook = "blocks.0.hook_resid_post";
constexpr int64_t kRows = 12, kCtx = 8;

// kRows rows of kCtx random ids in [0, 49): each row is one window.
at::Tensor write_dataset(const std::string& path) {
  at::manual_seed(11);
  at::Tensor ids = torch::randint(0, 49, {kRows, kCtx}, torch::kLong);
  std::string text;
  for (int64_t r = 0; r < kRows; ++r) {
    std::vector<int64_t> row(ids[r].data_ptr<int64_t>(), ids[r].data_ptr<int64_t>() + kCtx);
    text += json{{"input_ids", row}}.dump() + "\n";
  }
  test::write_text(path, text);
  return ids;
}

RunnerConfig lm_config(const std::string& dataset) {
  RunnerConfig c;
  c.model_name = "tiny-gpt2";
  c.hook_name = kHook;
  c.hook_layer = 0;
  c.d_in = 16;
  c.d_sae = 32;
  c.dataset_path = dataset;
  c.is_dataset_tokenized = true;
  c.context_size = kCtx;
  c.prepend_bos = false;
  c.architecture = "standard";
  c.b_dec_init_method = "zeros";
  c.l1_coefficient = 0.01;
  c.lr = 1e-2;
  c.train_batch_size_tokens = 16;
  c.training_tokens = 16 * 8;  // 8 steps
  c.n_batches_in_buffer = 2;
  c.store_batch_size_prompts = 4;
  c.wandb_log_frequency = 2;
  c.eval_every_n_wandb_logs = 3;  // evals at step 6, and the final one at step 8
  c.n_eval_batches = 3;
  c.eval_batch_size_prompts = 4;  // 3 × 4 = the 12 windows of the dataset, one pass
  c.feature_sampling_window = 1000;
  c.log_to_wandb = false;
  c.run_name = "lm";
  return resolve_runner_config(c, "test");
}

std::unique_ptr<ActivationsStore> make_store(std::shared_ptr<const Transformer> model,
                                             const RunnerConfig& c) {
  TokenSourceOptions to;
  to.dataset_path = c.dataset_path;
  to.context_size = c.context_size;
  to.prepend_bos = false;
  ActivationsStoreOptions so;
  so.model_name = c.model_name;
  so.dataset_name = c.dataset_path;
  so.hook_name = c.hook_name;
  so.context_size = c.context_size;
  so.n_batches_in_buffer = c.n_batches_in_buffer;
  so.store_batch_size_prompts = c.store_batch_size_prompts;
  so.train_batch_size_tokens = c.train_batch_size_tokens;
  so.background = false;
  so.token_source = to;
  return std::make_unique<ActivationsStore>(model, open_token_source(to), so);
}

std::vector<json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

const char* kEvalNames[] = {"model_performance_preservation/ce_loss_without_sae",
                            "model_performance_preservation/ce_loss_with_sae",
                            "model_performance_preservation/ce_loss_with_ablation",
                            "model_performance_preservation/ce_loss_score",
                            "model_behavior_preservation/kl_div_with_sae",
                            "model_behavior_preservation/kl_div_with_ablation",
                            "model_behavior_preservation/kl_div_score",
                            "reconstruction_quality/explained_variance",
                            "reconstruction_quality/mse",
                            "shrinkage/l2_ratio",
                            "sparsity/l0"};

struct Reference {
  double ce_clean = 0, ce_sae = 0, ce_abl = 0, kl_sae = 0, kl_abl = 0, ev = 0;
};

// Float64 throughout: the model's weights upcast, the standard SAE by hand.
Reference reference(const ModelConfig& mc, const test::Weights& w, const Sae& sae,
                    const at::Tensor& tokens) {
  test::Weights w64;
  for (const auto& [k, v] : w) w64[k] = v.to(at::kDouble);
  Transformer model(mc, w64);
  auto p = [&](const char* n) { return sae.param(n).to(at::kDouble); };
  at::Tensor x = model.run_with_cache(tokens, {kHook}).at(kHook).to(at::kDouble);
  at::Tensor xin = sae.cfg().apply_b_dec_to_input ? x - p("b_dec") : x;
  at::Tensor f = torch::relu(xin.matmul(p("W_enc")) + p("b_enc"));
  at::Tensor x_hat = f.matmul(p("W_dec")) + p("b_dec");
  at::Tensor logits_clean = model.run_with_hooks(tokens, {}).to(at::kDouble);
  at::Tensor logits_sae = model.run_with_hooks(
      tokens, {Hook{kHook, [&](const at::Tensor&, const std::string&) { return x_hat; }}});
  at::Tensor logits_abl = model.run_with_hooks(
      tokens,
      {Hook{kHook, [](const at::Tensor& a, const std::string&) { return torch::zeros_like(a); }}});
  const int64_t T = tokens.size(1);
  at::Tensor target = tokens.slice(1, 1).unsqueeze(-1);
  auto ce = [&](const at::Tensor& logits) {
    at::Tensor lp = torch::log_softmax(logits.to(at::kDouble), -1).slice(1, 0, T - 1);
    return -lp.gather(-1, target).mean().item<double>();
  };
  at::Tensor lp_clean = torch::log_softmax(logits_clean, -1);
  auto kl = [&](const at::Tensor& logits) {
    at::Tensor lp = torch::log_softmax(logits.to(at::kDouble), -1);
    return (lp_clean.exp() * (lp_clean - lp)).sum(-1).mean().item<double>();
  };
  Reference r;
  r.ce_clean = ce(logits_clean);
  r.ce_sae = ce(logits_sae);
  r.ce_abl = ce(logits_abl);
  r.kl_sae = kl(logits_sae);
  r.kl_abl = kl(logits_abl);
  at::Tensor xf = x.reshape({-1, x.size(-1)}), xh = x_hat.reshape({-1, x.size(-1)});
  r.ev =
      1.0 - (xf - xh).pow(2).sum().item<double>() / (xf - xf.mean(0)).pow(2).sum().item<double>();
  return r;
}

TEST(TrainerModelEval, LogsTheEvalNamesAtTheEvalStepAndAtTheEnd) {
  test::TempDir dir;
  const std::string data = dir / "tokens.jsonl";
  at::Tensor tokens = write_dataset(data);
  const RunnerConfig cfg = lm_config(data);
  const ModelConfig mc = test::tiny_gpt2();
  const test::Weights w = test::tiny_weights(mc, 7);
  auto model = std::make_shared<const Transformer>(mc, w);

  auto store = make_store(model, cfg);
  const long uses = store->model().use_count();
  TrainerOptions opts;
  opts.run_dir = dir / "run";
  opts.progress = false;
  opts.quiet = true;
  opts.summary_eval_batches = 2;
  opts.model_eval = make_model_eval(cfg, *store);
  ASSERT_TRUE(static_cast<bool>(opts.model_eval));
  // The eval holds the store's model (one more owner), it does not load another.
  EXPECT_EQ(store->model().use_count(), uses + 1);
  EXPECT_EQ(store->model().get(), model.get());

  Trainer trainer(cfg, std::move(store), opts);
  TrainSummary s = trainer.run();
  ASSERT_TRUE(s.completed);
  ASSERT_EQ(s.steps, 8);

  // Which steps carry the eval names: 6 (= 2 × 3) and 8 (the end), in lines of their own.
  std::set<int64_t> eval_steps;
  for (const json& line : read_lines(opts.run_dir + "/metrics.jsonl")) {
    if (!line.contains("model_performance_preservation/ce_loss_score")) continue;
    eval_steps.insert(line["step"].get<int64_t>());
    for (const char* k : kEvalNames) EXPECT_TRUE(line.contains(k)) << k << " in " << line.dump();
    // The trainer's own window-based counts are not overwritten by an eval's.
    for (const auto& k : kModelEvalSkippedKeys)
      EXPECT_FALSE(line.contains(k)) << k << " in " << line.dump();
    EXPECT_FALSE(line.contains("losses/mse_loss")) << line.dump();
  }
  EXPECT_EQ(eval_steps, (std::set<int64_t>{6, 8}));

  // The summary: every eval name, the counts of the eval, and the values logged at the end.
  for (const char* k : kEvalNames) ASSERT_TRUE(s.eval.contains(k)) << k << " in " << s.eval.dump();
  EXPECT_EQ(s.eval.at("n_model_eval_prompts").get<int64_t>(), kRows);
  EXPECT_EQ(s.eval.at("n_model_eval_tokens").get<int64_t>(), kRows * kCtx);
  json last;
  for (const json& line : read_lines(opts.run_dir + "/metrics.jsonl"))
    if (line["step"] == 8 && line.contains("model_performance_preservation/ce_loss_score"))
      last = line;
  ASSERT_TRUE(last.is_object());
  for (const char* k : kEvalNames)
    EXPECT_DOUBLE_EQ(last.at(k).get<double>(), s.eval.at(k).get<double>()) << k;

  // Against float64 on the same 12 prompts (one pass over the dataset: the order does not matter).
  auto sae = trainer.inference_sae();
  Reference r = reference(mc, w, *sae, tokens);
  auto got = [&](const char* k) { return s.eval.at(k).get<double>(); };
  const std::string ce = "model_performance_preservation/", kl = "model_behavior_preservation/";
  EXPECT_NEAR(got((ce + "ce_loss_without_sae").c_str()), r.ce_clean, 1e-4 * r.ce_clean);
  EXPECT_NEAR(got((ce + "ce_loss_with_sae").c_str()), r.ce_sae, 1e-4 * r.ce_sae);
  EXPECT_NEAR(got((ce + "ce_loss_with_ablation").c_str()), r.ce_abl, 1e-4 * r.ce_abl);
  EXPECT_NEAR(got((ce + "ce_loss_score").c_str()), (r.ce_abl - r.ce_sae) / (r.ce_abl - r.ce_clean),
              1e-3);
  EXPECT_NEAR(got((kl + "kl_div_with_sae").c_str()), r.kl_sae, 1e-4 * r.kl_sae + 1e-5);
  EXPECT_NEAR(got((kl + "kl_div_score").c_str()), (r.kl_abl - r.kl_sae) / r.kl_abl, 1e-3);
  EXPECT_NEAR(got("reconstruction_quality/explained_variance"), r.ev, 1e-4);
}

TEST(TrainerModelEval, NoEvalBatchesMeansNoEval) {
  test::TempDir dir;
  const std::string data = dir / "tokens.jsonl";
  write_dataset(data);
  RunnerConfig cfg = lm_config(data);
  cfg.n_eval_batches = 0;
  const ModelConfig mc = test::tiny_gpt2();
  auto model = std::make_shared<const Transformer>(mc, test::tiny_weights(mc, 7));
  auto store = make_store(model, cfg);
  EXPECT_FALSE(static_cast<bool>(make_model_eval(cfg, *store)));
}

TEST(TrainerModelEval, HeldOutSkipCoversTheRunsWindows) {
  RunnerConfig c = lm_config("unused.jsonl");
  // ceil((training_tokens + max(train_batch_size_tokens, 8192)) / context_size) + buffer windows.
  EXPECT_EQ(model_eval_skip_windows(c), (128 + 8192 + kCtx - 1) / kCtx + 2 * 4);
}

}  // namespace
}  // namespace saelab
