// `saelab bench`'s measurements: this machine's sgemm rate and the speed of saelab's training step
// (forward_backward then apply_update, exactly as the Trainer runs them) per architecture, on
// random data shaped like bench/compare.sh's PyTorch reference. Figures: tokens/s, dense-matmul
// GFLOP/s (the architecture's product count from sae/registry.h), peak RSS.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

struct BenchOptions {
  int64_t d_in = 512, d_sae = 8192, batch = 4096, steps = 3, k = 32, sgemm_n = 4096;
  std::string archs = "standard,gated,jumprelu,topk,batchtopk";  // comma-separated
  bool autograd = false;  // time the autograd bodies instead of the hand-written steps
  std::string device = "cpu";
  // With a model (a model_name as `saelab train` takes it): also time its forward pass up to
  // `hook` alone (what the activations store runs), on `prompts` × `context` random token ids.
  std::string model, hook = "blocks.8.hook_resid_pre";
  int64_t context = 128, prompts = 32;
};

// Runs the measurements; `report` (may be empty) is called with each architecture's result as it
// completes. Returns {"threads", "libtorch", "device", "sgemm_n", "sgemm_gflops", "results":
// [...]}, and with a model "forward": {"model", "hook", "context", "prompts", "ms_per_batch",
// "tokens_per_s"} (best of `steps` passes after a warm-up).
json run_bench(const BenchOptions& o, const std::function<void(const json&)>& report = {});

// GFLOP/s of an n×n float32 matmul (2n³ FLOPs) on `device`, best of 3 after a warm-up.
double sgemm_gflops(int64_t n, const std::string& device);

}  // namespace saelab
