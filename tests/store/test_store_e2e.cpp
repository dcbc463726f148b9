// End to end through the CLI: a tiny random GPT-2 (Hugging Face folder written by Debian's
// python3 + torch) and a small pretokenized jsonl -> `saelab train` -> a SAELens-format SAE whose
// explained variance, computed here from the saved weights on freshly computed activations, is
// > 0.5; the same through `saelab cache` + cached training trains on the same token count; an
// interrupted cache resumes; a corrupt shard and a dataset that does not fit the model are errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "model/test_load_fixtures.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "test_util.h"

namespace {
using namespace saelab;
using test::run_saelab;
using test::shell_quote;
using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

const int64_t kRows = 512, kCtx = 16, kTokens = 32768;

// Rows of random ids in [0, 49) (the fixture's vocabulary is 50), seeded.
std::vector<std::vector<int64_t>> write_tokens(const std::string& path, int64_t bad_id = -1) {
  at::manual_seed(3);
  at::Tensor t = torch::randint(0, 49, {kRows, kCtx}, torch::kLong);
  if (bad_id >= 0) t[kRows / 2][3] = bad_id;
  std::string s;
  std::vector<std::vector<int64_t>> rows;
  for (int64_t r = 0; r < kRows; ++r) {
    std::vector<int64_t> row(t[r].data_ptr<int64_t>(), t[r].data_ptr<int64_t>() + kCtx);
    s += json{{"input_ids", row}}.dump() + "\n";
    rows.push_back(row);
  }
  write_text(path, s);
  return rows;
}

std::string config(const TempDir& d, const std::string& tokens) {
  return "model_name = " + json(test::tiny_model("gpt2")).dump() +
         "\nhook_name = \"blocks.0.hook_resid_post\"\nhook_layer = 0\nd_in = 16\n"
         "dataset_path = " +
         json(tokens).dump() +
         "\nis_dataset_tokenized = true\ncontext_size = 16\nprepend_bos = false\n"
         "architecture = \"standard\"\nexpansion_factor = 4\nb_dec_init_method = \"mean\"\n"
         "l1_coefficient = 0.001\nlr = 0.003\nadam_beta1 = 0.9\n"
         "training_tokens = " +
         std::to_string(kTokens) +
         "\ntrain_batch_size_tokens = 256\nn_batches_in_buffer = 8\nstore_batch_size_prompts = 16\n"
         "log_to_wandb = false\nwandb_log_frequency = 10\nseed = 1\ncheckpoint_path = " +
         json(d / "ckpt").dump() + "\ncached_activations_path = " + json(d / "cache").dump() + "\n";
}

json last_json_line(const std::string& out) {
  std::string line, last;
  for (char c : out) {
    if (c == '\n') {
      if (!line.empty()) last = line;
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) last = line;
  return parse_json(last, "stdout");
}

// Explained variance of a SAELens standard SAE on x, in float64: 1 - Σ|x - x̂|² / Σ|x - mean|².
double explained_variance(const std::string& sae_dir, const at::Tensor& x_in) {
  auto w = load_safetensors(sae_dir + "/sae_weights.safetensors");
  auto d = [&](const char* k) { return w.at(k).to(at::kDouble); };
  const at::Tensor x = x_in.to(at::kDouble);
  at::Tensor f = torch::relu((x - d("b_dec")).matmul(d("W_enc")) + d("b_enc"));
  at::Tensor xh = f.matmul(d("W_dec")) + d("b_dec");
  return 1.0 - (x - xh).pow(2).sum().item<double>() / (x - x.mean(0)).pow(2).sum().item<double>();
}

TEST(StoreEndToEnd, TrainCacheAndCachedTraining) {
  TempDir d;
  auto rows = write_tokens(d / "tokens.jsonl");
  write_text(d / "run.toml", config(d, d / "tokens.jsonl"));

  auto r = run_saelab("train " + shell_quote(d / "run.toml") + " --run-dir " +
                      shell_quote(d / "run1") + " --json");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const json s1 = last_json_line(r.out);
  EXPECT_EQ(s1["n_training_tokens"].get<int64_t>(), kTokens);
  ASSERT_TRUE(fs::exists(d / "run1/final/cfg.json"));
  const json cfg = read_json_file(d / "run1/final/cfg.json");
  EXPECT_EQ(cfg["hook_name"], "blocks.0.hook_resid_post");
  EXPECT_EQ(cfg["d_in"], 16);

  // Fresh activations of the first 128 rows, from the model loaded on its own.
  LoadedModel lm = load_model(test::tiny_model("gpt2"));
  at::Tensor toks = torch::empty({128, kCtx}, torch::kLong);
  for (int64_t i = 0; i < 128; ++i)
    for (int64_t p = 0; p < kCtx; ++p) toks[i][p] = rows[size_t(i)][size_t(p)];
  at::Tensor x = lm.model->run_with_cache(toks, {"blocks.0.hook_resid_post"})
                     .at("blocks.0.hook_resid_post")
                     .reshape({-1, 16});
  const double ev = explained_variance(d / "run1/final", x);
  EXPECT_GT(ev, 0.5);

  // The cache: exactly training_tokens rows in shards, listed in the manifest.
  r = run_saelab("cache " + shell_quote(d / "run.toml") + " --shard-tokens 5000 --json");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const json c1 = last_json_line(r.out);
  EXPECT_EQ(c1["tokens"].get<int64_t>(), kTokens);
  const json m = read_json_file(d / "cache/manifest.json");
  int64_t total = 0;
  for (const auto& sh : m["shards"])
    total += SafetensorsFile(d / ("cache/" + sh["file"].get<std::string>()))
                 .entry("activations")
                 .shape[0];
  EXPECT_EQ(total, kTokens);
  EXPECT_EQ(m["shards"].size(),
            size_t((kTokens + 5119) / 5120));  // shards of whole 16×16-token chunks
  EXPECT_EQ(m["hook_name"], "blocks.0.hook_resid_post");
  EXPECT_EQ(m["context_size"], 16);

  // The cache holds the model's activations in dataset order: shard 0 starts with row 0's.
  at::Tensor first = SafetensorsFile(d / "cache/shard_00000.safetensors").tensor("activations");
  EXPECT_TRUE(torch::allclose(first.slice(0, 0, 16 * 128), x, 1e-4, 1e-5));

  r = run_saelab("train " + shell_quote(d / "run.toml") + " --run-dir " + shell_quote(d / "run2") +
                 " --set use_cached_activations=true --json");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const json s2 = last_json_line(r.out);
  EXPECT_EQ(s2["n_training_tokens"].get<int64_t>(), kTokens);
  EXPECT_GT(explained_variance(d / "run2/final", x), 0.5);

  // An interrupted cache run resumes after the last shard its manifest lists.
  const std::string last = m["shards"].back()["file"].get<std::string>();
  const std::string last_bytes = read_file(d / ("cache/" + last));
  json cut = m;
  cut["shards"].erase(cut["shards"].size() - 1);
  cut["complete"] = false;
  write_text(d / "cache/manifest.json", cut.dump());
  fs::remove(d / ("cache/" + last));
  r = run_saelab("cache " + shell_quote(d / "run.toml") + " --shard-tokens 5000 --json");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  const json c2 = last_json_line(r.out);
  EXPECT_EQ(c2["resumed_shards"].get<int64_t>(), int64_t(m["shards"].size()) - 1);
  EXPECT_EQ(c2["tokens"].get<int64_t>(), kTokens);
  EXPECT_TRUE(read_file(d / ("cache/" + last)) == last_bytes) << "the rewritten shard differs";

  // A corrupt shard is an error naming it.
  {
    std::ofstream f(d / "cache/shard_00001.safetensors", std::ios::binary | std::ios::trunc);
    f << "garbage";
  }
  r = run_saelab("train " + shell_quote(d / "run.toml") + " --run-dir " + shell_quote(d / "run3") +
                 " --set use_cached_activations=true");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("shard_00001.safetensors"), std::string::npos) << r.err;
}

TEST(StoreEndToEnd, DatasetThatDoesNotFitTheModelStopsBeforeTraining) {
  TempDir d;
  write_tokens(d / "tokens.jsonl", 50);
  write_text(d / "run.toml", config(d, d / "tokens.jsonl"));
  auto r =
      run_saelab("train " + shell_quote(d / "run.toml") + " --run-dir " + shell_quote(d / "run"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("tokens.jsonl"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("token id 50"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(test::tiny_model("gpt2")), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(d / "run/final"));
  r = run_saelab("train " + shell_quote(d / "run.toml") + " --run-dir " + shell_quote(d / "run4") +
                 " --set d_in=32");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("d_in = 32"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("width 16"), std::string::npos) << r.err;
}

}  // namespace
