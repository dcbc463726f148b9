// The JumpReLU SAE: a latent fires when its pre-activation exceeds a learned per-latent threshold;
// trained with an L0 penalty through straight-through estimators of bandwidth jumprelu_bandwidth.
// Its files: jumprelu.cpp (inference), jumprelu_training.{h,cpp} (autograd loss),
// jumprelu_fast.cpp (hand-written step).
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<Sae> make_jumprelu_sae(const SaeConfig& cfg);
std::unique_ptr<TrainingSae> make_jumprelu_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_jumprelu_training_sae(const TrainingSaeConfig& cfg);

}  // namespace saelab
