// `saelab bench`: parses options, runs train/bench.h's measurements, prints them.
#include <iostream>
#include <memory>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/train/bench.h"

namespace saelab::cli {
namespace {

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<BenchOptions>();
  auto as_json = std::make_shared<bool>(false);
  sub->add_flag("--json", *as_json, "print one JSON object");
  sub->add_option("--d-in", o->d_in, "input width (default 512)");
  sub->add_option("--d-sae", o->d_sae, "latents (default 8192)");
  sub->add_option("--batch", o->batch, "tokens per step (default 4096)");
  sub->add_option("--steps", o->steps, "timed steps after one warm-up step (default 3)");
  sub->add_option("--k", o->k, "k of topk / batchtopk (default 32)");
  sub->add_option("--arch", o->archs, "comma-separated architectures (default all five)");
  sub->add_option("--sgemm-n", o->sgemm_n,
                  "size of the float32 sgemm to time; 0 skips it (default 4096)");
  sub->add_flag("--autograd", o->autograd, "time the autograd bodies instead of the fast paths");
  sub->add_option("--model", o->model,
                  "also time this model's forward pass to --hook alone (a model_name)");
  sub->add_option("--hook", o->hook, "the hook of --model (default blocks.8.hook_resid_pre)");
  sub->add_option("--context", o->context, "tokens per prompt for --model (default 128)");
  sub->add_option("--prompts", o->prompts, "prompts per forward pass for --model (default 32)");
  sub->add_option("--device", o->device,
                  "cpu (default), cuda or cuda:N (needs a CUDA LibTorch build)");
  sub->footer(
      "GFLOP/s counts 2·N·d_in·d_sae per dense matmul performed (see docs/performance.md).\n"
      "peak_rss_mb is the process's peak so far: run one --arch per process (bench/compare.sh\n"
      "does) for a per-architecture figure.\n\n"
      "Example:\n  saelab bench --d-in 512 --d-sae 8192 --batch 4096 --steps 3 --arch "
      "standard,topk --json");
  return [o, as_json] {
    const bool quiet = *as_json;
    json r = run_bench(*o, [&](const json& a) {
      if (quiet) return;
      std::cerr << a["arch"].get<std::string>() << " d_in=" << o->d_in << " d_sae=" << o->d_sae
                << " B=" << o->batch << (a["fast_path"].get<bool>() ? " fast" : " autograd") << ": "
                << a["ms_per_step"].get<double>() << " ms/step, " << a["tokens_per_s"].get<double>()
                << " tokens/s, " << a["gflops"].get<double>() << " GFLOP/s, peak RSS "
                << a["peak_rss_mb"].get<double>() << " MiB (budget "
                << a["rss_budget_mb"].get<double>() << ")\n";
    });
    if (!quiet && r.contains("forward"))
      std::cerr << "forward of " << o->model << " to " << o->hook << ": "
                << r["forward"]["ms_per_batch"].get<double>() << " ms per " << o->prompts << " × "
                << o->context << " tokens, " << r["forward"]["tokens_per_s"].get<double>()
                << " tokens/s\n";
    if (!quiet && r.contains("sgemm_gflops"))
      std::cerr << "sgemm " << o->sgemm_n << "²: " << r["sgemm_gflops"].get<double>()
                << " GFLOP/s\n";
    if (quiet) std::cout << r.dump() << "\n";
    return 0;
  };
};

}  // namespace
SAELAB_COMMAND("bench", "Time the training step per architecture against this machine's sgemm rate",
               setup);
}  // namespace saelab::cli
