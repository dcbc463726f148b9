// The error contract of the saelab executable, for every verb: bad input exits 1 (a usage error 2)
// with exactly one line on stderr that starts "saelab: error:" and names the thing at fault; never
// a signal, a stack trace or a hang, and no output file left behind under its final name (nor a
// temporary one). Black-box: runs ./build/saelab.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "saelab/core/safetensors.h"
#include "test_paths.h"
#include "test_util.h"

namespace fs = std::filesystem;
using saelab::test::run_command;
using saelab::test::TempDir;
using saelab::test::write_text;

namespace {

// Every hostile case runs under a timeout: a verb that hangs on bad input fails with rc 124.
saelab::test::CommandResult saelab_cmd(const std::string& args) {
  return run_command("timeout 120 " + std::string(SAELAB_EXE) + " " + args);
}

std::set<std::string> listing(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out.insert(fs::relative(e.path(), dir).string());
  return out;
}

// The verbs `saelab --help` lists.
std::set<std::string> verbs() {
  auto r = saelab_cmd("--help");
  std::set<std::string> out;
  std::istringstream in(r.out);
  std::string line;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (line.rfind("Subcommands:", 0) == 0 || line.rfind("SUBCOMMANDS:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (in_list && line.size() > 2 && line[0] == ' ') {
      std::istringstream w(line);
      std::string verb;
      w >> verb;
      out.insert(verb);
    }
  }
  return out;
}

struct Case {
  std::string verb;
  std::string args;    // after the verb; "{d}" is the case's temporary folder
  int rc;              // 1: bad input, 2: usage
  std::string names;   // the message must contain this (the file, key or option at fault)
  std::string output;  // a file the verb would write; it must not exist afterwards ("" = none)
};

std::string expand(std::string s, const std::string& d) {
  for (size_t p; (p = s.find("{d}")) != std::string::npos;) s.replace(p, 3, d);
  return s;
}

void expect_contract(const Case& c, const std::string& d) {
  const std::string args = expand(c.args, d);
  SCOPED_TRACE("saelab " + c.verb + " " + args);
  const auto before = listing(d);
  auto r = saelab_cmd(c.verb + " " + args);
  EXPECT_EQ(r.rc, c.rc) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << "stderr: " << r.err;
  // names: what the message must mention; alternatives separated by '|'.
  if (!c.names.empty()) {
    bool found = false;
    std::istringstream alts(expand(c.names, d));
    for (std::string a; std::getline(alts, a, '|');) found |= r.err.find(a) != std::string::npos;
    EXPECT_TRUE(found) << "the message does not name " << c.names << "; stderr: " << r.err;
  }
  if (!c.output.empty()) {
    EXPECT_FALSE(fs::exists(expand(c.output, d)));
  }
  // Nothing new in the folder: no output, no temporary file (a run directory holding error.txt is
  // the one thing `train` may leave, and only inside a run directory it was given).
  for (const auto& f : listing(d))
    if (!before.count(f) && f.find("error.txt") == std::string::npos)
      ADD_FAILURE() << "left behind: " << f;
}

class ErrorContract : public ::testing::Test {
 protected:
  // One tiny trained SAE, shared by the cases that corrupt a copy of it.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = saelab_cmd(
        "train --set training_tokens=8192 --set train_batch_size_tokens=1024 --set d_sae=128 "
        "--set n_checkpoints=0 --set lr_warm_up_steps=2 --set l1_warm_up_steps=2 "
        "--set l0_warm_up_steps=2 --set lr_decay_steps=0 --run-dir " +
        *dir_ / "run");
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  // A copy of the trained SAE at d/name.
  static std::string sae_copy(const std::string& d, const std::string& name) {
    fs::copy(*dir_ / "run/final", d + "/" + name, fs::copy_options::recursive);
    return d + "/" + name;
  }
  static TempDir* dir_;
};
TempDir* ErrorContract::dir_ = nullptr;

TEST_F(ErrorContract, EveryVerbRefusesAnUnknownOptionAsAUsageError) {
  auto all = verbs();
  ASSERT_GE(all.size(), 10u) << "could not read the verbs from saelab --help";
  for (const auto& v : all) {
    TempDir d;
    // CLI11 reports a missing required option before an unknown one: either is named.
    expect_contract({v, "--no-such-option", 2, "--no-such-option| is required", ""}, d.path());
  }
  TempDir d;
  expect_contract({"no-such-verb", "", 2, "no-such-verb", ""}, d.path());
}

TEST_F(ErrorContract, EveryVerbRefusesBadInputWithOneLine) {
  const std::vector<Case> cases = {
      {"train", "{d}/garbage.toml", 1, "garbage.toml", ""},
      {"train", "--set no_such_key=1", 1, "no_such_key", ""},
      {"train", "--resume {d}/missing_run", 1, "missing_run", ""},
      {"cache", "{d}/missing.toml", 1, "missing.toml", ""},
      {"eval", "--sae {d}/bad_cfg --activations {d}/acts.safetensors --json", 1, "cfg.json", ""},
      {"info", "{d}/truncated", 1, "sae_weights.safetensors", ""},
      {"doctor", "{d}/bad_metrics", 1, "metrics.jsonl", ""},
      {"report", "{d}/missing_run --out {d}/report.html", 1, "missing_run", "{d}/report.html"},
      {"activations",
       "--model {d}/missing_model --tokens {d}/tokens.json --hooks blocks.0.hook_resid_post "
       "--output {d}/out.safetensors",
       1, "missing_model", "{d}/out.safetensors"},
      {"generate", "--model {d}/missing_model --prompt hi", 1, "missing_model", ""},
      {"prompt", "--model {d}/missing_model --prompt hi --answers x", 1, "missing_model", ""},
      {"vis", "--sae {d}/missing_sae --model {d}/missing_model --prompt hi --out {d}/page.html", 1,
       "missing_sae|missing_model", "{d}/page.html"},
      {"bench", "--arch no_such_arch --steps 1 --d-in 8 --d-sae 16 --batch 8", 1, "no_such_arch",
       ""},
      {"version", "unexpected_argument", 2, "unexpected_argument", ""},
  };
  std::set<std::string> covered;
  for (const auto& c : cases) {
    TempDir d;
    write_text(d / "garbage.toml", "d_in = [[[\n");
    write_text(d / "tokens.json", "[[1, 2, 3]]");
    saelab::save_safetensors(d / "acts.safetensors", {{"activations", torch::randn({16, 64})}});
    sae_copy(d.path(), "bad_cfg");
    write_text(d / "bad_cfg/cfg.json", "{\"d_in\": 64, \"d_sae\": ");
    std::string t = sae_copy(d.path(), "truncated") + "/sae_weights.safetensors";
    fs::resize_file(t, fs::file_size(t) / 2);
    fs::create_directories(d / "bad_metrics");
    fs::copy(*dir_ / "run/config.toml", d / "bad_metrics/config.toml");
    write_text(d / "bad_metrics/metrics.jsonl",
               "{\"step\": 0, \"losses/mse_loss\": 1}\nnot json\n{\"step\": 2}\n");
    expect_contract(c, d.path());
    covered.insert(c.verb);
  }
  // A new verb must come with its bad-input case here.
  for (const auto& v : verbs())
    if (v != "help") {
      EXPECT_TRUE(covered.count(v)) << "no bad-input case for verb " << v;
    }
}

}  // namespace
