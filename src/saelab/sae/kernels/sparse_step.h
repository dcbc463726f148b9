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

// Work buffers kept across steps by the SAE that owns them.
struct SparseBuffers {
  at::Tensor z;  // [N, d_sae]: z, then the dense feature_acts
  double min_active = std::numeric_limits<double>::quiet_NaN();  // batchtopk's after_step
};

// One step: batch = false selects the k largest positive z per token (topk), true the k·N largest
// of the batch (batchtopk); inner_widths are matryoshka's inner levels (empty otherwise).
// out.feature_acts is buf.z, valid until the next step.
TrainStepOutput sparse_step(TrainingSae& sae, SparseBuffers& buf, const at::Tensor& x_in,
                            const StepContext& ctx, bool batch,
                            const std::vector<int64_t>& inner_widths = {});

}  // namespace saelab
