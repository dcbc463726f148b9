// batchtopk's hand-written step (the shared k-sparse step with a batch-wide selection); matryoshka
// derives from it and adds its inner levels.
#pragma once
#include <cstdint>
#include <vector>

#include "saelab/sae/batchtopk/batchtopk_training.h"
#include "saelab/sae/kernels/sparse_step.h"

namespace saelab {

class FastBatchTopKTrainingSae : public BatchTopKTrainingSae {
 public:
  using BatchTopKTrainingSae::BatchTopKTrainingSae;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override;
  // θ ← (1 − lr)θ + lr·min(f > 0) as the base class, with the minimum taken over the step's
  // sparse active values (no pass over the dense [N, d_sae] feature_acts).
  void after_step(const TrainStepOutput& out) override;
  void release_work_buffers() override { buf_.z = at::Tensor(); }

 protected:
  std::vector<int64_t> inner_widths_;  // matryoshka's inner levels

 private:
  SparseBuffers buf_;
};

}  // namespace saelab
