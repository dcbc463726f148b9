// Shared pieces of the dense hand-written training steps (fast_gated.cpp, fast_jumprelu.cpp): their
// fused elementwise passes run as raw CPU loops where the tensors are on the CPU and as ATen ops
// elsewhere (the same step must run with device = "cuda"); tests force the ATen versions on the
// CPU to check them too. The files that use parallel_latents are compiled with -fopenmp
// (CMakeLists.txt): without it at::parallel_for is a serial call, and `#pragma omp simd` is
// ignored; and with -fno-trapping-math, without which GCC leaves the loops' compares as branches.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace saelab::fast {

// Tests only: run the ATen versions of the fused passes even on the CPU.
void set_force_aten_passes(bool on);
// Whether a fused pass over t may use its raw CPU loop.
bool use_cpu_loops(const at::Tensor& t);

// Runs body(lo, hi) over disjoint latent ranges [lo, hi) of [0, S) in parallel. Each latent's
// sums over tokens stay with one thread, so they need no atomics and do not depend on the thread
// count; each thread walks every token row but only its contiguous slice of it.
template <typename F>
void parallel_latents(int64_t S, const F& body) {
  at::parallel_for(0, S, 512, body);
}

}  // namespace saelab::fast
