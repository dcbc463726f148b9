// The trainer on the toy model of superposition: recovery of the true features (MMCS) for standard
// and topk, every architecture trains, resume equivalence, the NaN stop, checkpoint contents and
// the activation-scale folding.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <filesystem>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"
#include "saelab/sae/sae.h"
#include "saelab/train/checkpoint.h"
#include "saelab/train/sources.h"
#include "saelab/train/trainer.h"
#include "test_util.h"

namespace saelab {
namespace {

// A small toy: 32 features in 16 dimensions; seconds to train.
RunnerConfig small_toy(const std::string& arch, int64_t steps = 300) {
  RunnerConfig c;
  c.dataset_path = "toy";
  c.d_in = 16;
  c.d_sae = 64;
  c.toy_n_features = 32;
  c.toy_feature_probability = 0.04;
  c.toy_magnitude_std = 0.2;
  c.architecture = arch;
  c.activation_fn = arch == "topk" ? "topk" : "relu";
  if (arch == "topk" || arch == "batchtopk" || arch == "matryoshka_batchtopk")
    c.activation_fn_kwargs = {{"k", 3}};
  if (arch == "matryoshka_batchtopk") c.matryoshka_widths = {16, 64};
  c.train_batch_size_tokens = 1024;
  c.training_tokens = steps * 1024;
  c.lr = 3e-3;
  c.adam_beta1 = 0.9;
  c.l1_coefficient = 0.3;
  c.l0_coefficient = 0.003;
  c.jumprelu_init_threshold = 0.1;
  c.jumprelu_bandwidth = 0.05;
  c.normalize_sae_decoder = false;
  c.decoder_heuristic_init = true;
  c.init_encoder_as_decoder_transpose = true;
  c.scale_sparsity_penalty_by_decoder_norm = true;
  c.feature_sampling_window = 100;
  c.dead_feature_window = 50;
  c.wandb_log_frequency = 20;
  c.log_to_wandb = false;
  c.run_name = "t";
  return resolve_runner_config(c, "test");
}

TrainerOptions quiet_options(const std::string& dir) {
  TrainerOptions o;
  o.run_dir = dir;
  o.progress = false;
  o.summary_eval_batches = 2;
  return o;
}

TrainSummary train(const RunnerConfig& c, const std::string& dir) {
  Trainer t(c, make_activation_source(c), quiet_options(dir));
  return t.run();
}

// MMCS computed here from the saved decoder and the toy's directions, independently of the trainer.
double mmcs_of(const RunnerConfig& c, const std::string& final_dir) {
  auto truth = *make_activation_source(c)->true_features();
  auto w = load_safetensors(final_dir + "/sae_weights.safetensors").at("W_dec").to(torch::kFloat64);
  auto t = truth.to(torch::kFloat64);
  t = t / t.norm(2, {1}, true);
  w = w / w.norm(2, {1}, true);
  return std::get<0>(t.mm(w.t()).max(1)).mean().item<double>();
}

TEST(Trainer, StandardRecoversToyFeatures) {
  test::TempDir tmp;
  auto c = small_toy("standard");
  auto s = train(c, tmp.path());
  ASSERT_TRUE(s.completed);
  double mmcs = mmcs_of(c, s.final_dir);
  EXPECT_GE(mmcs, 0.9);
  EXPECT_NEAR(s.eval["metrics/mmcs"].get<double>(), mmcs, 1e-6);
  EXPECT_GT(s.eval["metrics/explained_variance"].get<double>(), 0.8);
}

TEST(Trainer, TopKRecoversToyFeatures) {
  test::TempDir tmp;
  auto c = small_toy("topk");
  auto s = train(c, tmp.path());
  ASSERT_TRUE(s.completed);
  EXPECT_GE(mmcs_of(c, s.final_dir), 0.9);
  EXPECT_LE(s.eval["metrics/l0"].get<double>(), 3.0 + 1e-9);
}

TEST(Trainer, EveryArchitectureTrainsAndSavesSAELensFiles) {
  for (std::string arch :
       {"standard", "gated", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk"}) {
    SCOPED_TRACE(arch);
    test::TempDir tmp;
    auto c = small_toy(arch, 40);
    auto s = train(c, tmp.path());
    ASSERT_TRUE(s.completed);
    auto sae = load_sae(s.final_dir);
    std::string saved_arch =
        (arch == "batchtopk" || arch == "matryoshka_batchtopk") ? "jumprelu" : arch;
    EXPECT_EQ(sae->cfg().architecture, saved_arch);
    EXPECT_TRUE(path_exists(s.final_dir + "/sparsity.safetensors"));
    EXPECT_TRUE(path_exists(tmp.path() + "/config.toml"));
    EXPECT_TRUE(path_exists(tmp.path() + "/metrics.jsonl"));
    auto x = make_activation_source(c)->next_batch(256);
    auto fwd = sae->forward(x);
    EXPECT_TRUE(torch::isfinite(fwd.reconstruction).all().item<bool>());
    if (arch == "batchtopk") {
      // The saved threshold is θ for every latent.
      auto th = sae->param("threshold");
      EXPECT_GT(th[0].item<double>(), 0.0);
      EXPECT_TRUE((th == th[0]).all().item<bool>());
    }
  }
}

// A source wrapper that raises a stop flag after `stop_after` batches, or poisons batch `nan_at`.
class ControlledSource : public ActivationSource {
 public:
  ControlledSource(std::unique_ptr<ActivationSource> inner, std::atomic<int>* flag,
                   int64_t stop_after, int64_t nan_at = -1)
      : inner_(std::move(inner)), flag_(flag), stop_after_(stop_after), nan_at_(nan_at) {}
  int64_t d_in() const override { return inner_->d_in(); }
  at::Tensor next_batch(int64_t n) override {
    auto x = inner_->next_batch(n);
    ++drawn_;
    if (flag_ && drawn_ == stop_after_) flag_->store(15);
    if (drawn_ == nan_at_) x[0][0] = std::numeric_limits<float>::quiet_NaN();
    return x;
  }
  json state() const override { return inner_->state(); }
  void load_state(const json& s) override { inner_->load_state(s); }
  std::optional<at::Tensor> true_features() const override { return inner_->true_features(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<ActivationSource> inner_;
  std::atomic<int>* flag_;
  int64_t stop_after_, nan_at_, drawn_ = 0;
};

void expect_same_params(Trainer& a, Trainer& b) {
  for (auto& [name, p] : a.sae().params()) {
    SCOPED_TRACE(name);
    auto q = b.sae().params().at(name);
    EXPECT_LT((p - q).abs().max().item<double>(), 1e-6);
  }
  for (auto& [name, t] : a.sae().buffers())
    EXPECT_DOUBLE_EQ(t.item<double>(), b.sae().buffers().at(name).item<double>());
}

TEST(Trainer, ResumedRunEndsWithTheSameWeights) {
  for (std::string arch : {"standard", "batchtopk"}) {
    SCOPED_TRACE(arch);
    auto c = small_toy(arch, 60);
    c.resample_dead_latents = true;
    c.use_ghost_grads = arch == "standard";
    c.feature_sampling_window = 20;
    c.dead_feature_window = 10;
    c.lr_scheduler_name = "cosineannealing";
    c.lr_warm_up_steps = 5;
    c.lr_decay_steps = 10;
    c.l1_warm_up_steps = 30;
    c.normalize_activations = "expected_average_only_in";
    c.n_checkpoints = 2;
    c = resolve_runner_config(c, "test");

    test::TempDir full_dir, part_dir;
    Trainer full(c, make_activation_source(c), quiet_options(full_dir.path()));
    full.run();

    // Stop after 37 batches: the flag is seen at the end of step 37, between checkpoints.
    std::atomic<int> flag{0};
    auto opts = quiet_options(part_dir.path());
    opts.stop_signal = &flag;
    std::string ckpt;
    {
      Trainer part(c, std::make_unique<ControlledSource>(make_activation_source(c), &flag, 37),
                   opts);
      auto s = part.run();
      EXPECT_FALSE(s.completed);
      EXPECT_EQ(s.stop_signal, 15);
      ckpt = s.last_checkpoint;
    }
    ASSERT_EQ(latest_checkpoint(part_dir.path()), ckpt);
    ASSERT_TRUE(path_exists(ckpt + "/sae_weights.safetensors"));
    Trainer resumed(c, make_activation_source(c), quiet_options(part_dir.path()));
    resumed.resume_from(ckpt);
    EXPECT_EQ(resumed.step(), 36);  // 37 batches drawn incl. the initialisation sample
    resumed.run();
    expect_same_params(full, resumed);
    EXPECT_DOUBLE_EQ(full.activation_scale(), resumed.activation_scale());
  }
}

// A NaN in the input is caught before it reaches the loss; the run stops naming the batch and the
// last good checkpoint, which stays whole.
TEST(Trainer, NanInputStopsWithTheLastGoodCheckpointIntact) {
  auto c = small_toy("standard", 40);
  c.n_checkpoints = 4;  // checkpoints after steps 10, 20, 30, 40
  c = resolve_runner_config(c, "test");
  test::TempDir tmp;
  // Batch 1 is the b_dec sample, so batch 26 feeds step 25.
  Trainer t(c, std::make_unique<ControlledSource>(make_activation_source(c), nullptr, -1, 26),
            quiet_options(tmp.path()));
  std::string ckpt = tmp.path() + "/checkpoints/" + std::to_string(20 * 1024);
  try {
    t.run();
    FAIL() << "expected saelab::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("input activations contain NaN or infinity: batch of step 25 ", 0), 0u)
        << msg;
    EXPECT_NE(msg.find("row 0 of 1024"), std::string::npos) << msg;
    const std::string tail = "; last good checkpoint: " + ckpt;
    EXPECT_EQ(msg.substr(msg.size() - std::min(msg.size(), tail.size())), tail) << msg;
  }
  auto d = read_checkpoint(ckpt);
  EXPECT_EQ(d.state["step"].get<int64_t>(), 20);
  auto sae = load_sae(ckpt);
  EXPECT_TRUE(torch::isfinite(sae->param("W_dec")).all().item<bool>());
  EXPECT_FALSE(path_exists(tmp.path() + "/checkpoints/" + std::to_string(30 * 1024)));
  EXPECT_FALSE(path_exists(tmp.path() + "/final"));
}

TEST(Trainer, AbsurdLearningRateStopsOnNonFiniteLoss) {
  auto c = small_toy("standard", 40);
  c.lr = 1e30;
  c = resolve_runner_config(c, "test");
  test::TempDir tmp;
  Trainer t(c, make_activation_source(c), quiet_options(tmp.path()));
  try {
    t.run();
    FAIL() << "expected saelab::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at step "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("last good checkpoint: none"), std::string::npos)
        << e.what();
  }
}

TEST(Trainer, ActivationScaleIsFoldedIntoTheSavedSae) {
  auto c = small_toy("standard", 20);
  c.normalize_activations = "expected_average_only_in";
  c.toy_magnitude_mean = 20.0;  // so that the scale is far from 1
  c = resolve_runner_config(c, "test");
  test::TempDir tmp;
  Trainer t(c, make_activation_source(c), quiet_options(tmp.path()));
  auto s = t.run();
  double scale = t.activation_scale();
  // Independent scale: sqrt(d_in) / mean ‖x‖ over the first 8192 rows of the stream.
  auto first = make_activation_source(c)->next_batch(8192).to(torch::kFloat64);
  EXPECT_NEAR(scale, std::sqrt(16.0) / first.norm(2, {1}).mean().item<double>(), 1e-9);
  ASSERT_LT(scale, 0.5);
  // The saved SAE on raw x equals the training SAE on s·x, divided by s.
  auto sae = load_sae(s.final_dir);
  EXPECT_EQ(sae->cfg().normalize_activations, "none");
  auto x = make_activation_source(c)->next_batch(64);
  const auto& P = t.sae().params();
  auto f = torch::relu((x * scale - P.at("b_dec")).mm(P.at("W_enc")) + P.at("b_enc"));
  auto expected = (f.mm(P.at("W_dec")) + P.at("b_dec")) / scale;
  auto got = sae->forward(x).reconstruction;
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-4);
}

TEST(Trainer, MetricsUseSAELensNames) {
  auto c = small_toy("standard", 40);
  c.feature_sampling_window = 20;
  test::TempDir tmp;
  train(c, tmp.path());
  auto text = read_file(tmp.path() + "/metrics.jsonl");
  for (const char* key :
       {"losses/overall_loss", "losses/mse_loss", "losses/l1_loss", "metrics/explained_variance",
        "metrics/l0", "sparsity/mean_passes_since_fired", "sparsity/dead_features",
        "details/current_learning_rate", "details/current_l1_coefficient",
        "details/n_training_tokens", "metrics/mmcs", "metrics/features_recovered",
        "metrics/mean_log10_feature_sparsity", "sparsity/below_1e-5"})
    EXPECT_NE(text.find(std::string("\"") + key + "\""), std::string::npos) << key;
  bool tfevents = false;
  for (auto& e : std::filesystem::directory_iterator(tmp.path()))
    tfevents = tfevents || e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(tfevents);
}

}  // namespace
}  // namespace saelab
