// Faults during training, black-box on ./build/saelab: SIGKILL at random moments (some inside
// checkpoint writes), a full disk (RLIMIT_FSIZE) while a checkpoint is written, corrupted and
// truncated checkpoints given to --resume, NaN in the input activations, and a cache shard that
// disappears mid-run. What must hold afterwards is read back in-process with saelab's own loaders.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "model/test_load_fixtures.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"
#include "saelab/train/checkpoint.h"
#include "test_paths.h"
#include "test_util.h"

namespace fs = std::filesystem;
using saelab::test::TempDir;
using saelab::test::write_text;
using Clock = std::chrono::steady_clock;

namespace {

// The toy run, small: 64-d toy activations, 64 latents, 256 tokens a step.
std::vector<std::string> toy_args(int64_t steps, int n_checkpoints) {
  return {"train",
          "--set",
          "training_tokens=" + std::to_string(steps * 256),
          "--set",
          "train_batch_size_tokens=256",
          "--set",
          "d_sae=64",
          "--set",
          "n_checkpoints=" + std::to_string(n_checkpoints),
          "--set",
          "wandb_log_frequency=20",
          "--set",
          "lr_warm_up_steps=2",
          "--set",
          "l1_warm_up_steps=2",
          "--set",
          "l0_warm_up_steps=2",
          "--set",
          "lr_decay_steps=0"};
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Starts saelab with `args`, output to log; fsize_limit > 0 caps every file it writes (bytes).
pid_t spawn(const std::vector<std::string>& args, const std::string& log, rlim_t fsize_limit = 0) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    if (fsize_limit > 0) {
      rlimit lim{fsize_limit, fsize_limit};
      setrlimit(RLIMIT_FSIZE, &lim);
    }
    std::vector<char*> argv;
    std::string exe = SAELAB_EXE;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for pid (killing it after `limit`); returns the exit code, or 128 + signal.
int wait_for(pid_t pid, std::chrono::seconds limit = std::chrono::seconds(120)) {
  auto deadline = Clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "saelab did not finish within " << limit.count() << " s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Outcome {
  int rc;
  std::string log;
};
Outcome run(const std::vector<std::string>& args, const std::string& log, rlim_t fsize_limit = 0) {
  int rc = wait_for(spawn(args, log, fsize_limit));
  std::ifstream in(log);
  return {rc, std::string(std::istreambuf_iterator<char>(in), {})};
}

// The lines of text that start with prefix.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind(prefix, 0) == 0) out.push_back(l);
  return out;
}

// The one "saelab: error:" line of a run that must fail with exit code 1, printed for the log;
// "" (and a test failure) when there is not exactly one.
std::string single_error(int rc, const std::string& log) {
  EXPECT_EQ(rc, 1) << log;
  auto errors = lines_starting(log, "saelab: error:");
  EXPECT_EQ(errors.size(), 1u) << log;
  if (errors.size() != 1) return "";
  std::printf("%s\n", errors[0].c_str());
  return errors[0];
}

std::vector<std::string> checkpoint_dirs(const std::string& run_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir + "/checkpoints", ec)) {
    std::string n = e.path().filename().string();
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return std::stoll(fs::path(a).filename()) < std::stoll(fs::path(b).filename());
  });
  return out;
}

// Every part of a checkpoint a resume reads: the SAE and the trainer state.
void expect_loads(const std::string& dir) {
  SCOPED_TRACE(dir);
  EXPECT_NO_THROW(saelab::load_sae(dir));
  EXPECT_NO_THROW(saelab::read_checkpoint(dir));
}

void expect_same_weights(const std::string& a, const std::string& b) {
  auto ta = saelab::load_safetensors(a), tb = saelab::load_safetensors(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name << " differs between " << a << " and " << b;
  }
}

// A checkpoint being written (or left half-written) by process pid; pid 0: by any process.
bool has_temporary(const std::string& run_dir, pid_t pid = 0) {
  const std::string tag = ".tmp-" + (pid ? std::to_string(pid) : std::string());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir + "/checkpoints", ec)) {
    const std::string n = e.path().filename().string();
    const size_t at = n.find(tag);
    if (at != std::string::npos && (pid == 0 || at + tag.size() == n.size())) return true;
  }
  return false;
}

std::string file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// At least 20 SIGKILLs during training, alternately at a random moment after the attempt's first
// new checkpoint and the moment a checkpoint's temporary folder appears (inside the write); after
// each, every checkpoint on disk loads. The resumed run then completes with the same final weights
// as a run that was never interrupted. Each attempt gets only a few steps further, so all the
// kills land before the run's end.
TEST(Faults, SigkillAtRandomMomentsThenResumeEqualsAnUninterruptedRun) {
  TempDir d;
  // Density windows of 24 steps: density.jsonl must come out as the uninterrupted run's too.
  const auto args = plus(toy_args(240, 80), {"--set", "feature_sampling_window=24"});
  auto t0 = Clock::now();
  Outcome ref = run(plus(args, {"--run-dir", d / "ref"}), d / "ref.log");
  ASSERT_EQ(ref.rc, 0) << ref.log;
  const double full = std::chrono::duration<double>(Clock::now() - t0).count();

  const std::string killed = d / "killed";
  std::mt19937 rng(20261202);
  int kills = 0, inside_write = 0, attempts = 0;
  while (kills < 20 && attempts++ < 40 && !fs::exists(killed + "/final")) {
    const bool resumable = fs::exists(killed + "/config.toml");
    const size_t before = checkpoint_dirs(killed).size();
    pid_t pid = spawn(resumable ? std::vector<std::string>{"train", "--resume", killed}
                                : plus(args, {"--run-dir", killed}),
                      d / "attempt.log");
    bool during_write = false, ended = false;
    auto deadline = Clock::now() + std::chrono::duration<double>(2 * full);
    auto running = [&] {
      int st;
      ended = ended || waitpid(pid, &st, WNOHANG) == pid;
      return !ended && Clock::now() < deadline;
    };
    if (kills % 2 == 0) {
      while (running() && checkpoint_dirs(killed).size() <= before) {
      }
      std::uniform_real_distribution<double> at(0.0, 0.03);
      std::this_thread::sleep_for(std::chrono::duration<double>(at(rng)));
    } else {
      while (running() && !(during_write = has_temporary(killed, pid))) {
      }
    }
    if (!ended && kill(pid, SIGKILL) == 0) {
      int st;
      waitpid(pid, &st, 0);
      if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
        ++kills;
        inside_write += during_write;
      }
    }
    for (const auto& c : checkpoint_dirs(killed)) expect_loads(c);
    if (HasFailure()) return;
  }
  EXPECT_GE(kills, 20) << "last attempt:\n" << file_bytes(d / "attempt.log");
  EXPECT_GE(inside_write, 1) << "no kill landed inside a checkpoint write";
  Outcome last = run({"train", "--resume", killed}, d / "last.log");
  ASSERT_EQ(last.rc, 0) << last.log;
  EXPECT_FALSE(has_temporary(killed)) << "a killed write's temporary folder is still there";
  expect_same_weights(d / "ref/final/sae_weights.safetensors",
                      killed + "/final/sae_weights.safetensors");
  const std::string density = file_bytes(d / "ref/density.jsonl");
  EXPECT_EQ(std::count(density.begin(), density.end(), '\n'), 10);
  EXPECT_EQ(file_bytes(killed + "/density.jsonl"), density)
      << "the resumed run's density windows differ from the uninterrupted run's";
  std::printf("%d kills (%d inside a checkpoint write), full run %.2f s\n", kills, inside_write,
              full);
}

// RLIMIT_FSIZE below a checkpoint's size: the write fails, saelab names the file in one line and
// exits non-zero, and the previous checkpoint and final/ are untouched.
TEST(Faults, DiskFullWhileWritingACheckpointKeepsThePreviousOne) {
  TempDir d;
  const std::string dir = d / "run";
  Outcome first = run(plus(toy_args(16, 1), {"--run-dir", dir}), d / "first.log");
  ASSERT_EQ(first.rc, 0) << first.log;
  auto before = checkpoint_dirs(dir);
  ASSERT_EQ(before.size(), 1u);
  const std::string state = before[0] + "/trainer_state.safetensors";
  const std::string kept = file_bytes(state),
                    final_kept = file_bytes(dir + "/final/sae_weights.safetensors");
  // Longer now, under a file-size cap that metrics and config fit in but a checkpoint does not.
  Outcome full = run({"train", "--resume", dir, "--set", "training_tokens=8192"}, d / "full.log",
                     kept.size() / 2);
  const std::string error = single_error(full.rc, full.log);
  ASSERT_FALSE(error.empty());
  EXPECT_NE(error.find(".safetensors"), std::string::npos) << error;
  EXPECT_NE(error.find(dir), std::string::npos) << error;
  EXPECT_EQ(lines_starting(full.log, "saelab: internal").size(), 0u) << full.log;
  EXPECT_EQ(checkpoint_dirs(dir), before);
  EXPECT_EQ(file_bytes(state), kept);
  EXPECT_EQ(file_bytes(dir + "/final/sae_weights.safetensors"), final_kept);
  expect_loads(before[0]);
  EXPECT_FALSE(has_temporary(dir)) << "a failed write left its temporary folder";
}

// RLIMIT_FSIZE below the final SAE's size (no checkpoints, so final/ is the first large write):
// one line naming final/, exit 1, and neither final/ nor its temporary folder left behind.
TEST(Faults, DiskFullWhileWritingFinalLeavesNoPartialFinal) {
  TempDir d;
  Outcome probe = run(plus(toy_args(16, 0), {"--run-dir", d / "probe"}), d / "probe.log");
  ASSERT_EQ(probe.rc, 0) << probe.log;
  const size_t weights = file_bytes(d / "probe/final/sae_weights.safetensors").size();
  ASSERT_GT(weights, 16000u);  // above what the config and the (empty) metrics need
  const std::string dir = d / "run";
  Outcome full = run(plus(toy_args(16, 0), {"--run-dir", dir}), d / "full.log", weights / 2);
  const std::string error = single_error(full.rc, full.log);
  ASSERT_FALSE(error.empty());
  EXPECT_NE(error.find(dir + "/final"), std::string::npos) << error;
  EXPECT_NE(error.find("last good checkpoint: none"), std::string::npos) << error;
  EXPECT_EQ(lines_starting(full.log, "saelab: internal").size(), 0u) << full.log;
  EXPECT_FALSE(fs::exists(dir + "/final")) << "a partial final/ was left";
  EXPECT_FALSE(fs::exists(dir + "/.final.tmp")) << "the temporary final folder was left";
}

// One checkpoint, truncated: --resume names the file and what is wrong in one line. Several, the
// newest broken: --resume says it skips them and continues from the newest whole one, and the
// run ends with the weights of an uninterrupted run.
TEST(Faults, ResumeFromCorruptedCheckpoints) {
  TempDir d;
  const auto args = toy_args(40, 4);
  Outcome ref = run(plus(args, {"--run-dir", d / "ref"}), d / "ref.log");
  ASSERT_EQ(ref.rc, 0) << ref.log;
  auto cps = checkpoint_dirs(d / "ref");
  ASSERT_EQ(cps.size(), 4u);

  // Several: copy the run without final/, truncate the newest state, break the next one's JSON.
  const std::string several = d / "several";
  fs::copy(d / "ref", several, fs::copy_options::recursive);
  fs::remove_all(several + "/final");
  auto sev = checkpoint_dirs(several);
  fs::resize_file(sev[3] + "/trainer_state.safetensors",
                  fs::file_size(sev[3] + "/trainer_state.safetensors") - 100);
  write_text(sev[2] + "/trainer_state.json", "{\"step\": ");
  Outcome r = run({"train", "--resume", several}, d / "several.log");
  ASSERT_EQ(r.rc, 0) << r.log;
  for (const auto& w : lines_starting(r.log, "saelab: warning: skipping"))
    std::printf("%s\n", w.c_str());
  EXPECT_NE(r.log.find(sev[3]), std::string::npos) << "the skipped checkpoint is not named\n"
                                                   << r.log;
  EXPECT_NE(r.log.find("resuming from " + sev[1]), std::string::npos) << r.log;
  expect_same_weights(d / "ref/final/sae_weights.safetensors",
                      several + "/final/sae_weights.safetensors");

  // One: only the newest checkpoint, truncated.
  const std::string one = d / "one";
  fs::copy(d / "ref", one, fs::copy_options::recursive);
  fs::remove_all(one + "/final");
  auto all = checkpoint_dirs(one);
  for (size_t i = 0; i + 1 < all.size(); ++i) fs::remove_all(all[i]);
  fs::resize_file(all[3] + "/trainer_state.safetensors", 20);
  Outcome bad = run({"train", "--resume", one}, d / "one.log");
  const std::string error = single_error(bad.rc, bad.log);
  ASSERT_FALSE(error.empty());
  EXPECT_NE(error.find(all[3]), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(one + "/final"));
}

// A cache shard of float32 activations [rows, d_in] written from the format's definition.
void write_shard(const std::string& path, const std::vector<float>& values, int64_t d_in) {
  const int64_t rows = static_cast<int64_t>(values.size()) / d_in;
  std::string header = "{\"activations\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(rows) +
                       "," + std::to_string(d_in) + "],\"data_offsets\":[0," +
                       std::to_string(values.size() * 4) + "]}}";
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out.write(reinterpret_cast<const char*>(values.data()), values.size() * 4);
}

std::string cached_config(const std::string& cache, int64_t steps, int n_checkpoints) {
  return "d_in = 16\nd_sae = 32\nuse_cached_activations = true\ncached_activations_path = \"" +
         cache + "\"\ndataset_path = \"unused\"\nmodel_name = \"gelu-1l\"\n" +
         "hook_name = \"blocks.0.hook_mlp_out\"\ntrain_batch_size_tokens = 64\n" +
         "training_tokens = " + std::to_string(steps * 64) +
         "\nn_checkpoints = " + std::to_string(n_checkpoints) +
         "\nlog_to_wandb = false\nb_dec_init_method = \"zeros\"\n";
}

// A NaN in the cached activations: the run stops at the batch that holds it, naming the step and
// the last good checkpoint, which loads.
TEST(Faults, NanInInputActivationsStopsAtTheFirstBadBatch) {
  TempDir d;
  fs::create_directories(d / "cache");
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> v(4096 * 16);
  for (auto& x : v) x = g(rng);
  v[3000 * 16 + 5] = std::nanf("");
  write_shard(d / "cache/shard_000.safetensors", v, 16);
  write_text(d / "run.toml", cached_config(d / "cache", 64, 16));
  Outcome r = run({"train", d / "run.toml", "--run-dir", d / "run"}, d / "run.log");
  const std::string e = single_error(r.rc, r.log);
  ASSERT_FALSE(e.empty());
  EXPECT_TRUE(e.find("NaN") != std::string::npos || e.find("nan") != std::string::npos) << e;
  EXPECT_NE(e.find("step"), std::string::npos) << e;
  EXPECT_NE(e.find("last good checkpoint"), std::string::npos) << e;
  auto cps = checkpoint_dirs(d / "run");
  for (const auto& c : cps) expect_loads(c);
  if (!cps.empty()) {
    EXPECT_NE(e.find(cps.back()), std::string::npos) << "the newest checkpoint is not named: " << e;
  }
}

// A model with a broken weight (a NaN in block 0's MLP output bias, so every activation at the
// hook holds one): the run stops at its first batch, naming it, and leaves no final/.
TEST(Faults, NanFromABrokenModelWeightStopsAtTheFirstBatch) {
  TempDir d;
  const std::string lm = d / "lm";
  fs::create_directories(lm);
  const std::string src = saelab::test::tiny_model("gpt2");
  fs::copy_file(src + "/config.json", lm + "/config.json");
  auto loaded = saelab::load_safetensors(src + "/model.safetensors");
  ASSERT_TRUE(loaded.count("h.0.mlp.c_proj.bias")) << "the tiny GPT-2 has no h.0.mlp.c_proj.bias";
  saelab::NamedTensors w;
  for (auto& [name, t] : loaded) {
    w.emplace_back(name, t.clone());
    if (name == "h.0.mlp.c_proj.bias") w.back().second[0] = std::nanf("");
  }
  saelab::save_safetensors(lm + "/model.safetensors", w);
  std::string rows;
  for (int r = 0; r < 64; ++r) {
    rows += "{\"input_ids\": [";
    for (int t = 0; t < 8; ++t) rows += (t ? ", " : "") + std::to_string((r * 7 + t * 3) % 49);
    rows += "]}\n";
  }
  write_text(d / "tokens.jsonl", rows);
  write_text(d / "run.toml", "model_name = \"" + lm + "\"\ndataset_path = \"" +
                                 std::string(d / "tokens.jsonl") +
                                 "\"\nhook_name = \"blocks.0.hook_resid_post\"\nd_in = 16\n"
                                 "d_sae = 32\ncontext_size = 8\nprepend_bos = false\n"
                                 "train_batch_size_tokens = 64\nn_batches_in_buffer = 4\n"
                                 "store_batch_size_prompts = 4\ntraining_tokens = 1024\n"
                                 "n_checkpoints = 0\nn_eval_batches = 0\nlog_to_wandb = false\n"
                                 "b_dec_init_method = \"zeros\"\n");
  Outcome r = run({"train", d / "run.toml", "--run-dir", d / "run"}, d / "run.log");
  const std::string e = single_error(r.rc, r.log);
  ASSERT_FALSE(e.empty());
  EXPECT_NE(e.find("NaN"), std::string::npos) << e;
  EXPECT_NE(e.find("step 1 "), std::string::npos) << e;
  EXPECT_NE(e.find("last good checkpoint: none"), std::string::npos) << e;
  EXPECT_EQ(lines_starting(r.log, "saelab: internal").size(), 0u) << r.log;
  EXPECT_FALSE(fs::exists(d / "run/final"));
}

// Three shards of 2048 random 256-d rows in `cache` (write_all rewrites them), and a run config
// over them of `steps` steps of 256 rows (8 a shard) with `n_checkpoints` checkpoints.
struct WideCache {
  std::string cache;
  std::vector<std::vector<float>> shards;
  WideCache(const std::string& dir) : cache(dir), shards(3, std::vector<float>(2048 * 256)) {
    fs::create_directories(cache);
    std::mt19937 rng(5);
    std::normal_distribution<float> g;
    for (auto& s : shards)
      for (auto& x : s) x = g(rng);
    write_all();
  }
  void write_all() const {
    for (size_t i = 0; i < shards.size(); ++i)
      write_shard(cache + "/shard_00" + std::to_string(i) + ".safetensors", shards[i], 256);
  }
  std::string config(int64_t steps, int n_checkpoints) const {
    std::string cfg = cached_config(cache, steps, n_checkpoints);
    for (auto [from, to] : {std::pair<std::string, std::string>{"d_in = 16", "d_in = 256"},
                            {"d_sae = 32", "d_sae = 2048"},
                            {"train_batch_size_tokens = 64", "train_batch_size_tokens = 256"},
                            {"training_tokens = " + std::to_string(steps * 64),
                             "training_tokens = " + std::to_string(steps * 256)}})
      cfg.replace(cfg.find(from), from.size(), to);
    return cfg;
  }
};

// The cache's shards deleted while the run reads the first one (the run is paused meanwhile, so
// the moment is certain): the run stops with one line naming the missing shard, its checkpoints
// load, and once the shards are back `--resume` completes the run.
TEST(Faults, CacheShardsDisappearingMidRunThenResume) {
  TempDir d;
  const WideCache wide(d / "cache");
  const std::string cache = wide.cache;
  // 20 steps, a checkpoint after every step.
  write_text(d / "run.toml", wide.config(20, 20));
  const std::string dir = d / "run";
  pid_t pid = spawn({"train", d / "run.toml", "--run-dir", dir}, d / "run.log");
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (checkpoint_dirs(dir).empty() && Clock::now() < deadline) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) FAIL() << "the run ended before its first checkpoint";
  }
  kill(pid, SIGSTOP);
  const size_t seen = checkpoint_dirs(dir).size();
  for (const auto& e : fs::directory_iterator(cache)) fs::remove(e.path());
  kill(pid, SIGCONT);
  int rc = wait_for(pid);
  std::ifstream in(d / "run.log");
  const std::string log(std::istreambuf_iterator<char>(in), {});
  ASSERT_LT(seen, 8u) << "the run was past its first shard when paused; the test proves nothing";
  const std::string error = single_error(rc, log);
  ASSERT_FALSE(error.empty());
  EXPECT_NE(error.find(cache + "/shard_00"), std::string::npos) << error;
  auto cps = checkpoint_dirs(dir);
  ASSERT_FALSE(cps.empty());
  for (const auto& c : cps) expect_loads(c);
  wide.write_all();
  Outcome resumed = run({"train", "--resume", dir}, d / "resume.log");
  EXPECT_EQ(resumed.rc, 0) << resumed.log;
  EXPECT_TRUE(fs::exists(dir + "/final/sae_weights.safetensors"));
}

// SIGTERM while the reader thread is batches ahead of the step: the checkpoint records the
// position of the first batch not yet trained on, so the resumed run (over three epochs of the
// shards) ends with the weights of an uninterrupted run, bit for bit.
TEST(Faults, SigtermWhileReadingAheadThenResumeEqualsAnUninterruptedRun) {
  TempDir d;
  const WideCache wide(d / "cache");
  write_text(d / "run.toml", wide.config(60, 0) + "wandb_log_frequency = 4\n");
  Outcome ref = run({"train", d / "run.toml", "--run-dir", d / "ref"}, d / "ref.log");
  ASSERT_EQ(ref.rc, 0) << ref.log;
  const std::string dir = d / "run";
  pid_t pid = spawn({"train", d / "run.toml", "--run-dir", dir}, d / "run.log");
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && file_bytes(dir + "/metrics.jsonl").empty())
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_for(pid), 143) << file_bytes(d / "run.log");
  auto cps = checkpoint_dirs(dir);
  ASSERT_EQ(cps.size(), 1u) << file_bytes(d / "run.log");
  const int64_t stopped = saelab::read_json_file(cps[0] + "/trainer_state.json")["step"];
  EXPECT_LT(stopped, 60) << "the run ended before SIGTERM; the test proves nothing";
  Outcome resumed = run({"train", "--resume", dir}, d / "resume.log");
  ASSERT_EQ(resumed.rc, 0) << resumed.log;
  expect_same_weights(d / "ref/final/sae_weights.safetensors",
                      dir + "/final/sae_weights.safetensors");
  std::printf("stopped at step %ld of 60\n", long(stopped));
}

}  // namespace
