// `saelab train` as a user runs it: the embedded default equals configs/toy.toml, --json prints one
// object, and SIGTERM to a running process writes a checkpoint that --resume continues from.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "saelab/config/default_config.h"
#include "saelab/config/runner_config.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/train/checkpoint.h"
#include "test_paths.h"
#include "test_util.h"

namespace saelab {
namespace {

const char* kSmallToy = R"(
dataset_path = "toy"
d_in = 16
d_sae = 64
toy_n_features = 32
toy_feature_probability = 0.04
architecture = "standard"
train_batch_size_tokens = 1024
training_tokens = 20_480_000
lr = 0.003
l1_coefficient = 0.3
normalize_sae_decoder = false
decoder_heuristic_init = true
feature_sampling_window = 100
dead_feature_window = 50
wandb_log_frequency = 20
log_to_wandb = false
)";

// One intra-op thread: these runs are tiny, and OpenMP's spinning threads crawl on a busy machine.
std::string saelab_1thread() { return std::string("OMP_NUM_THREADS=1 ") + SAELAB_EXE; }

TEST(TrainCli, EmbeddedDefaultEqualsConfigsToyToml) {
  std::string file = read_file(std::string(SAELAB_SOURCE_DIR) + "/configs/toy.toml");
  EXPECT_EQ(std::string(default_toy_config_toml()), file);
  test::TempDir tmp;
  test::write_text(tmp / "toy.toml", default_toy_config_toml());
  auto cfg = load_runner_config(tmp / "toy.toml");
  EXPECT_TRUE(cfg.is_toy());
  EXPECT_EQ(cfg.architecture, "standard");
}

TEST(TrainCli, JsonSummaryIsOneObject) {
  test::TempDir tmp;
  test::write_text(tmp / "run.toml", kSmallToy);
  auto r = test::run_command(saelab_1thread() + " train " + tmp / "run.toml" +
                             " --set training_tokens=102400 --json --run-dir " + tmp / "run");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  ASSERT_TRUE(j.is_object());
  for (const char* key :
       {"metrics/explained_variance", "metrics/l0", "sparsity/dead_features",
        "sparsity/dense_features", "metrics/mmcs", "metrics/features_recovered", "final_dir"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["steps"].get<int64_t>(), 100);
  // Where the loop's time went: parts of one wall-clock interval, inside the whole run's.
  EXPECT_EQ(j["loop_steps"].get<int64_t>(), 100);
  const double loop = j["loop_seconds"], step = j["step_seconds"], wait = j["source_wait_seconds"];
  EXPECT_GT(step, 0.0);
  EXPECT_GE(wait, 0.0);
  EXPECT_LE(step + wait, loop);
  EXPECT_LT(loop, j["seconds"].get<double>());
  EXPECT_TRUE(path_exists(tmp / "run/final/cfg.json"));
  EXPECT_TRUE(path_exists(tmp / "run/config.toml"));
  // A second run into the same --run-dir refuses instead of overwriting.
  auto again = test::run_command(saelab_1thread() + " train " + tmp / "run.toml" + " --run-dir " +
                                 tmp / "run");
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;
}

TEST(TrainCli, SigtermWritesACheckpointThatResumeContinues) {
  test::TempDir tmp;
  test::write_text(tmp / "run.toml", kSmallToy);
  std::string run = tmp / "run";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string cfg = tmp / "run.toml";
    setenv("OMP_NUM_THREADS", "1", 1);
    execl(SAELAB_EXE, SAELAB_EXE, "train", cfg.c_str(), "--run-dir", run.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Wait until training is under way (the first metrics line), then SIGTERM.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (path_exists(run + "/metrics.jsonl") && !read_file(run + "/metrics.jsonl").empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 143);
  std::string ckpt = latest_checkpoint(run);
  ASSERT_FALSE(ckpt.empty());
  auto state = read_json_file(ckpt + "/trainer_state.json");
  int64_t stopped_at = state["step"].get<int64_t>();
  EXPECT_GE(stopped_at, 20);
  EXPECT_LT(stopped_at, 400) << "the run did not stop promptly";
  EXPECT_TRUE(path_exists(ckpt + "/sae_weights.safetensors"));
  EXPECT_FALSE(path_exists(run + "/final"));

  auto r = test::run_command(saelab_1thread() + " train --resume " + run +
                             " --set training_tokens=409600 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("resuming from " + ckpt), std::string::npos) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["steps"].get<int64_t>(), 400);
  EXPECT_TRUE(path_exists(run + "/final/sae_weights.safetensors"));
}

}  // namespace
}  // namespace saelab
