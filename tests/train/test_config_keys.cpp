// Every run-config key, set to a value other than its default, either changes what `saelab train`
// does or is refused with one line naming the key: no accepted key is silently ignored.
//
// A run is driven exactly as the CLI drives it (train/run.h: the run directory's name, resume,
// evals, messages), on three tiny sources written here: the toy model, a two-block random GPT-2
// with a token dataset, and a file of cached activations. What the run did is its fingerprint:
// the run directory's file names, the final SAE's tensors, metrics.jsonl (timings dropped) and
// the messages it printed. A key "changes the run" when its fingerprint differs from the same
// scenario's base run; "recorded" keys (metadata the saved SAE carries) must appear in
// final/cfg.json; every other key must be refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/train/run.h"
#include "test_util.h"
#include "train/tiny_lm_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

enum class Scenario { Toy, Model, Cache };
enum class Expect { Changes, Refused, Recorded };

struct KeyCase {
  std::string key;
  std::string value;  // a TOML value
  Scenario scenario = Scenario::Toy;
  Expect expect = Expect::Changes;
  std::vector<std::string> context = {};  // extra --set items, applied to the base run too
};

using test::kCtx;
using test::kDModel;
using test::kVocab;
using test::write_dataset;
using test::write_model;

// A byte-level BPE over a-z with no merges (each letter one token, ids 0..25) whose
// <|endoftext|> is the model's last id, BOS and EOS: what prepend_bos and the separator insert.
void write_tokenizer(const std::string& dir) {
  std::string vocab = "{";
  for (int i = 0; i < 26; ++i)
    vocab += "\"" + std::string(1, char('a' + i)) + "\": " + std::to_string(i) + ", ";
  vocab += "\"\\u0120\": 26, \"<|endoftext|>\": " + std::to_string(kVocab - 1) + "}";
  test::write_text(dir + "/vocab.json", vocab);
  test::write_text(dir + "/merges.txt", "#version: 0.2\n");
}

// 64 raw-text documents of 5..20 random letters, for the keys that pack raw text into windows.
void write_text_dataset(const std::string& path, uint64_t seed) {
  torch::manual_seed(seed);
  auto lengths = torch::randint(5, 21, {64}, torch::kLong);
  std::string text;
  for (int64_t r = 0; r < 64; ++r) {
    auto letters = torch::randint(0, 26, {lengths[r].item<int64_t>()}, torch::kLong);
    std::string doc;
    for (int64_t i = 0; i < letters.size(0); ++i) doc += char('a' + letters[i].item<int64_t>());
    text += json{{"text", doc}}.dump() + "\n";
  }
  test::write_text(path, text);
}

// A Hugging Face hub cache holding dataset saelab-test/keys at two revisions (main and v2), as
// `huggingface-cli download --repo-type dataset` leaves it.
void write_hub_dataset(const std::string& hub) {
  const std::string repo = hub + "/datasets--saelab-test--keys";
  const std::pair<const char*, uint64_t> revisions[] = {{"main", 21}, {"v2", 22}};
  for (const auto& [ref, seed] : revisions) {
    const std::string hash = std::string(ref) == "main" ? "1111" : "2222";
    fs::create_directories(repo + "/snapshots/" + hash + "/data");
    fs::create_directories(repo + "/refs");
    test::write_text(repo + "/refs/" + ref, hash);
    write_dataset(repo + "/snapshots/" + hash + "/data/train-00000-of-00001.jsonl", seed);
  }
}

class ConfigKeys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const std::string d = dir_->path();
    write_model(d + "/lm", 3);
    write_tokenizer(d + "/lm");
    write_text_dataset(d + "/text.jsonl", 6);
    write_model(d + "/lm_b", 13);
    write_dataset(d + "/data.jsonl", 4);
    write_dataset(d + "/data_b.jsonl", 14);
    fs::create_directories(d + "/split");
    write_dataset(d + "/split/train.jsonl", 4);
    write_dataset(d + "/split/test.jsonl", 14);
    write_hub_dataset(d + "/hub");
    setenv("HF_HUB_CACHE", (d + "/hub").c_str(), 1);
    torch::manual_seed(5);
    save_safetensors(d + "/cache.safetensors", {{"activations", torch::randn({4096, 8})}});
    save_safetensors(d + "/cache_b.safetensors", {{"activations", torch::randn({4096, 8}) * 2}});
    const std::string common =
        "training_tokens = 2048\ntrain_batch_size_tokens = 256\nlr = 0.003\n"
        "l1_coefficient = 0.5\nwandb_log_frequency = 2\nfeature_sampling_window = 4\n"
        "dead_feature_window = 2\nn_checkpoints = 0\nlog_to_wandb = false\nrun_name = \"keys\"\n"
        "seed = 7\nb_dec_init_method = \"zeros\"\n";
    test::write_text(d + "/toy.toml", common +
                                          "dataset_path = \"toy\"\nd_in = 8\nd_sae = 32\n"
                                          "toy_n_features = 16\ntoy_feature_probability = 0.05\n");
    test::write_text(
        d + "/model.toml",
        common + fmt::format("model_name = \"{}/lm\"\ndataset_path = \"{}/data.jsonl\"\n"
                             "hook_name = \"blocks.0.hook_resid_post\"\nhook_layer = 0\n"
                             "d_in = 16\nd_sae = 32\ncontext_size = {}\n"
                             "prepend_bos = false\nn_batches_in_buffer = 4\n"
                             "store_batch_size_prompts = 8\nn_eval_batches = 1\n"
                             "eval_batch_size_prompts = 4\neval_every_n_wandb_logs = 2\n",
                             d, d, kCtx));
    test::write_text(
        d + "/cache.toml",
        common + fmt::format("use_cached_activations = true\n"
                             "cached_activations_path = \"{}/cache.safetensors\"\n"
                             "d_in = 8\nd_sae = 32\nhook_name = \"blocks.0.hook_resid_post\"\n",
                             d));
  }
  static void TearDownTestSuite() {
    unsetenv("HF_HUB_CACHE");
    delete dir_;
    dir_ = nullptr;
  }

  static std::string config_path(Scenario s) {
    const char* name = s == Scenario::Toy ? "toy" : (s == Scenario::Model ? "model" : "cache");
    return dir_->path() + "/" + name + ".toml";
  }

  struct Outcome {
    bool refused = false;
    std::string error;
    std::string fingerprint;
    json cfg_json;
  };

  // Runs `saelab train CONFIG --set ...` in a fresh checkpoint_path and fingerprints it.
  static Outcome run(Scenario s, std::vector<std::string> sets) {
    static int n = 0;
    const std::string root = dir_->path() + "/runs/" + std::to_string(n++);
    fs::create_directories(root);
    bool sets_checkpoint_path = false;
    for (const auto& item : sets) sets_checkpoint_path |= item.rfind("checkpoint_path=", 0) == 0;
    if (!sets_checkpoint_path) sets.push_back("checkpoint_path=" + root);
    TrainRequest r;
    r.config = config_path(s);
    r.sets = sets;
    r.quiet = true;
    r.write_report = false;  // the report is tested in tests/vis; it changes no run file
    char* buf = nullptr;
    size_t len = 0;
    std::FILE* msg = open_memstream(&buf, &len);
    r.messages = msg;
    Outcome o;
    try {
      TrainOutcome t = run_training(r);
      last_run_dir_ = t.run_dir;
      std::fclose(msg);
      std::string messages(buf, len);
      std::free(buf);
      o.fingerprint = fingerprint(t.run_dir, messages, sets_checkpoint_path ? "" : root);
      if (fs::exists(t.run_dir + "/final/cfg.json"))
        o.cfg_json = read_json_file(t.run_dir + "/final/cfg.json");
    } catch (const Error& e) {
      std::fclose(msg);
      std::free(buf);
      o.refused = true;
      o.error = e.what();
    }
    return o;
  }

  static std::string fingerprint(const std::string& run_dir, std::string messages,
                                 const std::string& root) {
    std::ostringstream f;
    auto relative = [&](std::string p) {
      if (!root.empty() && p.rfind(root, 0) == 0) p = "ROOT" + p.substr(root.size());
      return p;
    };
    f << "dir " << relative(run_dir) << "\n";
    std::set<std::string> files;
    for (auto& e : fs::recursive_directory_iterator(run_dir)) {
      std::string name = fs::relative(e.path(), run_dir).string();
      if (name.find("events.out.tfevents") != std::string::npos) name = "events.out.tfevents";
      files.insert(name);
    }
    for (const auto& name : files) f << "file " << name << "\n";
    if (fs::exists(run_dir + "/final/sae_weights.safetensors"))
      for (const auto& [name, t] : load_safetensors(run_dir + "/final/sae_weights.safetensors")) {
        auto c = t.contiguous().to(torch::kFloat64);
        f << "tensor " << name << " " << c.sizes() << " "
          << std::string(static_cast<const char*>(c.data_ptr()), c.numel() * 8) << "\n";
      }
    std::ifstream in(run_dir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line);
      for (auto it = j.begin(); it != j.end();)
        it = it.key().find("per_sec") != std::string::npos ||
                     it.key().find("seconds") != std::string::npos
                 ? j.erase(it)
                 : std::next(it);
      f << "metrics " << j.dump() << "\n";
    }
    // Paths in messages are the run directory's, already counted.
    for (size_t p; !root.empty() && (p = messages.find(root)) != std::string::npos;)
      messages.replace(p, root.size(), "ROOT");
    f << "messages " << messages;
    return f.str();
  }

  static test::TempDir* dir_;
  static inline std::string last_run_dir_;
};
test::TempDir* ConfigKeys::dir_ = nullptr;

std::vector<KeyCase> key_cases() {
  using S = Scenario;
  using E = Expect;
  const std::vector<std::string> topk = {"architecture=topk", "activation_fn_kwargs={k=4}"};
  const std::vector<std::string> jumprelu = {"architecture=jumprelu"};
  const std::vector<std::string> batchtopk = {"architecture=batchtopk",
                                              "activation_fn_kwargs={k=4}"};
  const std::vector<std::string> matryoshka = {"architecture=matryoshka_batchtopk",
                                               "activation_fn_kwargs={k=4}"};
  const std::vector<std::string> free_decoder = {"normalize_sae_decoder=false"};
  return {
      // --- data generation
      {"model_name", "\"gpt2\"", S::Toy, E::Refused},
      {"model_name", "\"DIR/lm_b\"", S::Model},
      {"model_class_name", "\"HookedMamba\"", S::Model, E::Refused},
      {"hook_name", "\"blocks.0.hook_mlp_out\"", S::Model},
      {"hook_name", "\"blocks.1.hook_resid_post\"", S::Toy, E::Refused},
      {"hook_eval", "\"blocks.0.hook_resid_post\"", S::Model, E::Refused},
      {"hook_layer", "1", S::Model, E::Refused},  // contradicts hook_name's block
      {"hook_head_index",
       "1",
       S::Model,
       E::Changes,
       {"hook_name=blocks.0.attn.hook_z", "d_in=4", "hook_head_index=0"}},  // vs head 0
      // A transcoder from block 0's MLP input to its output, against an SAE on the input.
      {"hook_name_out",
       "\"blocks.0.hook_mlp_out\"",
       S::Model,
       E::Changes,
       {"hook_name=blocks.0.ln2.hook_normalized", "apply_b_dec_to_input=false"}},
      {"hook_name_out", "\"blocks.0.hook_mlp_out\"", S::Toy, E::Refused},
      {"dataset_path", "\"DIR/data_b.jsonl\"", S::Model},
      {"dataset_trust_remote_code", "false", S::Model, E::Refused},
      {"streaming", "false", S::Model, E::Refused},
      {"is_dataset_tokenized", "false", S::Model, E::Refused},
      {"context_size", "6", S::Model, E::Changes, {"n_batches_in_buffer=8"}},
      {"use_cached_activations", "true", S::Toy, E::Refused},
      {"cached_activations_path", "\"x.safetensors\"", S::Toy, E::Refused},
      {"cached_activations_path", "\"DIR/cache_b.safetensors\"", S::Cache},
      // Pretokenized rows are used as they are; these three shape how raw text is packed.
      {"prepend_bos", "true", S::Model, E::Changes, {"dataset_path=\"DIR/text.jsonl\""}},
      {"seqpos_slice", "[2]", S::Model},
      {"model_kwargs", "{ use_cache = false }", S::Model, E::Refused},
      {"model_from_pretrained_kwargs", "{ center_writing_weights = true }", S::Toy, E::Refused},
      {"exclude_special_tokens", "[39]", S::Model},
      {"sequence_separator_token", "\"eos\"", S::Toy, E::Refused},
      {"sequence_separator_token", "5", S::Model, E::Changes, {"dataset_path=\"DIR/text.jsonl\""}},
      {"disable_concat_sequences", "true", S::Toy, E::Refused},
      {"disable_concat_sequences",
       "true",
       S::Model,
       E::Changes,
       {"dataset_path=\"DIR/text.jsonl\""}},
      // --- SAE architecture
      {"architecture", "\"jumprelu\"", S::Toy},
      {"d_in", "12", S::Toy},
      {"d_sae", "48", S::Toy},
      {"d_out", "8", S::Toy, E::Refused},  // no hook_name_out: not a transcoder
      {"d_out",
       "8",
       S::Model,
       E::Refused,  // blocks.0.hook_mlp_out is 16 wide
       {"hook_name=blocks.0.ln2.hook_normalized", "apply_b_dec_to_input=false",
        "hook_name_out=blocks.0.hook_mlp_out"}},
      {"skip_connection", "true", S::Toy, E::Refused},
      {"skip_connection",
       "true",
       S::Model,
       E::Changes,
       {"hook_name=blocks.0.ln2.hook_normalized", "apply_b_dec_to_input=false",
        "hook_name_out=blocks.0.hook_mlp_out"}},
      {"expansion_factor", "2", S::Toy},
      {"activation_fn", "\"tanh-relu\"", S::Toy},
      {"activation_fn", "\"topk\"", S::Toy, E::Refused},  // a standard SAE: use architecture
      {"activation_fn_kwargs", "{ k = 3 }", S::Toy, E::Changes, topk},
      {"k", "3", S::Toy, E::Changes, topk},
      {"b_dec_init_method", "\"mean\"", S::Toy},
      {"apply_b_dec_to_input", "false", S::Toy},
      {"normalize_sae_decoder", "false", S::Toy},
      {"scale_sparsity_penalty_by_decoder_norm", "true", S::Toy, E::Changes, free_decoder},
      {"decoder_heuristic_init", "true", S::Toy, E::Changes, free_decoder},
      {"decoder_heuristic_init_norm",
       "0.5",
       S::Toy,
       E::Changes,
       {"normalize_sae_decoder=false", "decoder_heuristic_init=true"}},
      {"init_encoder_as_decoder_transpose", "true", S::Toy},
      {"decoder_orthogonal_init", "true", S::Toy},
      {"normalize_activations", "\"constant_norm_rescale\"", S::Toy},
      {"noise_scale", "0.1", S::Toy, E::Refused},
      {"from_pretrained_path", "\"DIR/nowhere\"", S::Toy, E::Refused},
      {"from_pretrained_path", "\"PRETRAINED\"", S::Toy},
      // --- activations store
      {"n_batches_in_buffer", "8", S::Model},
      {"n_batches_in_buffer", "2", S::Toy, E::Refused},
      {"store_batch_size_prompts", "16", S::Model},
      {"training_tokens", "1024", S::Toy},
      {"finetuning_tokens", "256", S::Toy, E::Refused},
      {"train_batch_size_tokens", "128", S::Toy},
      {"act_store_device", "\"cuda\"", S::Model, E::Refused},
      // --- optimiser and schedules
      {"lr", "0.01", S::Toy},
      {"adam_beta1", "0.5", S::Toy},
      {"adam_beta2", "0.9", S::Toy},
      {"lr_scheduler_name", "\"cosineannealing\"", S::Toy},
      {"lr_warm_up_steps", "3", S::Toy},
      {"lr_decay_steps", "3", S::Toy},
      // The end of a cosine schedule; a constant one decays from lr, as SAELens does.
      {"lr_end", "0.0001", S::Toy, E::Changes, {"lr_scheduler_name=cosineannealing"}},
      {"n_restart_cycles",
       "2",
       S::Toy,
       E::Changes,
       {"lr_scheduler_name=cosineannealingwarmrestarts"}},
      {"finetuning_method", "\"scale\"", S::Toy, E::Refused},
      // --- sparsity and losses
      {"l1_coefficient", "2.0", S::Toy},
      {"lp_norm", "2.0", S::Toy},
      {"l1_warm_up_steps", "4", S::Toy},
      {"mse_loss_normalization", "\"dense_batch\"", S::Toy},
      {"use_ghost_grads", "true", S::Toy},
      {"use_ghost_grads", "true", S::Toy, E::Refused, topk},
      {"feature_sampling_window", "3", S::Toy},
      // Batches of 4 tokens, so that some latents go a step without firing.
      {"dead_feature_window",
       "1",
       S::Toy,
       E::Changes,
       {"train_batch_size_tokens=4", "training_tokens=64"}},
      {"dead_feature_threshold", "0.5", S::Toy, E::Changes, {"resample_dead_latents=true"}},
      {"resample_dead_latents", "true", S::Toy},
      {"jumprelu_init_threshold", "0.2", S::Toy, E::Changes, jumprelu},
      {"jumprelu_bandwidth", "0.01", S::Toy, E::Changes, jumprelu},
      {"l0_coefficient", "2.0", S::Toy, E::Changes, jumprelu},
      {"l0_warm_up_steps", "4", S::Toy, E::Changes, jumprelu},
      {"aux_loss_coefficient", "3.0", S::Toy, E::Changes, topk},
      {"topk_threshold_lr", "0.5", S::Toy, E::Changes, batchtopk},
      {"matryoshka_widths", "[8, 32]", S::Toy, E::Changes, matryoshka},
      // --- logging
      {"log_to_wandb", "true", S::Toy},
      {"log_activations_store_to_wandb", "true", S::Toy, E::Refused},
      {"log_optimizer_state_to_wandb", "true", S::Toy, E::Refused},
      {"wandb_project", "\"other\"", S::Toy, E::Changes, {"log_to_wandb=true"}},
      {"wandb_id", "\"abc123\"", S::Toy, E::Changes, {"log_to_wandb=true"}},
      {"wandb_entity", "\"team\"", S::Toy, E::Changes, {"log_to_wandb=true"}},
      {"run_name", "\"other\"", S::Toy},
      {"wandb_log_frequency", "4", S::Toy},
      {"eval_every_n_wandb_logs", "1", S::Model},
      {"eval_every_n_wandb_logs", "1", S::Toy, E::Refused},
      {"n_eval_batches", "2", S::Model},
      {"eval_batch_size_prompts", "2", S::Model},
      // --- misc
      {"device", "\"cuda\"", S::Toy, E::Refused},  // no GPU on the test machines
      {"dtype", "\"float64\"", S::Toy},
      {"dtype", "\"bfloat16\"", S::Toy, E::Refused},
      {"seed", "8", S::Toy},
      {"n_checkpoints", "2", S::Toy},
      {"checkpoint_path", "\"DIR/elsewhere\"", S::Toy},
      {"autocast", "true", S::Toy, E::Refused},
      {"autocast_lm", "true", S::Model, E::Refused},
      {"compile_llm", "true", S::Model, E::Refused},
      {"llm_compilation_mode", "\"max-autotune\"", S::Model, E::Refused},
      {"compile_sae", "true", S::Toy, E::Refused},
      {"sae_compilation_mode", "\"max-autotune\"", S::Toy, E::Refused},
      {"resume", "true", S::Toy, E::Refused},
      {"verbose", "false", S::Toy},
      {"sae_lens_version", "\"6.0.0\"", S::Toy, E::Refused},
      {"sae_lens_training_version", "\"5.10.0\"", S::Toy, E::Recorded},
      // --- the toy model
      {"toy_n_features", "24", S::Toy},
      {"toy_feature_probability", "0.1", S::Toy},
      {"toy_probability_power_law", "1.0", S::Toy},
      {"toy_magnitude_mean", "2.0", S::Toy},
      {"toy_magnitude_std", "0.5", S::Toy},
      {"toy_correlated_groups", "2", S::Toy},
      {"toy_group_size", "3", S::Toy, E::Changes, {"toy_correlated_groups=2"}},
      {"toy_seed", "3", S::Toy},
      {"toy_seed", "3", S::Model, E::Refused},
      // --- which part of the dataset
      {"dataset_column", "\"tokens\"", S::Model},
      {"dataset_column", "\"tokens\"", S::Toy, E::Refused},
      {"dataset_split", "\"test\"", S::Model, E::Changes, {"dataset_path=\"DIR/split\""}},
      {"dataset_split", "\"test\"", S::Model, E::Refused},  // one file has no splits
      {"dataset_revision", "\"v2\"", S::Model, E::Changes, {"dataset_path=\"saelab-test/keys\""}},
      {"dataset_revision", "\"v2\"", S::Model, E::Refused},  // local data has no revisions
      // --- data-parallel ranks: a single process has no collective to time out, so only the
      // refusal is checked here; DataParallelFaults.HungRankStopsTheOtherAfterDdpTimeout
      // (test_distributed.cpp) checks that a rank gives up after ddp_timeout_s.
      {"ddp_timeout_s", "0", S::Toy, E::Refused},
  };
}

TEST_F(ConfigKeys, EveryKeyHasACase) {
  std::set<std::string> covered;
  for (const auto& c : key_cases()) covered.insert(c.key);
  for (const auto& key : runner_config_keys())
    EXPECT_TRUE(covered.count(key)) << key << " has no case here: say what it does";
}

TEST_F(ConfigKeys, EachNonDefaultValueChangesTheRunOrIsRefused) {
  std::map<std::pair<Scenario, std::vector<std::string>>, Outcome> bases;
  // An SAE to start from: the base toy run's, trained with another seed.
  Outcome pretrained = run(Scenario::Toy, {"seed=99", "run_name=pretrained"});
  ASSERT_FALSE(pretrained.refused) << pretrained.error;
  const std::string pretrained_dir = dir_->path() + "/pretrained";
  fs::rename(last_run_dir_, pretrained_dir);
  for (auto c : key_cases()) {
    auto fill_dir = [](std::string& s) {
      for (size_t p; (p = s.find("DIR")) != std::string::npos;) s.replace(p, 3, dir_->path());
    };
    fill_dir(c.value);
    for (auto& item : c.context) fill_dir(item);
    if (c.value == "\"PRETRAINED\"") c.value = "\"" + pretrained_dir + "/final\"";
    SCOPED_TRACE(c.key + " = " + c.value);
    auto sets = c.context;
    sets.push_back(c.key + "=" + c.value);
    Outcome got = run(c.scenario, sets);
    if (c.expect == Expect::Refused) {
      EXPECT_TRUE(got.refused) << "accepted; fingerprint:\n" << got.fingerprint.substr(0, 300);
      if (got.refused) {
        EXPECT_EQ(got.error.find('\n'), std::string::npos) << got.error;
        EXPECT_NE(got.error.find(c.key), std::string::npos) << got.error;
      }
      continue;
    }
    EXPECT_FALSE(got.refused) << got.error;
    if (got.refused) continue;
    if (c.expect == Expect::Recorded) {
      EXPECT_NE(got.cfg_json.dump().find(json::parse(c.value).get<std::string>()),
                std::string::npos)
          << got.cfg_json.dump();
      continue;
    }
    auto key = std::make_pair(c.scenario, c.context);
    if (!bases.count(key)) bases[key] = run(c.scenario, c.context);
    const Outcome& base = bases[key];
    EXPECT_FALSE(base.refused) << base.error;
    // Not EXPECT_NE: the fingerprints hold every weight, too long to print.
    EXPECT_TRUE(base.refused || got.fingerprint != base.fingerprint)
        << "the run is the same as without the key";
  }
}

// The same config twice gives the same fingerprint: a difference above is the key's doing.
TEST_F(ConfigKeys, TheFingerprintIsDeterministic) {
  for (Scenario s : {Scenario::Toy, Scenario::Model, Scenario::Cache}) {
    Outcome a = run(s, {}), b = run(s, {});
    ASSERT_FALSE(a.refused) << a.error;
    EXPECT_EQ(a.fingerprint, b.fingerprint);
  }
}

}  // namespace
}  // namespace saelab
