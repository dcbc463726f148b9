// `saelab bench`'s measurements (bench.h).
#include "saelab/train/bench.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>

#include "saelab/core/error.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/registry.h"
#include "saelab/sae/training_sae.h"
#include "saelab/train/adam.h"
#include "saelab/train/update.h"

namespace saelab {
namespace {

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

double sgemm_at(int64_t n, const at::Device& dev) {
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
  // matryoshka_batchtopk: three nested levels (a quarter, half and all of the latents), as
  // bench/e2e.py trains it; with one level it would time batchtopk again.
  if (find_architecture(arch, "--arch").matryoshka && o.d_sae >= 4)
    cfg.matryoshka_widths = {o.d_sae / 4, o.d_sae / 2, o.d_sae};
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
    apply_update(*sae, adam, out, 5e-5, /*normalize_sae_decoder=*/true);
  }
  sync(sae->params().at("W_dec"));
  double dt = (now_s() - t0) / o.steps;
  const int64_t levels = cfg.matryoshka_widths.empty() ? 1 : int64_t(cfg.matryoshka_widths.size());
  double flops = training_step_flops(find_architecture(arch, "--arch"), fast, o.batch, o.d_in,
                                     o.d_sae, o.k, levels);
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

// The model's forward pass to o.hook alone, as the store runs it (run_with_cache stops at the
// hook), on random ids: best of o.steps passes after a warm-up.
json bench_forward(const BenchOptions& o, const at::Device& dev) {
  if (o.context <= 0 || o.prompts <= 0)
    fail("bench: expected positive --context and --prompts, got {} and {}", o.context, o.prompts);
  LoadedModel lm = load_model(o.model);
  lm.model->check_hook_name(o.hook);
  if (!dev.is_cpu()) lm.model->to(dev);
  torch::manual_seed(0);
  const at::Tensor toks =
      torch::randint(0, lm.model->cfg().d_vocab, {o.prompts, o.context}, torch::kLong).to(dev);
  auto pass = [&] {
    auto cache = lm.model->run_with_cache(toks, {o.hook});
    sync(cache.at(o.hook));
  };
  pass();
  double best = 1e30;
  for (int64_t s = 0; s < o.steps; ++s) {
    const double t0 = now_s();
    pass();
    best = std::min(best, now_s() - t0);
  }
  return {{"model", o.model},           {"hook", o.hook},
          {"context", o.context},       {"prompts", o.prompts},
          {"ms_per_batch", best * 1e3}, {"tokens_per_s", double(o.prompts * o.context) / best}};
}

}  // namespace

double sgemm_gflops(int64_t n, const std::string& device) {
  return sgemm_at(n, training_device(device));
}

json run_bench(const BenchOptions& o, const std::function<void(const json&)>& report) {
  if (o.d_in <= 0 || o.d_sae <= 0 || o.batch <= 0 || o.steps <= 0 || o.k <= 0 || o.sgemm_n < 0)
    fail("bench: expected positive --d-in, --d-sae, --batch, --steps, --k and --sgemm-n >= 0");
  const at::Device dev = training_device(o.device);
  json r = {{"threads", at::get_num_threads()}, {"libtorch", TORCH_VERSION}, {"device", dev.str()}};
  if (o.sgemm_n > 0) {
    double g = sgemm_at(o.sgemm_n, dev);
    r["sgemm_n"] = o.sgemm_n;
    r["sgemm_gflops"] = g;
  }
  if (!o.model.empty()) r["forward"] = bench_forward(o, dev);
  r["results"] = json::array();
  for (const auto& arch : split(o.archs)) {
    json a = bench_arch(arch, o, dev);
    if (r.contains("sgemm_gflops"))
      a["sgemm_fraction"] = a["gflops"].get<double>() / r["sgemm_gflops"].get<double>();
    if (report) report(a);
    r["results"].push_back(a);
  }
  return r;
}

}  // namespace saelab
