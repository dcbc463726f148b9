// matryoshka_batchtopk's hand-written step: the batchtopk step (one selection, AuxK, threshold)
// plus the inner levels, each decoding the selected activations of its first w latents with
// W_dec[:w] + b_dec (sparse_step's levels).
#include "saelab/sae/batchtopk/batchtopk_fast.h"
#include "saelab/sae/matryoshka/matryoshka.h"

namespace saelab {
namespace {

class FastMatryoshkaTrainingSae : public FastBatchTopKTrainingSae {
 public:
  explicit FastMatryoshkaTrainingSae(TrainingSaeConfig cfg)
      : FastBatchTopKTrainingSae(std::move(cfg)) {
    normalize_matryoshka_widths(cfg_);
    const auto& w = cfg_.matryoshka_widths;
    inner_widths_.assign(w.begin(), w.end() - 1);
  }
};

}  // namespace

std::unique_ptr<TrainingSae> make_fast_matryoshka_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<FastMatryoshkaTrainingSae>(cfg);
}

}  // namespace saelab
