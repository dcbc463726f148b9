// Sweeps (train/sweep.h): the expansion of list values into members (Cartesian product, lists of
// lists, bare-word lists in --set), the one-line errors (stream keys, bad combinations, empty and
// repeated lists), every member ending with the same weights as the same config trained alone
// (including after a stop signal and a resume), the run directories and sweep.json, and the CLI.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "model/test_load_fixtures.h"
#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/train/checkpoint.h"
#include "saelab/train/sources.h"
#include "saelab/train/sweep.h"
#include "saelab/train/trainer.h"
#include "test_paths.h"
#include "test_util.h"

namespace saelab {
namespace {

// 40 steps of 256 tokens on a toy of 24 features in 8 dimensions; resampling exercises the
// trainer's own generator.
const char* kToy = R"(
dataset_path = "toy"
d_in = 8
d_sae = 32
toy_n_features = 24
toy_feature_probability = 0.05
toy_magnitude_std = 0.2
architecture = "standard"
train_batch_size_tokens = 256
training_tokens = 10240
lr = 0.003
adam_beta1 = 0.9
l1_coefficient = 0.3
b_dec_init_method = "mean"
feature_sampling_window = 10
dead_feature_window = 5
resample_dead_latents = true
wandb_log_frequency = 5
log_to_wandb = false
seed = 7
)";

SweepSpec expand(const std::vector<std::string>& sets, const char* text = kToy) {
  return load_sweep_config_text(text, "toy.toml", sets);
}

// The one-line error of expanding `sets`, or "" when there is none.
std::string expand_error(const std::vector<std::string>& sets, const char* text = kToy) {
  try {
    expand(sets, text);
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  return "";
}

void expect_error_has(const std::vector<std::string>& sets, const std::vector<std::string>& parts,
                      const char* text = kToy) {
  std::string msg = expand_error(sets, text);
  ASSERT_FALSE(msg.empty()) << "no error for " << sets.back();
  for (const auto& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

std::map<std::string, at::Tensor> final_weights(const std::string& run_dir) {
  return load_safetensors(run_dir + "/final/sae_weights.safetensors");
}

void expect_same_weights(const std::string& a, const std::string& b) {
  auto wa = final_weights(a), wb = final_weights(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    double diff =
        (t.to(torch::kFloat64) - wb.at(name).to(torch::kFloat64)).abs().max().item<double>();
    EXPECT_LE(diff, 1e-6) << name << " differs between " << a << " and " << b;
  }
}

TrainSummary train_solo(const RunnerConfig& c, const std::string& dir) {
  TrainerOptions o;
  o.run_dir = dir;
  o.progress = false;
  o.summary_eval_batches = 2;
  Trainer t(c, make_activation_source(c), o);
  return t.run();
}

SweepOptions quiet_sweep(const std::string& dir) {
  SweepOptions o;
  o.run_dir = dir;
  o.progress = false;
  o.summary_eval_batches = 2;
  return o;
}

TEST(Sweep, NoListValueIsNoSweep) {
  EXPECT_FALSE(expand({}).is_sweep());
  EXPECT_FALSE(expand({"l1_coefficient=2"}).is_sweep());
  // A list key given one list is one value.
  EXPECT_FALSE(
      expand({"architecture=matryoshka_batchtopk", "k=4", "matryoshka_widths=[8, 32]"}).is_sweep());
}

TEST(Sweep, CartesianProductOfFileAndSetKeys) {
  std::string text = kToy;
  text.replace(text.find("lr = 0.003"), 10, "lr = [0.001, 0.003]");
  SweepSpec s = expand({"l1_coefficient=[0.1, 0.2, 0.4]"}, text.c_str());
  ASSERT_EQ(s.keys, (std::vector<std::string>{"lr", "l1_coefficient"}));
  ASSERT_EQ(s.members.size(), 6u);
  // The first key varies slowest.
  EXPECT_EQ(s.members[0].name, "lr=0.001_l1_coefficient=0.1");
  EXPECT_EQ(s.members[2].name, "lr=0.001_l1_coefficient=0.4");
  EXPECT_EQ(s.members[3].name, "lr=0.003_l1_coefficient=0.1");
  EXPECT_DOUBLE_EQ(s.members[4].cfg.lr, 0.003);
  EXPECT_DOUBLE_EQ(s.members[4].cfg.l1_coefficient, 0.2);
  EXPECT_EQ(s.members[4].values, (json{{"lr", 0.003}, {"l1_coefficient", 0.2}}));
  EXPECT_EQ(s.sweep_name, "sweep_lr_l1_coefficient");
  EXPECT_EQ(s.members[4].cfg.run_name, "sweep_lr_l1_coefficient_lr=0.003_l1_coefficient=0.2");
  // Everything else is the file's; every member is resolved (lr_end follows each lr).
  for (const auto& m : s.members) {
    EXPECT_EQ(m.cfg.d_sae, 32);
    EXPECT_DOUBLE_EQ(*m.cfg.lr_end, m.cfg.lr / 10);
  }
  // A single --set value replaces the file's sweep of that key.
  SweepSpec t = expand({"lr=0.01", "l1_coefficient=[1, 2]"}, text.c_str());
  ASSERT_EQ(t.keys, (std::vector<std::string>{"l1_coefficient"}));
  EXPECT_DOUBLE_EQ(t.members[1].cfg.lr, 0.01);
  // The last --set of a key wins, sweep or not.
  SweepSpec u =
      expand({"l1_coefficient=[1, 2]", "l1_coefficient=3", "lr=[0.1, 0.2]"}, text.c_str());
  ASSERT_EQ(u.keys, (std::vector<std::string>{"lr"}));
  EXPECT_DOUBLE_EQ(u.members[1].cfg.l1_coefficient, 3);
  SweepSpec v = expand({"lr=[0.1, 0.2, 0.3]"}, text.c_str());
  ASSERT_EQ(v.members.size(), 3u);
  EXPECT_DOUBLE_EQ(v.members[2].cfg.lr, 0.3);
}

TEST(Sweep, ListsOfListsTablesAndBareWords) {
  SweepSpec m =
      expand({"architecture=matryoshka_batchtopk", "k=4", "matryoshka_widths=[[8, 32], [16, 32]]"});
  ASSERT_EQ(m.members.size(), 2u);
  EXPECT_EQ(m.members[0].cfg.matryoshka_widths, (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(m.members[1].cfg.matryoshka_widths, (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(m.members[1].name, "matryoshka_widths=16-32");

  SweepSpec a = expand({"architecture=[topk, batchtopk]", "k=[2, 4]"});
  ASSERT_EQ(a.members.size(), 4u);
  EXPECT_EQ(a.members[3].cfg.architecture, "batchtopk");
  EXPECT_EQ(a.members[3].cfg.k(), 4);
  EXPECT_EQ(a.members[1].name, "architecture=topk_k=4");

  SweepSpec t = expand({"architecture=topk", "activation_fn_kwargs=[{k = 2}, {k = 6}]"});
  ASSERT_EQ(t.members.size(), 2u);
  EXPECT_EQ(t.members[1].cfg.k(), 6);
}

TEST(Sweep, StreamKeysCannotBeSwept) {
  expect_error_has({"seed=[1, 2]"}, {"seed", "cannot be swept", "data order"});
  expect_error_has({"context_size=[64, 128]"}, {"context_size", "cannot be swept"});
  expect_error_has({"train_batch_size_tokens=[256, 512]"},
                   {"train_batch_size_tokens", "same batches"});
  expect_error_has({"training_tokens=[10240, 20480]"}, {"training_tokens", "cannot be swept"});
  expect_error_has({"toy_n_features=[16, 24]"}, {"toy_n_features", "toy model"});
  expect_error_has({"d_in=[8, 16]"}, {"d_in", "width"});
  expect_error_has({"hook_layer=[0, 1]"}, {"hook_layer", "hook point", "sweep hook_name"});
  // hook_name sweeps over a model's hooks only: the toy has one stream.
  expect_error_has({"hook_name=[\"a\", \"b\"]"}, {"hook_name", "toy"});
  const char* cached =
      "model_name = \"gelu-1l\"\ndataset_path = \"unused\"\nhook_name = \"blocks.0.hook_mlp_out\"\n"
      "hook_layer = 0\nd_in = 16\nd_sae = 32\nuse_cached_activations = true\n"
      "cached_activations_path = \"cache\"\n";
  expect_error_has({"hook_name=[blocks.0.hook_mlp_out, blocks.0.hook_attn_out]"},
                   {"hook_name", "only over a model's hooks", "cached activations hold one hook"},
                   cached);
  const char* transcoder =
      "model_name = \"gelu-1l\"\ndataset_path = \"unused\"\nhook_name = \"blocks.0.hook_mlp_in\"\n"
      "hook_layer = 0\nd_in = 16\nd_sae = 32\nhook_name_out = \"blocks.0.hook_mlp_out\"\n"
      "apply_b_dec_to_input = false\n";
  expect_error_has({"hook_name=[blocks.0.hook_mlp_in, blocks.0.ln2.hook_normalized]"},
                   {"hook_name", "only over a model's hooks", "transcoder"}, transcoder);
  expect_error_has({"seqpos_slice=[[1, 5], [2, 6]]"}, {"seqpos_slice", "cannot be swept"});
  expect_error_has({"exclude_special_tokens=[false, true]"},
                   {"exclude_special_tokens", "cannot be swept"});
  expect_error_has({"model_name=[gpt2, gelu-2l]"}, {"model_name", "language model"});
  expect_error_has({"checkpoint_path=[a, b]"}, {"checkpoint_path", "sweep's directory"});
}

TEST(Sweep, EveryCombinationIsValidatedBeforeTraining) {
  // The combination and the key are named.
  expect_error_has({"l1_coefficient=[0.1, -1]", "lr=[0.001, 0.01]"},
                   {"sweep member l1_coefficient=-1, lr=0.001", "l1_coefficient"});
  expect_error_has({"architecture=topk", "k=[4, 32]"},
                   {"sweep member k=32", "k = 32", "d_sae = 32"});
  expect_error_has({"lr_warm_up_steps=[10, 100]"},
                   {"lr_warm_up_steps=100", "longer than training"});
  expect_error_has({"l1_coefficient=[]"}, {"l1_coefficient", "no values"});
  expect_error_has({"l1_coefficient=[1, 2, 1]"}, {"l1_coefficient", "twice"});
  expect_error_has({"l1_coefficient=[1, \"x\"]"}, {"l1_coefficient=x", "expects a number"});
  // The initial sample (b_dec init) shifts the stream: all members draw it or none does.
  expect_error_has({"b_dec_init_method=[zeros, mean]"},
                   {"b_dec_init_method", "zeros", "initial sample"});
  EXPECT_EQ(expand_error({"b_dec_init_method=[geometric_median, mean]"}), "");
}

TEST(Sweep, EachMemberEndsWithTheWeightsOfItsSoloRun) {
  test::TempDir tmp;
  SweepSpec s = expand(
      {"l1_coefficient=[0.1, 1]", "architecture=[standard, topk]", "k=3", "n_checkpoints=2"});
  ASSERT_EQ(s.members.size(), 4u);
  auto src = make_activation_source(s.members[0].cfg);
  SweepResult r = run_sweep(s, std::move(src), quiet_sweep(tmp / "sweep"));
  ASSERT_TRUE(r.completed);
  for (size_t i = 0; i < s.members.size(); ++i) {
    SCOPED_TRACE(s.members[i].name);
    EXPECT_TRUE(r.errors[i].empty()) << r.errors[i];
    EXPECT_EQ(r.members[i].steps, 40);
    std::string dir = tmp / ("sweep/" + s.members[i].name);
    TrainSummary solo = train_solo(s.members[i].cfg, tmp / ("solo" + std::to_string(i)));
    expect_same_weights(dir, tmp / ("solo" + std::to_string(i)));
    // The held-out summary is measured on the same batches too.
    EXPECT_NEAR(r.members[i].eval["metrics/explained_variance"].get<double>(),
                solo.eval["metrics/explained_variance"].get<double>(), 1e-6);
    EXPECT_NEAR(r.members[i].eval["metrics/mmcs"].get<double>(),
                solo.eval["metrics/mmcs"].get<double>(), 1e-6);
    // Its own run directory: the concrete config, metrics, checkpoints, final SAE.
    EXPECT_EQ(load_runner_config(dir + "/config.toml"), s.members[i].cfg);
    EXPECT_FALSE(read_file(dir + "/metrics.jsonl").empty());
    EXPECT_TRUE(path_exists(dir + "/checkpoints/5120/trainer_state.json"));
    EXPECT_TRUE(path_exists(dir + "/checkpoints/10240/sae_weights.safetensors"));
    EXPECT_TRUE(path_exists(dir + "/final/cfg.json"));
  }
  // The members really differ.
  auto a = final_weights(tmp / ("sweep/" + s.members[0].name)).at("W_enc");
  auto b = final_weights(tmp / ("sweep/" + s.members[1].name)).at("W_enc");
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-3);

  json j = read_json_file(tmp / "sweep/sweep.json");
  EXPECT_EQ(j["keys"], (json{"l1_coefficient", "architecture"}));
  ASSERT_EQ(j["members"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const json& m = j["members"][i];
    EXPECT_EQ(m["name"], s.members[i].name);
    EXPECT_EQ(m["values"], s.members[i].values);
    EXPECT_EQ(m["status"], "completed");
    EXPECT_NEAR(m["summary"]["metrics/explained_variance"].get<double>(),
                r.members[i].eval["metrics/explained_variance"].get<double>(), 1e-12);
    for (const char* key :
         {"metrics/l0", "sparsity/dead_features", "sparsity/dense_features", "steps"})
      EXPECT_TRUE(m["summary"].contains(key)) << key;
  }
  EXPECT_TRUE(j["completed"].get<bool>());
}

TEST(Sweep, AFailingMemberStopsAloneAndTheOthersMatchTheirSoloRuns) {
  test::TempDir tmp;
  SweepSpec s = expand({"lr=[0.003, 1e30, 0.01]"});
  SweepResult r =
      run_sweep(s, make_activation_source(s.members[0].cfg), quiet_sweep(tmp / "sweep"));
  EXPECT_FALSE(r.completed);
  EXPECT_EQ(r.stop_signal, 0);
  EXPECT_NE(r.errors[1].find("at step "), std::string::npos) << r.errors[1];
  EXPECT_NE(read_file(tmp / ("sweep/" + s.members[1].name + "/error.txt")).find("at step "),
            std::string::npos);
  json j = read_json_file(tmp / "sweep/sweep.json");
  EXPECT_EQ(j["members"][1]["status"], "failed");
  for (size_t i : {size_t(0), size_t(2)}) {
    EXPECT_TRUE(r.errors[i].empty()) << r.errors[i];
    EXPECT_EQ(j["members"][i]["status"], "completed");
    train_solo(s.members[i].cfg, tmp / ("solo" + std::to_string(i)));
    expect_same_weights(tmp / ("sweep/" + s.members[i].name), tmp / ("solo" + std::to_string(i)));
  }
}

// A toy source that raises a stop flag after a number of batches (a signal arriving mid-run).
class StopAfter : public ActivationSource {
 public:
  StopAfter(std::unique_ptr<ActivationSource> s, int after, std::atomic<int>& flag)
      : s_(std::move(s)), after_(after), flag_(flag) {}
  int64_t d_in() const override { return s_->d_in(); }
  at::Tensor next_batch(int64_t n) override {
    if (++calls_ == after_) flag_.store(SIGINT);
    return s_->next_batch(n);
  }
  json state() const override { return s_->state(); }
  void load_state(const json& st) override { s_->load_state(st); }
  std::optional<at::Tensor> true_features() const override { return s_->true_features(); }
  std::string describe() const override { return s_->describe(); }

 private:
  std::unique_ptr<ActivationSource> s_;
  int after_, calls_ = 0;
  std::atomic<int>& flag_;
};

TEST(Sweep, StopCheckpointsEveryMemberAtOneStepAndResumeMatchesSolo) {
  test::TempDir tmp;
  SweepSpec s = expand({"l1_coefficient=[0.1, 0.5, 1]"});
  std::atomic<int> flag{0};
  SweepOptions o = quiet_sweep(tmp / "sweep");
  o.stop_signal = &flag;
  auto src = std::make_unique<StopAfter>(make_activation_source(s.members[0].cfg), 17, flag);
  SweepResult r = run_sweep(s, std::move(src), o);
  EXPECT_FALSE(r.completed);
  EXPECT_EQ(r.stop_signal, SIGINT);
  int64_t step = r.members[0].steps;
  EXPECT_GT(step, 0);
  EXPECT_LT(step, 40);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.members[i].steps, step) << s.members[i].name;
    EXPECT_FALSE(path_exists(tmp / ("sweep/" + s.members[i].name + "/final")));
  }
  EXPECT_EQ(read_json_file(tmp / "sweep/sweep.json")["members"][1]["status"], "stopped");

  // --resume: the sweep directory gives the members back; they continue from one checkpoint.
  SweepSpec back = load_sweep_dir(tmp / "sweep");
  ASSERT_EQ(back.members.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(back.members[i].cfg, s.members[i].cfg);
  SweepOptions o2 = quiet_sweep(tmp / "sweep");
  o2.resume_checkpoints = sweep_resume_checkpoints(back, tmp / "sweep");
  EXPECT_NE(o2.resume_checkpoints[2].find("checkpoints/" + std::to_string(step * 256)),
            std::string::npos);
  SweepResult r2 = run_sweep(back, make_activation_source(back.members[0].cfg), o2);
  ASSERT_TRUE(r2.completed);
  for (size_t i = 0; i < 3; ++i) {
    train_solo(s.members[i].cfg, tmp / ("solo" + std::to_string(i)));
    expect_same_weights(tmp / ("sweep/" + s.members[i].name), tmp / ("solo" + std::to_string(i)));
  }
}

std::string saelab_1thread() { return std::string("OMP_NUM_THREADS=1 ") + SAELAB_EXE; }

TEST(SweepCli, TrainsEveryMemberAndPrintsOneJsonObject) {
  test::TempDir tmp;
  test::write_text(tmp / "toy.toml", kToy);
  auto r = test::run_command(
      saelab_1thread() + " train " + tmp / "toy.toml" +
      " --set 'l1_coefficient=[0.1,1]' --set 'architecture=[standard,topk]' --set k=3"
      " --json --run-dir " +
      tmp / "sw");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_EQ(j["members"].size(), 4u);
  EXPECT_EQ(j["run_dir"], tmp / "sw");
  for (const auto& m : j["members"]) {
    EXPECT_EQ(m["status"], "completed");
    EXPECT_TRUE(m["summary"].contains("metrics/explained_variance"));
    EXPECT_TRUE(path_exists(
        tmp / ("sw/" + m["name"].get<std::string>() + "/final/sae_weights.safetensors")));
  }
  EXPECT_TRUE(path_exists(tmp / "sw/architecture=topk_l1_coefficient=1/config.toml") ||
              path_exists(tmp / "sw/l1_coefficient=1_architecture=topk/config.toml"));
  // The console shows one progress line for the sweep, not one per member.
  EXPECT_NE(r.err.find("sweeping"), std::string::npos) << r.err;

  // A second sweep into the same directory is refused; a stream key is an error naming it.
  auto again = test::run_command(saelab_1thread() + " train " + tmp / "toy.toml" +
                                 " --set 'lr=[0.001,0.01]' --run-dir " + tmp / "sw");
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.err.find("already holds"), std::string::npos) << again.err;
  auto bad =
      test::run_command(saelab_1thread() + " train " + tmp / "toy.toml" + " --set 'seed=[1,2]'");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("seed cannot be swept"), std::string::npos) << bad.err;
}

TEST(SweepCli, SigtermCheckpointsEveryMemberAndResumeFinishesTheSweep) {
  test::TempDir tmp;
  test::write_text(tmp / "toy.toml", kToy);
  std::string run = tmp / "sw";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string cfg = tmp / "toy.toml";
    setenv("OMP_NUM_THREADS", "1", 1);
    execl(SAELAB_EXE, SAELAB_EXE, "train", cfg.c_str(), "--set", "l1_coefficient=[0.1,1]", "--set",
          "training_tokens=25600000", "--run-dir", run.c_str(), (char*)nullptr);
    _exit(127);
  }
  const std::string metrics = run + "/l1_coefficient=1/metrics.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (path_exists(metrics) && !read_file(metrics).empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 143);
  std::string c1 = latest_checkpoint(run + "/l1_coefficient=0.1");
  std::string c2 = latest_checkpoint(run + "/l1_coefficient=1");
  ASSERT_FALSE(c1.empty());
  // Both members stopped after the same step.
  EXPECT_EQ(c1.substr(c1.rfind('/')), c2.substr(c2.rfind('/')));
  int64_t stopped = read_json_file(c1 + "/trainer_state.json")["step"].get<int64_t>();
  EXPECT_LT(stopped, 4000) << "the sweep did not stop promptly";

  auto r = test::run_command(saelab_1thread() + " train --resume " + run +
                             " --set training_tokens=" + std::to_string((stopped + 20) * 256) +
                             " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("resuming every member from checkpoints/" + std::to_string(stopped * 256)),
            std::string::npos)
      << r.err;
  json j = json::parse(r.out);
  ASSERT_EQ(j["members"].size(), 2u);
  for (const auto& m : j["members"]) {
    EXPECT_EQ(m["status"], "completed");
    EXPECT_EQ(m["summary"]["steps"].get<int64_t>(), stopped + 20);
  }
  EXPECT_TRUE(path_exists(run + "/l1_coefficient=0.1/final/sae_weights.safetensors"));
  // A list in --set on a resumed sweep is refused.
  auto bad =
      test::run_command(saelab_1thread() + " train --resume " + run + " --set 'lr=[0.1,0.2]'");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("keeps its members"), std::string::npos) << bad.err;
}

// A run on the tiny random GPT-2 (2 blocks, d_model 16) over 256 random 16-token prompts, in
// tmp/run.toml (with tmp/tokens.jsonl), at blocks.0.hook_resid_post.
void write_tiny_model_run(const test::TempDir& tmp) {
  at::manual_seed(3);
  at::Tensor toks = torch::randint(0, 49, {256, 16}, torch::kLong);
  std::string lines;
  for (int64_t r = 0; r < 256; ++r) {
    std::vector<int64_t> row(toks[r].data_ptr<int64_t>(), toks[r].data_ptr<int64_t>() + 16);
    lines += json{{"input_ids", row}}.dump() + "\n";
  }
  test::write_text(tmp / "tokens.jsonl", lines);
  test::write_text(
      tmp / "run.toml",
      "model_name = " + json(test::tiny_model("gpt2")).dump() +
          "\nhook_name = \"blocks.0.hook_resid_post\"\nhook_layer = 0\nd_in = 16\n"
          "dataset_path = " +
          json(tmp / "tokens.jsonl").dump() +
          "\ncontext_size = 16\nprepend_bos = false\narchitecture = \"standard\"\n"
          "expansion_factor = 4\nb_dec_init_method = \"mean\"\nlr = 0.003\n"
          "training_tokens = 8192\ntrain_batch_size_tokens = 256\nn_batches_in_buffer = 4\n"
          "store_batch_size_prompts = 8\nn_eval_batches = 1\neval_every_n_wandb_logs = 2\n"
          "wandb_log_frequency = 8\nlog_to_wandb = false\nseed = 1\n");
}

// Every float of a solo run's --json summary (not the timings) within 1e-6 of the member's.
void expect_same_summary(const json& member, const json& solo) {
  for (const auto& [key, v] : solo.items())
    if (v.is_number_float() && key.find("seconds") == std::string::npos)
      EXPECT_NEAR(member.value(key, -1e9), v.get<double>(), 1e-6) << key;
}

// A language model's activations: one store feeds both members (with their CE/KL evals), and each
// member ends with the weights of the same config run alone through the CLI.
TEST(SweepCli, TinyModelSweepMatchesSoloRuns) {
  test::TempDir tmp;
  write_tiny_model_run(tmp);
  auto r = test::run_command(saelab_1thread() + " train " + tmp / "run.toml" +
                             " --set 'l1_coefficient=[0.001,0.01]' --json --run-dir " + tmp / "sw");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_EQ(j["members"].size(), 2u);
  for (const char* l1 : {"0.001", "0.01"}) {
    SCOPED_TRACE(l1);
    auto solo = test::run_command(saelab_1thread() + " train " + tmp / "run.toml" +
                                  " --set l1_coefficient=" + l1 + " --json --run-dir " +
                                  tmp / ("solo" + std::string(l1)));
    ASSERT_EQ(solo.rc, 0) << solo.err;
    json s = json::parse(solo.out);
    expect_same_weights(tmp / ("sw/l1_coefficient=" + std::string(l1)),
                        tmp / ("solo" + std::string(l1)));
    expect_same_summary(j["members"][std::string(l1) == "0.001" ? 0 : 1]["summary"], s);
  }
}

// A sweep over hook_name (sparsify's many-layer training): one forward pass records every hook,
// and each member trains on its own hook's activations, with hook_layer following it. Each member
// ends with the weights, summary (CE/KL evals at its hook included) and cfg.json of the same
// config run alone on that hook.
TEST(SweepCli, HookNameSweepTrainsEachMemberOnItsHookLikeItsSoloRun) {
  test::TempDir tmp;
  write_tiny_model_run(tmp);
  const std::vector<std::pair<std::string, int>> hooks{{"blocks.1.hook_resid_post", 1},
                                                       {"blocks.0.hook_resid_post", 0},
                                                       {"blocks.0.hook_attn_out", 0}};
  auto r =
      test::run_command(saelab_1thread() + " train " + tmp / "run.toml" +
                        " --set 'hook_name=[blocks.1.hook_resid_post, "
                        "blocks.0.hook_resid_post, blocks.0.hook_attn_out]' --json --run-dir " +
                        tmp / "sw");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_EQ(j["members"].size(), 3u);
  EXPECT_NE(
      r.err.find("blocks.1.hook_resid_post, blocks.0.hook_resid_post, blocks.0.hook_attn_out"),
      std::string::npos)
      << "the source does not name its three hooks:\n"
      << r.err;
  for (size_t i = 0; i < hooks.size(); ++i) {
    const auto& [hook, layer] = hooks[i];
    SCOPED_TRACE(hook);
    const std::string member = tmp / ("sw/" + j["members"][i]["name"].get<std::string>());
    auto solo = test::run_command(
        saelab_1thread() + " train " + tmp / "run.toml" + " --set hook_name=" + hook +
        " --set hook_layer=" + std::to_string(layer) + " --json --run-dir " + tmp / hook);
    ASSERT_EQ(solo.rc, 0) << solo.err;
    expect_same_weights(member, tmp / hook);
    const json s = json::parse(solo.out);
    expect_same_summary(j["members"][i]["summary"], s);
    EXPECT_TRUE(s.contains("model_performance_preservation/ce_loss_score")) << s.dump();
    const json cfg = read_json_file(member + "/final/cfg.json");
    EXPECT_EQ(cfg["hook_name"], hook);
    EXPECT_EQ(cfg["hook_layer"], layer);
  }
  // Hooks of another width are refused before training, naming both.
  auto wide = test::run_command(saelab_1thread() + " train " + tmp / "run.toml" +
                                " --set 'hook_name=[blocks.0.hook_resid_post, "
                                "blocks.0.mlp.hook_post]' --run-dir " +
                                tmp / "wide");
  EXPECT_EQ(wide.rc, 1);
  EXPECT_NE(wide.err.find("'blocks.0.mlp.hook_post' has width 64"), std::string::npos) << wide.err;
  EXPECT_NE(wide.err.find("hooks of one width"), std::string::npos) << wide.err;
  // The members did train on different activations.
  EXPECT_FALSE(final_weights(tmp / hooks[0].first)
                   .at("W_dec")
                   .equal(final_weights(tmp / hooks[1].first).at("W_dec")));
}

}  // namespace
}  // namespace saelab
