// The hand-written k-sparse training step that topk, batchtopk and matryoshka_batchtopk share: one
// dense encoder product, then a sparse decode and a sparse backward over the selected entries
// (the math is written out at the top of sparse_step.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "saelab/sae/training_sae.h"

namespace saelab {

// Work buffers kept across steps by the SAE that owns them. Reusing them keeps their pages
// mapped: glibc serves blocks over 32 MiB (a [4096, 2304] float tensor is 36 MiB) with a fresh
// mmap whose every page faults on first touch, about 9,000 faults per tensor per step.
struct SparseBuffers {
  at::Tensor z;                  // [N, d_sae]: z, then the dense feature_acts
  at::Tensor x_in;               // [N, d_in]: x − b_dec
  at::Tensor x_hat;              // [N, out_dim]: the reconstruction (sae_out)
  std::vector<at::Tensor> grad;  // per level [N, out_dim]: g_l, then Σ_{m ≥ l} g_m
  at::Tensor aux;                // [N, out_dim]: AuxK's q, then h
  double min_active = std::numeric_limits<double>::quiet_NaN();  // batchtopk's after_step
};

// One step: batch = false selects the k largest positive z per token (topk), true the k·N largest
// of the batch (batchtopk); inner_widths are matryoshka's inner levels (empty otherwise).
// out.feature_acts is buf.z and out.sae_out buf.x_hat, both valid until the next step.
TrainStepOutput sparse_step(TrainingSae& sae, SparseBuffers& buf, const at::Tensor& x_in,
                            const StepContext& ctx, bool batch,
                            const std::vector<int64_t>& inner_widths = {});

}  // namespace saelab
