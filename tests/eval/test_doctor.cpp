// The doctor's rules on hand-written run directories: each failure pattern written as plain
// metric curves (formulas in this file), one finding per pattern and none for a healthy run, the
// thresholds checked on both sides, the reading of config.toml / metrics.jsonl /
// sparsity.safetensors (written by Python's struct + json, not by saelab) and the CLI's output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/eval/doctor.h"
#include "test_util.h"

using namespace saelab;
using saelab::test::TempDir;

namespace {

// A run's shape, as config.toml keys and closed-form metric curves over `n` log steps.
struct FakeRun {
  int64_t d_in = 32, d_sae = 256;
  double lr = 3e-3;
  int64_t lr_warm_up_steps = 20, l1_warm_up_steps = 40;
  bool resample = true;
  int64_t n = 100, every = 10;  // log steps and steps between them
  // t in [0, 1]: fraction of training done.
  std::function<double(double)> loss = [](double t) { return 0.02 + 0.5 * std::exp(-t / 0.05); };
  std::function<double(double)> l0 = [](double) { return 3.0; };
  std::function<double(double)> ev = [](double) { return 0.95; };
  std::function<double(double)> dead = [](double) { return 2.0; };
  std::function<double(double)> dense = [](double) { return 1.0; };
  std::function<double(double)> ce_clean;  // logged when set
  std::string dataset_path = "apollo-research/roneneldan-TinyStories-tokenizer-gpt2";
  std::string extra_config;
};

std::string config_toml(const FakeRun& r) {
  // A toy run names no model (a model key there is refused).
  const std::string model = r.dataset_path == "toy" ? "" : "model_name = \"tiny-stories-1M\"\n";
  return model +
         fmt::format(
             "dataset_path = \"{}\"\narchitecture = \"standard\"\n"
             "d_in = {}\nd_sae = {}\nexpansion_factor = {}\nlr = {}\nlr_warm_up_steps = {}\n"
             "l1_coefficient = 0.1\nl1_warm_up_steps = {}\nresample_dead_latents = "
             "{}\nuse_ghost_grads = "
             "false\n"
             "training_tokens = {}\ntrain_batch_size_tokens = 256\n{}",
             r.dataset_path, r.d_in, r.d_sae, r.d_sae / r.d_in, r.lr, r.lr_warm_up_steps,
             r.l1_warm_up_steps, r.resample ? "true" : "false", r.n * r.every * 256,
             r.extra_config);
}

void write_run(const std::string& dir, const FakeRun& r) {
  test::write_text(dir + "/config.toml", config_toml(r));
  std::string lines;
  for (int64_t i = 1; i <= r.n; ++i) {
    const double t = double(i) / double(r.n);
    json j = {{"step", i * r.every},
              {"losses/overall_loss", r.loss(t)},
              {"losses/mse_loss", 0.8 * r.loss(t)},
              {"metrics/l0", r.l0(t)},
              {"metrics/explained_variance", r.ev(t)},
              {"sparsity/dead_features", r.dead(t)},
              {"details/current_learning_rate", r.lr}};
    if (i % 10 == 0) j["sparsity/dense_features"] = r.dense(t);
    if (r.ce_clean) j["model_performance_preservation/ce_loss_without_sae"] = r.ce_clean(t);
    lines += j.dump() + "\n";
  }
  test::write_text(dir + "/metrics.jsonl", lines);
}

std::vector<std::string> codes_of(const std::string& dir) {
  std::vector<std::string> codes;
  for (const auto& f : diagnose(read_doctor_inputs(dir))) codes.push_back(f.code);
  return codes;
}

std::vector<std::string> codes(const FakeRun& r) {
  TempDir tmp;
  write_run(tmp.path(), r);
  return codes_of(tmp.path());
}

using Codes = std::vector<std::string>;

}  // namespace

TEST(Doctor, HealthyRunHasNoFindings) { EXPECT_EQ(codes(FakeRun{}), Codes{}); }

TEST(Doctor, HighL0WithGoodReconstructionIsL1TooSmall) {
  FakeRun r;
  r.l0 = [](double) { return 20.0; };  // > 0.25 * 32 = 8
  r.ev = [](double) { return 0.995; };
  EXPECT_EQ(codes(r), Codes{"l1_too_small"});
  // Both sides of the L0 threshold (0.25 * d_in = 8), judged on the mean of the last 20%.
  r.l0 = [](double) { return 7.9; };
  EXPECT_EQ(codes(r), Codes{});
  r.l0 = [](double) { return 8.1; };
  EXPECT_EQ(codes(r), Codes{"l1_too_small"});
  // High L0 that also reconstructs poorly is not the L1 coefficient's fault.
  r.ev = [](double) { return 0.6; };
  EXPECT_EQ(codes(r), Codes{});
}

TEST(Doctor, DSaeNotAboveDInIsTooNarrow) {
  FakeRun r;
  r.d_sae = 32;
  r.ev = [](double) { return 0.55; };
  r.l0 = [](double) { return 12.0; };
  EXPECT_EQ(codes(r), Codes{"too_narrow"});
  r.d_sae = 64;  // 2x d_in: not too narrow, and poor EV alone names nothing
  EXPECT_EQ(codes(r), Codes{});
}

TEST(Doctor, ManyDeadWithGoodLiveLatentsIsTooWide) {
  FakeRun r;
  r.d_sae = 1024;
  r.dead = [](double t) { return t < 0.1 ? 0.0 : 700.0; };  // not falling despite resampling
  const Codes got = codes(r);
  EXPECT_EQ(got, Codes{"too_wide"});
  // Dead count falling by more than a quarter since mid-training: resampling is working.
  r.dead = [](double t) { return t < 0.5 ? 900.0 : 900.0 - (t - 0.5) * 2 * 500.0; };
  // mid (40-60%) mean ~ 880, end (last 20%) mean ~ 495 (still 48% dead): falling -> no too_wide
  EXPECT_EQ(codes(r), Codes{});
  // Just under a quarter dead (255 of 1024) is not "many".
  r.dead = [](double) { return 255.0; };
  EXPECT_EQ(codes(r), Codes{});
  r.dead = [](double) { return 257.0; };
  EXPECT_EQ(codes(r), Codes{"too_wide"});
}

TEST(Doctor, ManyDeadWithPoorReconstructionAndNoWarmUpIsDeadFromLr) {
  FakeRun r;
  r.lr = 0.05;
  r.lr_warm_up_steps = 0;
  r.resample = false;
  r.dead = [](double t) { return t < 0.05 ? 10.0 : 210.0; };
  r.ev = [](double) { return 0.45; };
  EXPECT_EQ(codes(r), Codes{"dead_from_lr"});
  // The same symptoms with a warm-up and resampling have another cause.
  r.lr_warm_up_steps = 20;
  EXPECT_EQ(codes(r), Codes{});
  r.lr_warm_up_steps = 0;
  r.resample = true;
  EXPECT_EQ(codes(r), Codes{});
}

TEST(Doctor, LossStillFallingAtTheEndIsLrTooLow) {
  FakeRun r;
  // Exponential decay so slow that the loss falls at a near-constant log rate to the end.
  r.loss = [](double t) { return 0.6 * std::exp(-1.5 * t); };
  EXPECT_EQ(codes(r), Codes{"lr_too_low"});
  // The same shape but flat after 30% of training: converged.
  r.loss = [](double t) { return 0.6 * std::exp(-1.5 * std::min(t, 0.3)); };
  EXPECT_EQ(codes(r), Codes{});
}

TEST(Doctor, LossTrendFiguresMatchWindowMeansComputedHere) {
  FakeRun r;
  r.loss = [](double t) { return 0.6 * std::exp(-1.5 * t) + 0.01 * t * t; };
  TempDir tmp;
  write_run(tmp.path(), r);
  json fig = doctor_figures(read_doctor_inputs(tmp.path()));
  // mse_loss (0.8 x loss) after the warm-ups (step >= 40): log steps i = 4..100, 97 points;
  // windows of ceil(0.2 * 97) = 20 points.
  std::vector<double> v;
  for (int64_t i = 4; i <= 100; ++i) v.push_back(0.8 * r.loss(double(i) / 100.0));
  auto mean = [&](size_t a, size_t b) {
    double sum = 0;
    for (size_t i = a; i < b; ++i) sum += v[i];
    return sum / double(b - a);
  };
  const size_t n = v.size(), w = 20;
  const double first = mean(0, w), before = mean(n - 2 * w, n - w), last = mean(n - w, n);
  const auto& t = fig["loss_trend"];
  EXPECT_EQ(t["metric"].get<std::string>(), "losses/mse_loss");
  EXPECT_EQ(t["tail_from_step"].get<int64_t>(), int64_t((4 + n - w) * 10));
  EXPECT_NEAR(t["loss_before_tail"].get<double>(), before, 1e-5 * before);
  EXPECT_NEAR(t["loss_tail"].get<double>(), last, 1e-5 * last);
  EXPECT_NEAR(t["tail_drop"].get<double>(), 1 - last / before, 1e-3 * (1 - last / before));
  const double share = std::log(before / last) / std::log(first / last);
  EXPECT_NEAR(t["tail_share"].get<double>(), share, 1e-3 * share);
  // Steady log decline: a quarter of the fall between the last two windows, so lr_too_low.
  EXPECT_EQ(codes_of(tmp.path()), Codes{"lr_too_low"});
}

TEST(Doctor, ManyDenseLatentsFromTheLoggedCount) {
  FakeRun r;
  r.dense = [](double) { return 40.0; };  // > 0.1 * 256
  EXPECT_EQ(codes(r), Codes{"dense_latents"});
  r.dense = [](double) { return 25.0; };
  EXPECT_EQ(codes(r), Codes{});
}

// final/sparsity.safetensors with `n_dense` latents at density `dense_at`, 4 dead and the rest at
// 1e-4, written by Python's struct + json (not by saelab).
void write_sparsity(const std::string& dir, int64_t d_sae, int64_t n_dense, double dense_at) {
  test::run_python(fmt::format(R"(
import json, struct, numpy as np, os
d = np.full({0}, np.log10(1e-4 + 1e-10), dtype=np.float32)
d[:{1}] = np.log10({2} + 1e-10); d[{1}:{1} + 4] = np.log10(1e-10)
data = d.astype('<f4').tobytes()
h = json.dumps({{"sparsity": {{"dtype": "F32", "shape": [{0}], "data_offsets": [0, len(data)]}}}}).encode()
os.makedirs("{3}/final", exist_ok=True)
open("{3}/final/sparsity.safetensors", "wb").write(struct.pack('<Q', len(h)) + h + data)
)",
                               d_sae, n_dense, dense_at, dir));
}

TEST(Doctor, ManyDenseLatentsFromSparsitySafetensorsWrittenByPython) {
  FakeRun r;
  r.dense = [](double) { return 0.0; };  // the file, when present, is the evidence used
  TempDir tmp;
  write_run(tmp.path(), r);
  write_sparsity(tmp.path(), 256, 30, 0.05);  // 30 > 25.6 = 0.1 * 256
  auto in = read_doctor_inputs(tmp.path());
  ASSERT_TRUE(in.final_density.has_value());
  EXPECT_EQ(in.final_density->dense, 30);
  EXPECT_EQ(in.final_density->dead, 4);
  auto f = diagnose(in);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].code, "dense_latents");
  EXPECT_EQ(f[0].evidence["dense_features"].get<double>(), 30.0);
  EXPECT_EQ(f[0].evidence["source"].get<std::string>(), "final/sparsity.safetensors");
  write_sparsity(tmp.path(), 256, 25, 0.05);  // 25 < 25.6
  EXPECT_EQ(codes_of(tmp.path()), Codes{});
}

TEST(Doctor, ToyRunsCountDenseAboveTwiceTheirFeaturesFiringRate) {
  // The toy's features fire on 1% of tokens (toy_feature_probability = 0.01, uniform): a latent
  // that learned one fires that often too, so the bar is 2%, not 1%.
  FakeRun r;
  r.dataset_path = "toy";
  r.extra_config =
      "toy_n_features = 512\ntoy_feature_probability = 0.01\ntoy_probability_power_law = 0.0\n";
  TempDir tmp;
  write_run(tmp.path(), r);
  write_sparsity(tmp.path(), 256, 100, 0.015);
  EXPECT_EQ(codes_of(tmp.path()), Codes{});
  write_sparsity(tmp.path(), 256, 100, 0.025);
  EXPECT_EQ(codes_of(tmp.path()), Codes{"dense_latents"});
  // With a power law the most frequent feature sets the bar: p_0 = 0.01 * 512 / sum_i (i+1)^-0.5.
  double norm = 0;
  for (int i = 1; i <= 512; ++i) norm += 1.0 / std::sqrt(double(i));
  const double bar = 2 * 0.01 * 512 / norm;  // ~0.234
  r.extra_config =
      "toy_n_features = 512\ntoy_feature_probability = 0.01\ntoy_probability_power_law = 0.5\n";
  write_run(tmp.path(), r);
  write_sparsity(tmp.path(), 256, 100, bar * 0.95);
  EXPECT_EQ(codes_of(tmp.path()), Codes{});
  write_sparsity(tmp.path(), 256, 100, bar * 1.05);
  auto f = diagnose(read_doctor_inputs(tmp.path()));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NEAR(f[0].evidence["density_threshold"].get<double>(), bar, 1e-9);
}

TEST(Doctor, CeLossWithoutSaeFarAboveTheModelsOwnIsDatasetMismatch) {
  FakeRun r;
  r.ce_clean = [](double t) { return 7.2 + 0.1 * std::sin(40 * t); };
  TempDir tmp;
  write_run(tmp.path(), r);
  auto in = read_doctor_inputs(tmp.path());
  // No reference: bound log(50257)/2 = 5.42.
  auto f = diagnose(in);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].code, "dataset_mismatch");
  EXPECT_NEAR(f[0].evidence["threshold"].get<double>(), std::log(50257.0) / 2, 1e-3);
  // A reference loss of 4 (bound 8) says 7.2 is fine; 3 (bound 6) says it is not.
  in.reference_ce_loss = 4.0;
  EXPECT_TRUE(diagnose(in).empty());
  in.reference_ce_loss = 3.0;
  ASSERT_EQ(diagnose(in).size(), 1u);
  // A big vocabulary raises the no-reference bound: log(2^20)/2 = 6.93 < 7.2, log(2^22)/2 = 7.6.
  in.reference_ce_loss.reset();
  in.d_vocab = int64_t(1) << 22;
  EXPECT_TRUE(diagnose(in).empty());
  in.d_vocab = int64_t(1) << 20;
  EXPECT_EQ(diagnose(in).size(), 1u);
}

TEST(Doctor, RecordedTokenOutOfRangeErrorIsDatasetMismatch) {
  FakeRun r;
  TempDir tmp;
  write_run(tmp.path(), r);
  test::write_text(
      tmp / "error.txt",
      "token id 50300 (sequence 3, position 17) is out of range: the model's vocabulary has "
      "50257 tokens\n");
  EXPECT_EQ(codes_of(tmp.path()), Codes{"dataset_mismatch"});
}

TEST(Doctor, NotARunIsOneLineNamingWhatIsMissing) {
  TempDir tmp;
  auto msg = [&](const std::string& dir) {
    try {
      read_doctor_inputs(dir);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(tmp.path()).find("missing config.toml and metrics.jsonl"), std::string::npos);
  test::write_text(tmp / "config.toml", "d_in = 8\n");
  EXPECT_NE(msg(tmp.path()).find("missing metrics.jsonl"), std::string::npos);
  EXPECT_NE(msg(tmp / "nope").find("not a directory"), std::string::npos);
  test::write_text(tmp / "metrics.jsonl",
                   "{\"step\": 1, \"metrics/l0\": 1}\nnot json\n{\"step\": 2}\n");
  EXPECT_NE(msg(tmp.path()).find("metrics.jsonl:2"), std::string::npos);
  // A partial last line (a killed run) is skipped, not an error.
  test::write_text(tmp / "metrics.jsonl", "{\"step\": 1, \"metrics/l0\": 1}\n{\"step\": 2, \"metr");
  EXPECT_EQ(msg(tmp.path()), "no error");
  test::write_text(tmp / "config.toml", "d_in = \"eight\"\n");
  EXPECT_NE(msg(tmp.path()).find("d_in"), std::string::npos);
}

TEST(DoctorCli, JsonHasExactlyTheFindingFieldsAndTextHasOneBlockPerFinding) {
  FakeRun r;
  r.l0 = [](double) { return 20.0; };
  r.ev = [](double) { return 0.99; };
  r.dense = [](double) { return 60.0; };
  TempDir tmp;
  write_run(tmp.path(), r);
  auto res = test::run_saelab("doctor " + test::shell_quote(tmp.path()) + " --json");
  ASSERT_EQ(res.rc, 0) << res.err;
  json j = json::parse(res.out);
  ASSERT_TRUE(j["findings"].is_array());
  std::vector<std::string> got;
  for (const auto& f : j["findings"]) {
    std::set<std::string> keys;
    for (const auto& [k, v] : f.items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"code", "message", "evidence", "suggestion"}));
    EXPECT_TRUE(f["evidence"].is_object());
    got.push_back(f["code"].get<std::string>());
  }
  EXPECT_EQ(got, (Codes{"l1_too_small", "dense_latents"}));
  EXPECT_NE(j["findings"][0]["suggestion"].get<std::string>().find("l1_coefficient"),
            std::string::npos);

  auto text = test::run_saelab("doctor " + test::shell_quote(tmp.path()));
  ASSERT_EQ(text.rc, 0) << text.err;
  EXPECT_NE(text.out.find("[l1_too_small]"), std::string::npos);
  EXPECT_NE(text.out.find("[dense_latents]"), std::string::npos);
  EXPECT_NE(text.out.find("try: "), std::string::npos);

  auto bad = test::run_saelab("doctor " + test::shell_quote(tmp / "missing"));
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("not a directory"), std::string::npos);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1);
}

TEST(DoctorCli, BaselineRunGivesTheReferenceLoss) {
  FakeRun good, bad;
  good.ce_clean = [](double) { return 2.0; };
  bad.ce_clean = [](double) { return 4.5; };  // under log(50257)/2 = 5.4, but > 2 x 2.0
  TempDir a, b;
  write_run(a.path(), good);
  write_run(b.path(), bad);
  auto plain = test::run_saelab("doctor --json " + test::shell_quote(b.path()));
  ASSERT_EQ(plain.rc, 0) << plain.err;
  EXPECT_TRUE(json::parse(plain.out)["findings"].empty());
  auto ref = test::run_saelab("doctor --json " + test::shell_quote(b.path()) + " --baseline " +
                              test::shell_quote(a.path()));
  ASSERT_EQ(ref.rc, 0) << ref.err;
  auto j = json::parse(ref.out);
  ASSERT_EQ(j["findings"].size(), 1u);
  EXPECT_EQ(j["findings"][0]["code"].get<std::string>(), "dataset_mismatch");
  EXPECT_DOUBLE_EQ(j["findings"][0]["evidence"]["reference_ce_loss"].get<double>(), 2.0);
}
