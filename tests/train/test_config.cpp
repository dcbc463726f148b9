// Run configs: SAELens v5's defaults (values copied here from sae_lens/config.py v5.11.0), TOML,
// JSON and --set loading, the round trip through the saved config.toml, and one test per class of
// validation error, each checking that the message names the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/train/sources.h"
#include "test_paths.h"
#include "test_util.h"

using namespace saelab;

namespace {

// Expects load_runner_config to throw an Error whose message contains every one of `parts`.
void expect_error(const std::string& path, const std::vector<std::string>& sets,
                  const std::vector<std::string>& parts) {
  try {
    load_runner_config(path, sets);
    ADD_FAILURE() << "no error for --set " << (sets.empty() ? "" : sets.back());
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void expect_set_error(const std::vector<std::string>& sets, const std::vector<std::string>& parts) {
  expect_error("", sets, parts);
}

}  // namespace

TEST(RunnerConfig, DefaultsAreSAELensV5s) {
  RunnerConfig c = load_runner_config("", {});
  json j = to_json(c);
  // sae_lens/config.py (v5.11.0) LanguageModelSAERunnerConfig field defaults.
  json want = {
      {"model_name", "gelu-2l"},
      {"model_class_name", "HookedTransformer"},
      {"hook_name", "blocks.0.hook_mlp_out"},
      {"hook_eval", "NOT_IN_USE"},
      {"hook_layer", 0},
      {"hook_head_index", nullptr},
      {"dataset_path", ""},
      {"dataset_trust_remote_code", true},
      {"streaming", true},
      {"is_dataset_tokenized", true},
      {"context_size", 128},
      {"use_cached_activations", false},
      {"cached_activations_path", nullptr},
      {"architecture", "standard"},
      {"d_in", 512},
      {"b_dec_init_method", "geometric_median"},
      {"activation_fn_kwargs", json::object()},
      {"normalize_sae_decoder", true},
      {"noise_scale", 0.0},
      {"from_pretrained_path", nullptr},
      {"apply_b_dec_to_input", true},
      {"decoder_orthogonal_init", false},
      {"decoder_heuristic_init", false},
      {"decoder_heuristic_init_norm", 0.1},
      {"init_encoder_as_decoder_transpose", false},
      {"n_batches_in_buffer", 20},
      {"training_tokens", 2000000},
      {"finetuning_tokens", 0},
      {"store_batch_size_prompts", 32},
      {"normalize_activations", "none"},
      {"seqpos_slice", json::array({nullptr})},
      {"device", "cpu"},
      {"seed", 42},
      {"dtype", "float32"},
      {"prepend_bos", true},
      {"jumprelu_init_threshold", 0.001},
      {"jumprelu_bandwidth", 0.001},
      {"autocast", false},
      {"autocast_lm", false},
      {"compile_llm", false},
      {"llm_compilation_mode", nullptr},
      {"compile_sae", false},
      {"sae_compilation_mode", nullptr},
      {"train_batch_size_tokens", 4096},
      {"adam_beta1", 0.0},
      {"adam_beta2", 0.999},
      {"mse_loss_normalization", nullptr},
      {"l1_coefficient", 1e-3},
      {"lp_norm", 1.0},
      {"scale_sparsity_penalty_by_decoder_norm", false},
      {"l1_warm_up_steps", 0},
      {"lr", 3e-4},
      {"lr_scheduler_name", "constant"},
      {"lr_warm_up_steps", 0},
      {"lr_decay_steps", 0},
      {"n_restart_cycles", 1},
      {"finetuning_method", nullptr},
      {"use_ghost_grads", false},
      {"feature_sampling_window", 2000},
      {"dead_feature_window", 1000},
      {"dead_feature_threshold", 1e-8},
      {"n_eval_batches", 10},
      {"eval_batch_size_prompts", nullptr},
      {"log_to_wandb", true},
      {"log_activations_store_to_wandb", false},
      {"log_optimizer_state_to_wandb", false},
      {"wandb_project", "mats_sae_training_language_model"},
      {"wandb_id", nullptr},
      {"wandb_entity", nullptr},
      {"wandb_log_frequency", 10},
      {"eval_every_n_wandb_logs", 100},
      {"resume", false},
      {"n_checkpoints", 0},
      {"checkpoint_path", "checkpoints"},
      {"verbose", true},
      {"model_kwargs", json::object()},
      {"exclude_special_tokens", false},
      // v6 names (sae_lens v6.18 TrainingSAEConfig subclasses and runner config)
      {"sequence_separator_token", "bos"},
      {"disable_concat_sequences", false},
      {"l0_coefficient", 1.0},
      {"l0_warm_up_steps", 0},
      {"aux_loss_coefficient", 1.0},
      {"topk_threshold_lr", 0.01},
      {"matryoshka_widths", json::array()},
      // SAELens's __post_init__ resolution
      {"activation_fn", "relu"},
      {"expansion_factor", 4},
      {"d_sae", 2048},
      {"lr_end", 3e-5},
      {"model_from_pretrained_kwargs", {{"center_writing_weights", false}}},
      {"run_name", "2048-L1-0.001-LR-0.0003-Tokens-2.000e+06"},
      // saelab's own
      {"resample_dead_latents", false},
  };
  for (const auto& [k, v] : want.items()) {
    ASSERT_TRUE(j.contains(k)) << k;
    if (v.is_number_float())
      EXPECT_DOUBLE_EQ(j[k].get<double>(), v.get<double>()) << k;
    else
      EXPECT_EQ(j[k], v) << k;
  }
  EXPECT_EQ(c.steps(), 2000000 / 4096);
  EXPECT_EQ(c.resolved_d_sae(), 2048);
  EXPECT_EQ(c.k(), 0);
}

TEST(RunnerConfig, EveryKeyIsDocumented) {
  std::ifstream in(std::string(SAELAB_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in.good()) << "docs/config.md missing";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();
  for (const auto& k : runner_config_keys())
    EXPECT_NE(doc.find("`" + k + "`"), std::string::npos) << k << " is not in docs/config.md";
}

TEST(RunnerConfig, LoadsTomlJsonAndOverrides) {
  test::TempDir dir;
  test::write_text(dir / "run.toml", R"(
architecture = "topk"
d_in = 64
expansion_factor = 8
activation_fn_kwargs = { k = 16 }
training_tokens = 4e6   # a float with an integral value is accepted for integers
lr = 1e-3
lr_scheduler_name = "cosineannealing"
lr_warm_up_steps = 10
seqpos_slice = [1, "none"]
dataset_path = "org/data"
context_size = 64
[logger]
wandb_project = "p"
)");
  RunnerConfig t = load_runner_config(dir / "run.toml");
  EXPECT_EQ(t.architecture, "topk");
  EXPECT_EQ(t.activation_fn, "topk");
  EXPECT_EQ(t.resolved_d_sae(), 512);
  EXPECT_EQ(t.k(), 16);
  EXPECT_EQ(t.training_tokens, 4000000);
  EXPECT_DOUBLE_EQ(t.lr, 1e-3);
  EXPECT_DOUBLE_EQ(*t.lr_end, 1e-4);
  EXPECT_EQ(t.seqpos_slice.size(), 2u);
  EXPECT_EQ(*t.seqpos_slice[0], 1);
  EXPECT_FALSE(t.seqpos_slice[1].has_value());
  EXPECT_EQ(t.wandb_project, "p");
  EXPECT_EQ(t.context_size, 64);

  test::write_text(dir / "run.json", to_json(t).dump());
  EXPECT_EQ(load_runner_config(dir / "run.json"), t);

  RunnerConfig o = load_runner_config(
      dir / "run.toml",
      {"lr=1e-4", "architecture=batchtopk", "k=32", "hook_head_index=3", "run_name=2024",
       "d_sae=128", "matryoshka_widths=[64, 128]", "architecture = matryoshka_batchtopk"});
  EXPECT_DOUBLE_EQ(o.lr, 1e-4);
  EXPECT_EQ(o.architecture, "matryoshka_batchtopk");
  EXPECT_EQ(o.k(), 32);  // --set k beats the file's activation_fn_kwargs.k
  EXPECT_EQ(o.hook_head_index, 3);
  EXPECT_EQ(o.run_name, "2024");
  EXPECT_EQ(o.resolved_d_sae(), 128);  // --set d_sae replaces the file's expansion_factor
  EXPECT_EQ(o.matryoshka_widths, (std::vector<int64_t>{64, 128}));
  EXPECT_FALSE(load_runner_config("", {"hook_head_index=none"}).hook_head_index.has_value());
}

TEST(RunnerConfig, SavedConfigLoadsBackEqual) {
  test::TempDir dir;
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {},
           {"architecture=jumprelu",
            "d_in=48",
            "d_sae=200",
            "lr=1.234567890123e-4",
            "l1_coefficient=5",
            "adam_beta1=0.9",
            "seqpos_slice=[2, -3, 1]",
            "exclude_special_tokens=[0, 50256]",
            "sequence_separator_token=7",
            "model_from_pretrained_kwargs={ n_devices = 1, dtype = \"bfloat16\" }",
            "dataset_path=org/data",
            "dataset_column=tokens",
            "dataset_split=validation",
            "dataset_revision=v2",
            "hook_name=blocks.2.hook_resid_pre",
            "hook_layer=2",
            "mse_loss_normalization=dense_batch",
            "cached_activations_path=/x/y",
            "run_name=with \"quotes\" and \\ backslash",
            "wandb_entity=me",
            "normalize_sae_decoder=false",
            "decoder_heuristic_init=true",
            "training_tokens=123456789",
            "lr_decay_steps=1000",
            "lr_end=0"},
           {"dataset_path=toy", "toy_correlated_groups=3", "toy_magnitude_std=0.25",
            "use_ghost_grads=true"},
           {"use_cached_activations=true", "cached_activations_path=/x/y",
            "store_batch_size_prompts=4"}}) {
    RunnerConfig c = load_runner_config("", sets);
    test::write_text(dir / "config.toml", to_toml(c));
    RunnerConfig back = load_runner_config(dir / "config.toml");
    EXPECT_EQ(back, c) << to_toml(c);
    EXPECT_EQ(to_json(back), to_json(c));
    test::write_text(dir / "config.json", to_json(c).dump(2));
    EXPECT_EQ(load_runner_config(dir / "config.json"), c);
  }
}

TEST(RunnerConfigErrors, UnknownKeySuggestsTheNearest) {
  test::TempDir dir;
  test::write_text(dir / "run.toml", "l1_coeficient = 1.0\n");
  expect_error(dir / "run.toml", {},
               {"unknown key 'l1_coeficient'", "run.toml", "did you mean 'l1_coefficient'?"});
  expect_set_error({"lr_warmup_steps=3"}, {"lr_warmup_steps", "did you mean 'lr_warm_up_steps'"});
  expect_set_error({"nonsense_entirely_unrelated=1"}, {"nonsense_entirely_unrelated"});
}

TEST(RunnerConfigErrors, WrongTypeNamesKeyExpectedAndGot) {
  expect_set_error({"lr=\"fast\""}, {"'lr'", "a number", "string"});
  expect_set_error({"d_in=1.5"}, {"'d_in'", "an integer", "1.5"});
  expect_set_error({"use_ghost_grads=1"}, {"'use_ghost_grads'", "a boolean", "integer"});
  expect_set_error({"matryoshka_widths=[1, \"a\"]"}, {"'matryoshka_widths'"});
  expect_set_error({"activation_fn_kwargs=3"}, {"'activation_fn_kwargs'", "a table"});
  test::TempDir dir;
  test::write_text(dir / "run.json", R"({"training_tokens": "lots"})");
  expect_error(dir / "run.json", {}, {"run.json", "'training_tokens'", "an integer", "string"});
}

TEST(RunnerConfigErrors, InconsistentSizes) {
  expect_set_error({"d_in=64", "d_sae=100", "expansion_factor=4"},
                   {"d_sae", "expansion_factor", "100", "256"});
  expect_set_error({"d_in=0"}, {"d_in"});
  expect_set_error({"d_in=-3"}, {"d_in"});
  expect_set_error({"training_tokens=100"}, {"training_tokens", "train_batch_size_tokens"});
  expect_set_error({"train_batch_size_tokens=0"}, {"train_batch_size_tokens"});
}

TEST(RunnerConfigErrors, WarmUpsLongerThanTraining) {
  // 40960 tokens / 4096 = 10 steps.
  expect_set_error({"training_tokens=40960", "lr_warm_up_steps=11"},
                   {"lr_warm_up_steps", "10 steps"});
  expect_set_error({"training_tokens=40960", "l1_warm_up_steps=20"}, {"l1_warm_up_steps"});
  expect_set_error({"training_tokens=40960", "lr_decay_steps=11"}, {"lr_decay_steps"});
  expect_set_error({"training_tokens=40960", "l0_warm_up_steps=11"}, {"l0_warm_up_steps"});
  expect_set_error({"training_tokens=40960", "lr_warm_up_steps=6", "lr_decay_steps=5"},
                   {"lr_warm_up_steps + lr_decay_steps"});
  EXPECT_NO_THROW(load_runner_config("", {"training_tokens=40960", "lr_warm_up_steps=5",
                                          "lr_decay_steps=5", "l1_warm_up_steps=10"}));
}

TEST(RunnerConfigErrors, KOutOfRange) {
  for (const char* arch : {"topk", "batchtopk"}) {
    std::string a = std::string("architecture=") + arch;
    expect_set_error({a, "d_in=16", "d_sae=64", "k=64"}, {"k = 64", "d_sae = 64"});
    expect_set_error({a, "d_in=16", "d_sae=64", "k=0"}, {"k = 0"});
    expect_set_error({a, "d_in=16", "d_sae=64", "activation_fn_kwargs={k = -2}"}, {"k = -2"});
    // SAELens's default k = 100 with a small SAE is caught as well.
    expect_set_error({a, "d_in=16", "d_sae=64"}, {"k = 100"});
    EXPECT_EQ(load_runner_config("", {a, "d_in=16", "d_sae=64", "k=8"}).k(), 8);
  }
  test::TempDir dir;
  test::write_text(dir / "run.toml",
                   "architecture = \"topk\"\nk = 8\nactivation_fn_kwargs = { k = 9 }\n");
  expect_error(dir / "run.toml", {}, {"'k'", "activation_fn_kwargs.k"});
}

TEST(RunnerConfigErrors, UnknownNamesListTheValidOnes) {
  expect_set_error({"architecture=relu"},
                   {"architecture", "'relu'", "standard", "matryoshka_batchtopk"});
  expect_set_error({"lr_scheduler_name=cosine"},
                   {"lr_scheduler_name", "cosineannealingwarmrestarts"});
  expect_set_error({"b_dec_init_method=median"},
                   {"b_dec_init_method", "geometric_median", "zeros"});
  expect_set_error({"normalize_activations=l2"},
                   {"normalize_activations", "expected_average_only_in"});
  expect_set_error({"dtype=float8"}, {"dtype", "float32, float64"});
}

TEST(RunnerConfigErrors, ValueRanges) {
  expect_set_error({"l1_coefficient=-0.1"}, {"l1_coefficient"});
  expect_set_error({"lr=0"}, {"lr"});
  expect_set_error({"adam_beta2=1.0"}, {"adam_beta2"});
  expect_set_error({"lp_norm=0"}, {"lp_norm"});
  expect_set_error({"n_restart_cycles=0"}, {"n_restart_cycles"});
  expect_set_error({"seqpos_slice=[5, 5]"}, {"seqpos_slice"});
  expect_set_error({"seqpos_slice=[0, 10, 0]"}, {"seqpos_slice"});
  expect_set_error({"normalize_sae_decoder=true", "decoder_heuristic_init=true"},
                   {"normalize_sae_decoder", "decoder_heuristic_init"});
  expect_set_error({"dataset_path=toy", "toy_feature_probability=0"}, {"toy_feature_probability"});
  expect_set_error(
      {"dataset_path=toy", "toy_n_features=8", "toy_correlated_groups=5", "toy_group_size=2"},
      {"toy_correlated_groups"});
}

TEST(RunnerConfigErrors, MatryoshkaWidths) {
  std::vector<std::string> base = {"architecture=matryoshka_batchtopk", "d_in=16", "d_sae=64",
                                   "k=4"};
  auto with = [&](const std::string& s) {
    auto v = base;
    v.push_back(s);
    return v;
  };
  expect_set_error(with("matryoshka_widths=[32, 16, 64]"), {"matryoshka_widths", "increasing"});
  expect_set_error(with("matryoshka_widths=[16, 32]"), {"matryoshka_widths", "d_sae = 64"});
  EXPECT_EQ(load_runner_config("", with("matryoshka_widths=[16, 32, 64]")).matryoshka_widths.size(),
            3u);
}

TEST(RunnerConfigErrors, CachedActivationsNeedAPath) {
  expect_set_error({"use_cached_activations=true"},
                   {"use_cached_activations", "cached_activations_path"});
  expect_set_error({"use_cached_activations=true", "cached_activations_path=x", "dataset_path=toy"},
                   {"use_cached_activations", "toy"});
}

TEST(RunnerConfigErrors, FileProblems) {
  test::TempDir dir;
  test::write_text(dir / "bad.toml", "lr = 1e-4\narchitecture = \n");
  expect_error(dir / "bad.toml", {}, {"bad.toml:2", "invalid TOML"});
  test::write_text(dir / "run.yaml", "lr: 1\n");
  expect_error(dir / "run.yaml", {}, {"run.yaml", ".toml or .json"});
  expect_error(dir / "missing.toml", {}, {"missing.toml"});
  expect_set_error({"lr"}, {"--set lr", "key=value"});
}

TEST(Sources, FactoryPicksToyAndRefusesModels) {
  RunnerConfig c =
      load_runner_config("", {"dataset_path=toy", "d_in=8", "toy_n_features=32", "seed=5"});
  auto src = make_activation_source(c);
  EXPECT_EQ(src->d_in(), 8);
  ASSERT_TRUE(src->true_features().has_value());
  EXPECT_EQ(src->true_features()->size(0), 32);
  EXPECT_EQ(src->next_batch(10).sizes(), (std::vector<int64_t>{10, 8}));
  // A model run needs the model pipeline and, here, a model in the local cache: without
  // one it is a saelab::Error, never a crash.
  EXPECT_THROW(make_activation_source(load_runner_config(
                   "", {"dataset_path=NeelNanda/pile-10k", "model_name=no-such-model-xyz"})),
               Error);
  EXPECT_THROW(make_activation_source(load_runner_config(
                   "", {"use_cached_activations=true", "cached_activations_path=/nonexistent/x"})),
               Error);
}

TEST(RunnerConfig, ShippedConfigsLoad) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(SAELAB_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".toml") continue;
    EXPECT_NO_THROW(load_runner_config(e.path().string())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 1);
}

TEST(RunnerConfig, LoadsTomlTextNamedInErrors) {
  RunnerConfig c = load_runner_config_text("lr = 2e-3\nd_in = 16\n", "configs/toy.toml (built in)",
                                           {"d_sae=32"});
  EXPECT_DOUBLE_EQ(c.lr, 2e-3);
  EXPECT_EQ(c.resolved_d_sae(), 32);
  try {
    load_runner_config_text("lr = 2e-3\nbogus_key = 1\n", "configs/toy.toml (built in)");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("configs/toy.toml (built in)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_runner_config_text("lr = = 1\n", "x"), Error);
  // A --set value that is not TOML for a numeric key names key, expected type and the text.
  expect_set_error({"lr=fast"}, {"'lr'", "a number", "'fast'"});
}
