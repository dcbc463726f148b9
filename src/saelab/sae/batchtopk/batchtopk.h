// The BatchTopK SAE (Bussmann et al. 2024): the k·N largest activations of a batch survive; saved
// for inference as a JumpReLU whose threshold is the learned global threshold.
// Its files: batchtopk_training.{h,cpp} (autograd loss), batchtopk_fast.{h,cpp} (hand-written
// step on kernels/sparse_step); inference is jumprelu's.
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<TrainingSae> make_batchtopk_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_batchtopk_training_sae(const TrainingSaeConfig& cfg);

}  // namespace saelab
