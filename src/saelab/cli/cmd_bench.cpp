// `saelab bench`: the sgemm rate of this machine and the speed of saelab's full training step
// (forward_backward, decoder-parallel gradient removal, grad clipping, Adam, decoder
// normalisation, after_step — the trainer's order) per architecture, on random data shaped like
// bench/compare.sh's PyTorch reference. Figures: tokens/s, dense-matmul GFLOP/s, peak RSS.
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <sstream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/train/adam.h"
#include "saelab/train/fast_training_sae.h"
#include "saelab/train/init.h"
#include "saelab/train/training_sae.h"

namespace saelab::cli {
namespace {

struct BenchOptions {
  bool json = false;
  int64_t d_in = 512, d_sae = 8192, batch = 4096, steps = 3, k = 32, sgemm_n = 4096;
  std::string archs = "standard,gated,jumprelu,topk,batchtopk";
  bool autograd = false;
  std::string device = "cpu";
};

// Waits for the device's queued work (a no-op on CPU): CUDA kernels run asynchronously.
void sync(const at::Tensor& t) {
  if (!t.is_cpu()) (void)t.sum().item<double>();
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

// GFLOP/s of an n×n float32 matmul (2n³ FLOPs), best of 3 after a warm-up.
double sgemm_gflops(int64_t n, const at::Device& dev) {
  auto o = torch::TensorOptions().device(dev);
  auto a = torch::randn({n, n}, o), b = torch::randn({n, n}, o), c = torch::empty({n, n}, o);
  at::mm_out(c, a, b);
  sync(c);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    double t0 = now_s();
    at::mm_out(c, a, b);
    sync(c);
    best = std::min(best, now_s() - t0);
  }
  return 2.0 * n * n * n / best / 1e9;
}

// The matmul FLOPs saelab performs per step, counting 2·N·d_in·d_sae per dense matmul: the fast
// standard and jumprelu steps do 5 (encode, decode, dL/df, dW_dec, dW_enc); autograd bodies 6
// (plus dx̃); the gated autograd body 11 (two encoder products and their weight and input
// gradients, the auxiliary decode and its dL/da), its fast step 7 (one encoder product, both
// decodes, both products with W_decᵀ, dW_dec, one dW_enc); topk/batchtopk 1 dense (encode) plus the
// sparse decode, gather-dot and two row scatters, 2·N·k·d_in each.
double step_flops(const std::string& arch, bool fast, const BenchOptions& o) {
  const double dense = 2.0 * o.batch * o.d_in * o.d_sae;
  if (arch == "topk" || arch == "batchtopk") {
    if (!fast) return 3 * dense;  // encode, dense decode and its dW_dec; the rest is sparse-masked
    return dense + 4 * 2.0 * o.batch * o.k * o.d_in;
  }
  if ((arch == "standard" || arch == "jumprelu") && fast) return 5 * dense;
  if (arch == "gated") return (fast ? 7 : 11) * dense;
  return 6 * dense;
}

void init_params(TrainingSae& sae) {
  torch::NoGradGuard ng;
  auto& P = sae.params();
  auto W_dec = torch::randn(P.at("W_dec").sizes());
  W_dec = W_dec / W_dec.norm(2, {1}, true) * 0.1;
  P["W_dec"].copy_(W_dec);
  P["W_enc"].copy_(W_dec.t());
  if (P.count("log_threshold"))
    P["log_threshold"].fill_(std::log(sae.cfg().jumprelu_init_threshold));
}

json bench_arch(const std::string& arch, const BenchOptions& o, const at::Device& dev) {
  TrainingSaeConfig cfg;
  cfg.architecture = arch;
  cfg.d_in = o.d_in;
  cfg.d_sae = o.d_sae;
  cfg.k = o.k;
  cfg.use_fast_path = !o.autograd;
  double rss_before = peak_rss_mb();
  // Asked before the timed SAE exists: the probe allocates a second set of parameters, which
  // would otherwise be counted in the peak RSS.
  bool fast = cfg.use_fast_path && make_fast_training_sae(cfg) != nullptr;
  auto sae = make_training_sae(cfg);
  init_params(*sae);
  sae->to(dev);
  Adam adam(0.9, 0.999);
  torch::manual_seed(0);
  auto x_all = torch::randn({4, o.batch, o.d_in}).to(dev);
  StepContext ctx;
  ctx.l1_coefficient = 5.0;
  ctx.l0_coefficient = 1.0;
  double t0 = 0;
  for (int64_t s = 0; s <= o.steps; ++s) {
    if (s == 1) {
      sync(sae->params().at("W_dec"));
      t0 = now_s();
    }
    auto out = sae->forward_backward(x_all[s % 4], ctx);
    remove_gradient_parallel_to_decoder_directions(*sae);
    clip_grad_norm(sae->grads(), 1.0);
    adam.step(sae->params(), sae->grads(), 5e-5);
    set_decoder_norm_to_unit_norm(*sae);
    sae->after_step(out);
  }
  sync(sae->params().at("W_dec"));
  double dt = (now_s() - t0) / o.steps;
  double flops = step_flops(arch, fast, o);
  // What the memory target counts: params, Adam's two moments, one batch, one [N, d_sae].
  double params = 0;
  for (const auto& [n, p] : sae->params()) params += p.numel() * 4.0;
  double budget =
      (3 * params + o.batch * o.d_in * 4.0 + o.batch * o.d_sae * 4.0) / (1024.0 * 1024.0);
  return {{"arch", arch},
          {"d_in", o.d_in},
          {"device", dev.str()},
          {"d_sae", o.d_sae},
          {"batch", o.batch},
          {"k", o.k},
          {"steps", o.steps},
          {"fast_path", fast},
          {"ms_per_step", dt * 1e3},
          {"tokens_per_s", o.batch / dt},
          {"gflop_per_step", flops / 1e9},
          {"gflops", flops / dt / 1e9},
          {"peak_rss_mb", peak_rss_mb()},
          {"rss_before_mb", rss_before},
          {"rss_budget_mb", budget}};
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<BenchOptions>();
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->add_option("--d-in", o->d_in, "input width (default 512)");
  sub->add_option("--d-sae", o->d_sae, "latents (default 8192)");
  sub->add_option("--batch", o->batch, "tokens per step (default 4096)");
  sub->add_option("--steps", o->steps, "timed steps after one warm-up step (default 3)");
  sub->add_option("--k", o->k, "k of topk / batchtopk (default 32)");
  sub->add_option("--arch", o->archs, "comma-separated architectures (default all five)");
  sub->add_option("--sgemm-n", o->sgemm_n,
                  "size of the float32 sgemm to time; 0 skips it (default 4096)");
  sub->add_flag("--autograd", o->autograd, "time the autograd bodies instead of the fast paths");
  sub->add_option("--device", o->device,
                  "cpu (default), cuda or cuda:N (needs a CUDA LibTorch build)");
  sub->footer(
      "GFLOP/s counts 2·N·d_in·d_sae per dense matmul performed (see docs/performance.md).\n"
      "peak_rss_mb is the process's peak so far: run one --arch per process (bench/compare.sh\n"
      "does) for a per-architecture figure.\n\n"
      "Example:\n  saelab bench --d-in 512 --d-sae 8192 --batch 4096 --steps 3 --arch "
      "standard,topk --json");
  return [o] {
    if (o->d_in <= 0 || o->d_sae <= 0 || o->batch <= 0 || o->steps <= 0 || o->k <= 0 ||
        o->sgemm_n < 0)
      fail("bench: expected positive --d-in, --d-sae, --batch, --steps, --k and --sgemm-n >= 0");
    const at::Device dev = training_device(o->device);
    json r = {
        {"threads", at::get_num_threads()}, {"libtorch", TORCH_VERSION}, {"device", dev.str()}};
    if (o->sgemm_n > 0) {
      double g = sgemm_gflops(o->sgemm_n, dev);
      r["sgemm_n"] = o->sgemm_n;
      r["sgemm_gflops"] = g;
      if (!o->json) std::cerr << "sgemm " << o->sgemm_n << "²: " << g << " GFLOP/s\n";
    }
    r["results"] = json::array();
    for (const auto& arch : split(o->archs)) {
      json a = bench_arch(arch, *o, dev);
      if (r.contains("sgemm_gflops"))
        a["sgemm_fraction"] = a["gflops"].get<double>() / r["sgemm_gflops"].get<double>();
      if (!o->json)
        std::cerr << arch << " d_in=" << o->d_in << " d_sae=" << o->d_sae << " B=" << o->batch
                  << (a["fast_path"].get<bool>() ? " fast" : " autograd") << ": "
                  << a["ms_per_step"].get<double>() << " ms/step, "
                  << a["tokens_per_s"].get<double>() << " tokens/s, " << a["gflops"].get<double>()
                  << " GFLOP/s, peak RSS " << a["peak_rss_mb"].get<double>() << " MiB (budget "
                  << a["rss_budget_mb"].get<double>() << ")\n";
      r["results"].push_back(a);
    }
    if (o->json) std::cout << r.dump() << "\n";
    return 0;
  };
};

}  // namespace
SAELAB_COMMAND("bench", "Time the training step per architecture against this machine's sgemm rate",
               setup);
}  // namespace saelab::cli
