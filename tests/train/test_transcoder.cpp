// Transcoders and skip transcoders: gradients of every architecture that trains as one (float64,
// against finite differences of the loss and the reconstruction loss recomputed here by hand, and
// each hand-written step against its autograd body), recovery of planted output features and of an
// added linear map (W_skip), the SAELens file layout (written, read back, and a SAELens 6 cfg.json
// written here by hand), the scale folding, the config refusals, and the model path: the store's
// paired rows, `saelab cache`'s activations_out, and `saelab train` with the MLP-replacement evals.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/data/activation_source.h"
#include "saelab/eval/sae_eval.h"
#include "saelab/eval/sae_info.h"
#include "saelab/sae/kernels/fast_dense.h"
#include "saelab/sae/kernels/fast_kernels.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/sae.h"
#include "saelab/sae/training_sae.h"
#include "saelab/store/activations_store.h"
#include "saelab/train/cache.h"
#include "saelab/train/run.h"
#include "saelab/train/sources.h"
#include "saelab/train/trainer.h"
#include "test_util.h"
#include "train/tiny_lm_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDin = 6, kDout = 5, kDsae = 12, kN = 16;

TrainingSaeConfig transcoder_cfg(const std::string& arch, bool skip, bool fast) {
  TrainingSaeConfig c;
  c.architecture = arch;
  c.d_in = kDin;
  c.d_out = kDout;
  c.d_sae = kDsae;
  c.k = 3;
  c.dtype = at::kDouble;
  c.apply_b_dec_to_input = false;
  c.skip_connection = skip;
  c.use_fast_path = fast;
  if (arch == "matryoshka_batchtopk") c.matryoshka_widths = {4, kDsae};
  c.jumprelu_bandwidth = 0.05;
  return c;
}

void randomize(TrainingSae& sae, uint64_t seed) {
  torch::manual_seed(seed);
  for (auto& [name, p] : sae.params())
    p = name == "log_threshold" ? torch::log(torch::rand(p.sizes(), torch::kDouble) * 0.3 + 0.05)
                                : torch::randn(p.sizes(), torch::kDouble) * 0.5;
}

// What the step's reconstruction loss must be, from its activations: (1/N) Σ (f W_dec + b_dec +
// x W_skipᵀ − y)².
double mse_by_hand(TrainingSae& sae, const at::Tensor& f, const at::Tensor& x,
                   const at::Tensor& y) {
  auto& P = sae.params();
  at::Tensor out = f.matmul(P.at("W_dec")) + P.at("b_dec");
  if (P.count("W_skip")) out = out + x.matmul(P.at("W_skip").t());
  return (out - y).pow(2).sum(-1).mean().item<double>();
}

const std::vector<std::string> kArchitectures = {"standard", "topk", "batchtopk", "jumprelu",
                                                 "matryoshka_batchtopk"};

TEST(Transcoder, GradientsMatchFiniteDifferencesAndTheLossIsAgainstTheTarget) {
  torch::manual_seed(3);
  const at::Tensor x = torch::randn({kN, kDin}, torch::kDouble);
  const at::Tensor y = torch::randn({kN, kDout}, torch::kDouble) * 2 + 0.5;
  for (const auto& arch : kArchitectures)
    for (bool skip : {false, true}) {
      if (skip && arch == "matryoshka_batchtopk") continue;
      SCOPED_TRACE(arch + (skip ? " skip" : ""));
      auto sae = make_training_sae(transcoder_cfg(arch, skip, false));
      randomize(*sae, 11);
      StepContext ctx;
      ctx.l1_coefficient = 0.2;
      ctx.l0_coefficient = 0.1;
      TrainStepOutput out = sae->step(x, y, ctx);
      ASSERT_EQ(out.sae_out.sizes(), y.sizes());
      EXPECT_NEAR(out.losses.at("mse_loss"), mse_by_hand(*sae, out.feature_acts, x, y), 1e-10);
      std::map<std::string, at::Tensor> grads;
      for (auto& [n, g] : sae->grads()) grads[n] = g.clone();
      ASSERT_TRUE(grads.count("W_skip") == (skip ? 1u : 0u));
      // Jumprelu's encoder side has straight-through gradients (not the loss's derivative): its
      // decoder side and W_skip are checked here, the rest in test_training_sae_grads.
      const double h = 1e-6;
      for (auto& [name, p] : sae->params()) {
        if (arch == "jumprelu" && name != "W_dec" && name != "b_dec" && name != "W_skip") continue;
        auto flat = p.view({-1});
        for (int64_t i = 0; i < flat.numel(); ++i) {
          const double orig = flat[i].item<double>();
          flat[i] = orig + h;
          const double up = sae->step(x, y, ctx).loss;
          flat[i] = orig - h;
          const double down = sae->step(x, y, ctx).loss;
          flat[i] = orig;
          const double fd = (up - down) / (2 * h);
          ASSERT_NEAR(grads[name].view({-1})[i].item<double>(), fd,
                      1e-5 * std::max(1.0, std::abs(fd)))
              << name << "[" << i << "]";
        }
      }
    }
}

TEST(Transcoder, HandWrittenStepsMatchTheirAutogradBodies) {
  torch::manual_seed(4);
  const at::Tensor x = torch::randn({kN, kDin}, torch::kDouble);
  const at::Tensor y = torch::randn({kN, kDout}, torch::kDouble);
  // Both the CPU loops and the ATen versions the steps use on other devices (CUDA).
  struct Reset {
    ~Reset() {
      fast::set_force_aten_passes(false);
      fast::set_force_aten_kernels(false);
    }
  } reset;
  for (bool aten : {false, true})
    for (const auto& arch : kArchitectures)
      for (bool skip : {false, true}) {
        if (skip && arch == "matryoshka_batchtopk") continue;
        SCOPED_TRACE(arch + (skip ? " skip" : "") + (aten ? " aten" : ""));
        fast::set_force_aten_passes(aten);
        fast::set_force_aten_kernels(aten);
        auto fast = make_training_sae(transcoder_cfg(arch, skip, true));
        auto slow = make_training_sae(transcoder_cfg(arch, skip, false));
        ASSERT_TRUE(make_fast_training_sae(transcoder_cfg(arch, skip, true)) != nullptr);
        randomize(*fast, 5);
        randomize(*slow, 5);
        StepContext ctx;
        ctx.l1_coefficient = 0.3;
        ctx.l0_coefficient = 0.05;
        // AuxK (topk family) reconstructs the target's residual from dead latents.
        ctx.dead_mask = torch::arange(kDsae) % 3 == 0;
        auto a = fast->step(x, y, ctx), b = slow->step(x, y, ctx);
        EXPECT_NEAR(a.loss, b.loss, 1e-9 * std::max(1.0, std::abs(b.loss)));
        for (const auto& [k, v] : b.losses) EXPECT_NEAR(a.losses.at(k), v, 1e-9) << k;
        EXPECT_LT((a.sae_out - b.sae_out).abs().max().item<double>(), 1e-9);
        for (auto& [name, g] : slow->grads()) {
          const double scale = std::max(1.0, g.abs().max().item<double>());
          EXPECT_LT((fast->grads().at(name) - g).abs().max().item<double>(), 1e-9 * scale) << name;
        }
      }
}

// Sparse codes s (each of F features on with probability p, magnitude in [0.5, 1.5]); inputs
// x = s F_in (+ dense noise), outputs y = s F_out (+ x M): a transcoder's ground truth.
class PlantedPairs : public ActivationSource {
 public:
  PlantedPairs(int64_t d_in, int64_t d_out, int64_t F, double p, double noise, bool linear,
               uint64_t seed)
      : d_in_(d_in), d_out_(d_out), F_(F), p_(p), noise_(noise), gen_(seed) {
    torch::manual_seed(seed);
    F_in = torch::randn({F, d_in});
    F_in = F_in / F_in.norm(2, {1}, true);
    F_out = torch::randn({F, d_out});
    F_out = F_out / F_out.norm(2, {1}, true);
    M = linear ? torch::randn({d_in, d_out}) * 0.5 : torch::zeros({d_in, d_out});
  }
  int64_t d_in() const override { return d_in_; }
  int64_t d_out() const override { return d_out_; }
  at::Tensor next_batch(int64_t n) override {
    torch::manual_seed(gen_++);
    at::Tensor on = torch::rand({n, F_}) < p_;
    at::Tensor s = on.to(torch::kFloat) * (torch::rand({n, F_}) + 0.5);
    at::Tensor x = s.mm(F_in) + torch::randn({n, d_in_}) * noise_;
    at::Tensor y = s.mm(F_out) + x.mm(M);
    return torch::cat({x, y}, 1).contiguous();
  }
  json state() const override { return {{"type", "planted"}, {"next", gen_}}; }
  void load_state(const json& s) override { gen_ = s.at("next").get<uint64_t>(); }
  std::string describe() const override { return "planted transcoder pairs"; }

  at::Tensor F_in, F_out, M;

 private:
  int64_t d_in_, d_out_, F_;
  double p_, noise_;
  uint64_t gen_;
};

RunnerConfig planted_cfg(const std::string& arch, int64_t d_in, int64_t d_out, int64_t d_sae,
                         int64_t steps, bool skip, double lr) {
  RunnerConfig c;
  c.dataset_path = "/nonexistent";  // the source is the test's
  c.hook_name = "blocks.0.ln2.hook_normalized";
  c.hook_name_out = "blocks.0.hook_mlp_out";
  c.d_in = d_in;
  c.d_out = d_out;
  c.d_sae = d_sae;
  c.skip_connection = skip;
  c.apply_b_dec_to_input = false;
  c.architecture = arch;
  if (arch == "topk") c.activation_fn_kwargs = {{"k", 3}};
  c.train_batch_size_tokens = 1024;
  c.training_tokens = steps * 1024;
  c.lr = lr;
  // The skip test's high lr decays to lr / 10 over the second half, to settle W_skip.
  c.lr_decay_steps = skip ? steps / 2 : 0;
  c.adam_beta1 = 0.9;
  c.l1_coefficient = 0.3;
  c.scale_sparsity_penalty_by_decoder_norm = true;
  c.normalize_sae_decoder = false;
  c.feature_sampling_window = 100;
  c.dead_feature_window = 50;
  c.wandb_log_frequency = 50;
  c.log_to_wandb = false;
  c.n_checkpoints = 0;
  c.run_name = "t";
  return resolve_runner_config(c, "test");
}

struct Trained {
  double mmcs = 0;
  std::unique_ptr<Sae> sae;
};

// Trains on the pairs, then measures here, on fresh pairs: the mean over planted features of the
// best cosine between F_out's row and a decoder row, and the explained variance of y.
Trained train_on(PlantedPairs* src_raw, const RunnerConfig& cfg, const std::string& dir) {
  std::unique_ptr<ActivationSource> src(src_raw);
  const at::Tensor F_out = src_raw->F_out.clone();
  TrainerOptions o;
  o.run_dir = dir;
  o.progress = false;
  o.log_files = false;
  Trainer t(cfg, std::move(src), o);
  t.run();
  Trained r;
  r.sae = t.inference_sae();
  at::Tensor W = r.sae->param("W_dec");
  W = W / W.norm(2, {1}, true).clamp_min(1e-12);
  r.mmcs = std::get<0>(F_out.mm(W.t()).max(1)).mean().item<double>();
  return r;
}

double explained_variance(const Sae& sae, const at::Tensor& rows, int64_t d_in) {
  const at::Tensor x = rows.narrow(1, 0, d_in), y = rows.narrow(1, d_in, rows.size(1) - d_in);
  const at::Tensor yhat = sae.forward(x).reconstruction;
  return 1.0 -
         (y - yhat).pow(2).sum().item<double>() / (y - y.mean(0, true)).pow(2).sum().item<double>();
}

TEST(Transcoder, RecoversPlantedOutputFeatures) {
  test::TempDir dir;
  for (const std::string arch : {"topk", "standard"}) {
    SCOPED_TRACE(arch);
    auto* src = new PlantedPairs(24, 20, 32, 0.04, 0.0, false, 7);
    PlantedPairs held(24, 20, 32, 0.04, 0.0, false, 7);  // same features, another stream
    held.load_state({{"next", 100000}});
    Trained t =
        train_on(src, planted_cfg(arch, 24, 20, 64, 400, false, 3e-3), dir.path() + "/" + arch);
    const double ev = explained_variance(*t.sae, held.next_batch(4096), 24);
    EXPECT_GE(t.mmcs, 0.95);
    EXPECT_GE(ev, 0.9);
    std::cout << arch << " transcoder: MMCS " << t.mmcs << ", EV " << ev << "\n";
  }
}

// expected_average_only_in scales input and output separately, each to mean norm √width over the
// initial sample, and the saved transcoder works on the unscaled activations.
TEST(Transcoder, InputAndOutputScaledSeparately) {
  test::TempDir dir;
  struct Scaled : PlantedPairs {
    using PlantedPairs::PlantedPairs;
    at::Tensor next_batch(int64_t n) override {
      at::Tensor r = PlantedPairs::next_batch(n);
      r.narrow(1, 24, 20).mul_(40.0);  // outputs 40× larger than inputs
      return r;
    }
  };
  auto* src = new Scaled(24, 20, 32, 0.04, 0.0, false, 7);
  Scaled held(24, 20, 32, 0.04, 0.0, false, 7);
  held.load_state({{"next", 100000}});
  RunnerConfig cfg = planted_cfg("topk", 24, 20, 64, 400, false, 3e-3);
  cfg.normalize_activations = "expected_average_only_in";
  std::unique_ptr<ActivationSource> owned(src);
  Scaled first(24, 20, 32, 0.04, 0.0, false, 7);  // the trainer's first sample: the same rows
  const at::Tensor sample = first.next_batch(8192);
  TrainerOptions o;
  o.run_dir = dir.path() + "/scaled";
  o.progress = false;
  o.log_files = false;
  Trainer t(cfg, std::move(owned), o);
  t.run();
  auto norm_scale = [](const at::Tensor& v) {
    return std::sqrt(double(v.size(1))) / v.to(torch::kDouble).norm(2, {1}).mean().item<double>();
  };
  EXPECT_NEAR(t.activation_scale(), norm_scale(sample.narrow(1, 0, 24)), 1e-9);
  EXPECT_NEAR(t.activation_scale_out(), norm_scale(sample.narrow(1, 24, 20)), 1e-9);
  const double ev = explained_variance(*t.inference_sae(), held.next_batch(4096), 24);
  std::cout << "scaled transcoder: EV " << ev << "\n";
  EXPECT_GE(ev, 0.9);
}

TEST(Transcoder, SkipConnectionRecoversAnAddedLinearMap) {
  test::TempDir dir;
  // Dense noise in x makes the map identifiable: the latents cannot carry its image.
  const double noise = 0.3;
  auto* src = new PlantedPairs(24, 20, 32, 0.04, noise, true, 9);
  PlantedPairs held(24, 20, 32, 0.04, noise, true, 9);
  held.load_state({{"next", 100000}});
  const at::Tensor M = src->M.clone();
  Trained t = train_on(src, planted_cfg("topk", 24, 20, 64, 600, true, 0.03), dir.path() + "/skip");
  const at::Tensor W_skip = t.sae->param("W_skip");  // [d_out, d_in]
  ASSERT_EQ(W_skip.sizes(), (std::vector<int64_t>{20, 24}));
  const double rel = ((W_skip - M.t()).norm() / M.norm()).item<double>();
  const double ev = explained_variance(*t.sae, held.next_batch(4096), 24);
  std::cout << "skip transcoder: |W_skip - M^T| / |M| = " << rel << ", EV " << ev << "\n";
  // The latents' activations read the noise too, which leaves a small bias (measured 0.046).
  EXPECT_LT(rel, 0.1);
  EXPECT_GE(ev, 0.9);
}

// to_inference folds the input scale s and the output scale s_out: the saved transcoder on x
// gives (training output on s·x) / s_out.
TEST(Transcoder, ScaleFoldingAndSaelensFiles) {
  test::TempDir dir;
  torch::manual_seed(2);
  const at::Tensor x = torch::randn({7, kDin}, torch::kDouble);
  struct Case {
    std::string arch;
    bool skip;
    std::string file_arch;
  };
  for (const Case& c : std::vector<Case>{{"standard", false, "transcoder"},
                                         {"standard", true, "skip_transcoder"},
                                         {"jumprelu", false, "jumprelu_transcoder"},
                                         {"jumprelu", true, "jumprelu_skip_transcoder"},
                                         {"topk", false, "topk_transcoder"},
                                         {"batchtopk", true, "jumprelu_skip_transcoder"}}) {
    SCOPED_TRACE(c.arch);
    auto sae = make_training_sae(transcoder_cfg(c.arch, c.skip, true));
    randomize(*sae, 8);
    if (sae->buffers().count("topk_threshold")) sae->buffers()["topk_threshold"].fill_(0.2);
    SaeConfig base;
    base.hook_name = "blocks.1.ln2.hook_normalized";
    base.hook_name_out = "blocks.1.hook_mlp_out";
    base.hook_layer_out = 1;
    const double s = 2.0, s_out = 0.5;
    auto inf = sae->to_inference(base, s, s_out);
    // Training space, by hand: the training SAE's encode of s·x, its decoder, its skip.
    const at::Tensor f = sae->encode(x * s);
    at::Tensor want = f.matmul(sae->params().at("W_dec")) + sae->params().at("b_dec");
    if (c.skip) want = want + (x * s).matmul(sae->params().at("W_skip").t());
    if (c.arch != "batchtopk")  // batchtopk's inference is a JumpReLU at its threshold
      EXPECT_LT((inf->forward(x).reconstruction * s_out - want).abs().max().item<double>(), 1e-9);

    const std::string d = dir.path() + "/" + c.file_arch + std::to_string(c.skip);
    save_sae(*inf, d);
    const json j = read_json_file(d + "/cfg.json");
    EXPECT_EQ(j.at("architecture"), c.file_arch);
    EXPECT_EQ(j.at("d_out"), kDout);
    EXPECT_EQ(j.at("apply_b_dec_to_input"), false);
    EXPECT_EQ(j.at("metadata").at("hook_name_out"), "blocks.1.hook_mlp_out");
    EXPECT_EQ(j.at("hook_layer_out"), 1);
    auto tensors = load_safetensors(d + "/sae_weights.safetensors");
    EXPECT_EQ(tensors.at("W_dec").sizes(), (std::vector<int64_t>{kDsae, kDout}));
    EXPECT_EQ(tensors.at("b_dec").sizes(), (std::vector<int64_t>{kDout}));
    EXPECT_EQ(tensors.count("W_skip"), c.skip ? 1u : 0u);
    if (c.skip) EXPECT_EQ(tensors.at("W_skip").sizes(), (std::vector<int64_t>{kDout, kDin}));
    const json info = sae_info(d);  // saelab info
    EXPECT_EQ(info.at("d_out"), kDout);
    EXPECT_EQ(info.at("saved_as"), c.file_arch);
    auto back = load_sae(d);
    EXPECT_TRUE(back->cfg().is_transcoder());
    EXPECT_EQ(back->cfg().skip_connection, c.skip);
    EXPECT_EQ(back->cfg().hook_name_out, "blocks.1.hook_mlp_out");
    EXPECT_LT((back->forward(x).reconstruction - inf->forward(x).reconstruction)
                  .abs()
                  .max()
                  .item<double>(),
              1e-12);
    // from_pretrained_path: the scales unfold back into the training parameters.
    auto again = make_training_sae(transcoder_cfg(c.arch, c.skip, true));
    again->load_inference(*back, s, s_out, "test");
    for (auto& [name, p] : sae->params())
      if (name != "log_threshold" || c.arch == "jumprelu")
        EXPECT_LT((again->params().at(name) - p).abs().max().item<double>(), 1e-12) << name;
  }
}

// A skip transcoder as SAELens 6 writes it (v6 layout, model fields under metadata), by hand.
TEST(Transcoder, ReadsASaelens6SkipTranscoderWrittenByHand) {
  test::TempDir dir;
  const std::string d = dir.path() + "/tc";
  fs::create_directories(d);
  json cfg = {{"architecture", "skip_transcoder"},
              {"d_in", 4},
              {"d_sae", 8},
              {"d_out", 3},
              {"dtype", "float32"},
              {"device", "cpu"},
              {"apply_b_dec_to_input", false},
              {"normalize_activations", "none"},
              {"reshape_activations", "none"},
              {"hook_name_out", "blocks.2.hook_mlp_out"},
              {"hook_layer_out", 2},
              {"hook_head_index_out", nullptr},
              {"metadata",
               {{"sae_lens_version", "6.18.0"},
                {"model_name", "gpt2"},
                {"hook_name", "blocks.2.ln2.hook_normalized"},
                {"context_size", 128},
                {"prepend_bos", true}}}};
  test::write_text(d + "/cfg.json", cfg.dump());
  torch::manual_seed(4);
  NamedTensors w = {{"W_enc", torch::randn({4, 8})},
                    {"b_enc", torch::randn({8})},
                    {"W_dec", torch::randn({8, 3})},
                    {"b_dec", torch::randn({3})},
                    {"W_skip", torch::randn({3, 4})}};
  save_safetensors(d + "/sae_weights.safetensors", w);
  auto sae = load_sae(d);
  EXPECT_EQ(sae->cfg().architecture, "standard");
  EXPECT_EQ(sae->cfg().hook_name_out, "blocks.2.hook_mlp_out");
  EXPECT_EQ(sae->cfg().hook_name, "blocks.2.ln2.hook_normalized");
  const at::Tensor x = torch::randn({5, 4});
  auto t = [&](const char* n) {
    for (auto& [k, v] : w)
      if (k == n) return v;
    return at::Tensor();
  };
  const at::Tensor want = torch::relu(x.mm(t("W_enc")) + t("b_enc")).mm(t("W_dec")) + t("b_dec") +
                          x.mm(t("W_skip").t());
  EXPECT_LT((sae->forward(x).reconstruction - want).abs().max().item<float>(), 1e-5);

  // Refusals, one line each, naming the file and the field.
  auto refused = [&](json c, const std::string& needle) {
    test::write_text(d + "/cfg.json", c.dump());
    try {
      load_sae(d);
      ADD_FAILURE() << "accepted: " << c.dump();
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(needle), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  };
  json c = cfg;
  c["apply_b_dec_to_input"] = true;
  refused(c, "apply_b_dec_to_input");
  c = cfg;
  c.erase("d_out");
  refused(c, "d_out");
  c = cfg;
  c["d_out"] = 4;
  refused(c, "W_dec");
  c = cfg;
  c["normalize_activations"] = "layer_norm";
  refused(c, "normalize_activations");
}

TEST(Transcoder, ConfigRefusals) {
  auto refused = [](std::function<void(RunnerConfig&)> edit, const std::string& key) {
    RunnerConfig c;
    c.hook_name = "blocks.0.ln2.hook_normalized";
    c.hook_name_out = "blocks.0.hook_mlp_out";
    c.apply_b_dec_to_input = false;
    c.d_in = 16;
    edit(c);
    try {
      resolve_runner_config(c, "cfg.toml");
      ADD_FAILURE() << "accepted (" << key << ")";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(key), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  };
  refused([](RunnerConfig& c) { c.architecture = "gated"; }, "gated");
  refused([](RunnerConfig& c) { c.apply_b_dec_to_input = true; }, "apply_b_dec_to_input");
  refused([](RunnerConfig& c) { c.hook_name_out = c.hook_name; }, "hook_name_out");
  refused(
      [](RunnerConfig& c) {
        c.hook_name_out.reset();
        c.d_out = 8;
      },
      "d_out");
  refused(
      [](RunnerConfig& c) {
        c.hook_name_out.reset();
        c.skip_connection = true;
      },
      "skip_connection");
  refused(
      [](RunnerConfig& c) {
        c.architecture = "matryoshka_batchtopk";
        c.activation_fn_kwargs = {{"k", 4}};
        c.skip_connection = true;
      },
      "skip_connection");
  refused([](RunnerConfig& c) { c.normalize_activations = "layer_norm"; }, "normalize_activations");
  refused(
      [](RunnerConfig& c) {
        c.d_out = 8;
        c.init_encoder_as_decoder_transpose = true;
      },
      "d_out");
  refused([](RunnerConfig& c) { c.resample_dead_latents = true; }, "resample_dead_latents");
  // Accepted: d_out defaults to d_in.
  RunnerConfig ok;
  ok.hook_name = "blocks.0.ln2.hook_normalized";
  ok.hook_name_out = "blocks.0.hook_mlp_out";
  ok.apply_b_dec_to_input = false;
  ok.d_in = 16;
  EXPECT_EQ(resolve_runner_config(ok, "cfg.toml").d_out.value_or(0), 16);
}

// The model path on a tiny GPT-2: the store pairs each token's input and output rows, `saelab
// cache` writes them as activations / activations_out, and `saelab train` trains a transcoder on
// the model and on the cache, with the MLP-replacement evals.
TEST(Transcoder, ModelStoreCacheAndTrainEndToEnd) {
  test::TempDir dir;
  const std::string d = dir.path();
  test::write_model(d + "/lm", 3);
  test::write_dataset(d + "/data.jsonl", 4);
  const std::string toml = fmt::format(
      "model_name = \"{0}/lm\"\ndataset_path = \"{0}/data.jsonl\"\n"
      "hook_name = \"blocks.1.ln2.hook_normalized\"\nhook_layer = 1\n"
      "hook_name_out = \"blocks.1.hook_mlp_out\"\napply_b_dec_to_input = false\n"
      "d_in = 16\nd_sae = 32\ncontext_size = {1}\nprepend_bos = false\n"
      "n_batches_in_buffer = 4\nstore_batch_size_prompts = 8\ntraining_tokens = 2048\n"
      "train_batch_size_tokens = 256\nlr = 0.003\nl1_coefficient = 0.5\n"
      "wandb_log_frequency = 2\nn_checkpoints = 0\nlog_to_wandb = false\nrun_name = \"tc\"\n"
      "checkpoint_path = \"{0}/runs\"\ncached_activations_path = \"{0}/cache\"\n",
      d, test::kCtx);
  test::write_text(d + "/tc.toml", toml);
  RunnerConfig cfg = load_runner_config(d + "/tc.toml", {});

  // The store's rows are [input | output] of the same tokens: the halves equal the rows of
  // stores on each hook alone.
  auto paired = make_activations_store(cfg, false);
  EXPECT_EQ(paired->d_in(), 16);
  EXPECT_EQ(paired->d_out(), 16);
  RunnerConfig in_only = cfg, out_only = cfg;
  in_only.hook_name_out.reset();
  out_only.hook_name_out.reset();
  out_only.hook_name = "blocks.1.hook_mlp_out";
  const at::Tensor rows = paired->next_chunk().rows;
  EXPECT_TRUE(torch::equal(rows.narrow(1, 0, 16),
                           make_activations_store(in_only, false)->next_chunk().rows));
  EXPECT_TRUE(torch::equal(rows.narrow(1, 16, 16),
                           make_activations_store(out_only, false)->next_chunk().rows));

  // saelab cache: both tensors in every shard, row for row.
  CacheRequest cr;
  cr.config = d + "/tc.toml";
  cr.quiet = true;
  cr.messages = std::fopen("/dev/null", "w");
  CacheOutcome co = run_cache(cr);
  std::fclose(cr.messages);
  EXPECT_EQ(co.result.tokens, 2048);
  const json manifest = read_json_file(d + "/cache/manifest.json");
  EXPECT_EQ(manifest.at("hook_name_out"), "blocks.1.hook_mlp_out");
  auto shard = load_safetensors(d + "/cache/shard_00000.safetensors");
  EXPECT_EQ(shard.at("activations_out").sizes(), shard.at("activations").sizes());
  EXPECT_TRUE(
      torch::equal(shard.at("activations").narrow(0, 0, rows.size(0)), rows.narrow(1, 0, 16)));
  EXPECT_TRUE(
      torch::equal(shard.at("activations_out").narrow(0, 0, rows.size(0)), rows.narrow(1, 16, 16)));

  std::string model_run;
  for (bool cached : {false, true}) {
    SCOPED_TRACE(cached ? "cached" : "model");
    TrainRequest r;
    r.config = d + "/tc.toml";
    r.sets = {cached ? "use_cached_activations=true" : "seed=42",
              std::string("run_name=") + (cached ? "cached" : "model")};
    if (!cached)
      r.sets.insert(r.sets.end(),
                    {"n_eval_batches=1", "eval_batch_size_prompts=4", "eval_every_n_wandb_logs=4"});
    r.quiet = true;
    r.write_report = false;
    r.messages = std::fopen("/dev/null", "w");
    TrainOutcome t = run_training(r);
    std::fclose(r.messages);
    ASSERT_TRUE(t.summary.completed);
    if (!cached) model_run = t.run_dir;
    const json c = read_json_file(t.run_dir + "/final/cfg.json");
    EXPECT_EQ(c.at("architecture"), "transcoder");
    EXPECT_EQ(c.at("d_out"), 16);
    EXPECT_EQ(c.at("hook_name_out"), "blocks.1.hook_mlp_out");
    EXPECT_EQ(c.at("hook_name"), "blocks.1.ln2.hook_normalized");
    const json& e = t.summary.eval;
    EXPECT_TRUE(e.contains("metrics/explained_variance")) << e.dump();
    if (!cached) {
      // The model evals ran with the MLP's output replaced by the transcoder's.
      const double ce = e.at("model_performance_preservation/ce_loss_with_sae").get<double>();
      const double abl = e.at("model_performance_preservation/ce_loss_with_ablation").get<double>();
      EXPECT_TRUE(std::isfinite(ce) && std::isfinite(abl)) << e.dump();
      EXPECT_NE(ce, abl);
    }
  }

  // A sweep of transcoders on the shared cached pairs: each member saves a transcoder.
  TrainRequest sw;
  sw.config = d + "/tc.toml";
  sw.sets = {"use_cached_activations=true", "run_name=sweep", "skip_connection=true",
             "l1_coefficient=[0.1, 1.0]"};
  sw.quiet = true;
  sw.write_report = false;
  sw.messages = std::fopen("/dev/null", "w");
  TrainOutcome so = run_training(sw);
  std::fclose(sw.messages);
  ASSERT_TRUE(so.is_sweep);
  ASSERT_EQ(so.sweep.members.size(), 2u);
  for (const auto& m : so.sweep.members) {
    ASSERT_TRUE(m.completed);
    EXPECT_EQ(read_json_file(m.final_dir + "/cfg.json").at("architecture"), "skip_transcoder");
  }

  // saelab eval on the cache file compares the output with activations_out; on the model it runs
  // the MLP-replacement evals.
  SaeEvalOptions eo;
  eo.sae_dir = model_run + "/final";
  eo.activations = d + "/cache/shard_00000.safetensors";
  const json fm = evaluate_activations_file(eo);
  auto tc = load_sae(eo.sae_dir);
  const at::Tensor yhat = tc->forward(shard.at("activations")).reconstruction;
  EXPECT_NEAR(fm.at("reconstruction_quality/mse").get<double>(),
              (yhat - shard.at("activations_out")).pow(2).mean().item<double>(), 1e-6);
  save_safetensors(d + "/in_only.safetensors", {{"activations", shard.at("activations")}});
  eo.activations = d + "/in_only.safetensors";
  EXPECT_THROW(evaluate_activations_file(eo), Error);
  eo.activations.clear();
  eo.model = d + "/lm";
  eo.dataset = d + "/data.jsonl";
  eo.n_eval_batches = 1;
  eo.batch_size_prompts = 4;
  const json mm = evaluate_on_model(eo);
  EXPECT_TRUE(std::isfinite(mm.at("model_performance_preservation/ce_loss_with_sae").get<double>()))
      << mm.dump();
}

}  // namespace
}  // namespace saelab
