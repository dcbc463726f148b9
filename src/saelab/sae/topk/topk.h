// The TopK SAE (Gao et al. 2024): the k largest ReLU pre-activations of each token survive; AuxK
// revives dead latents.
// Its files: topk.cpp (inference), topk_training.{h,cpp} (autograd loss), topk_fast.cpp
// (hand-written step on kernels/sparse_step).
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<Sae> make_topk_sae(const SaeConfig& cfg);
std::unique_ptr<TrainingSae> make_topk_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_topk_training_sae(const TrainingSaeConfig& cfg);

}  // namespace saelab
