// topk's hand-written step: the shared k-sparse step with a per-token selection.
#include "saelab/sae/kernels/sparse_step.h"
#include "saelab/sae/topk/topk.h"
#include "saelab/sae/topk/topk_training.h"

namespace saelab {
namespace {

class FastTopKTrainingSae : public TopKTrainingSae {
 public:
  using TopKTrainingSae::TopKTrainingSae;
  TrainStepOutput forward_backward(const at::Tensor& x, const StepContext& ctx) override {
    return sparse_step(*this, buf_, x, ctx, false);
  }
  void release_work_buffers() override { buf_.z = at::Tensor(); }

 private:
  SparseBuffers buf_;
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_topk_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<FastTopKTrainingSae>(cfg);
}

}  // namespace saelab
