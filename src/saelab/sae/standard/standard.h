// The standard SAE: ReLU latents, an L1 penalty on them (scaled by decoder norms optionally),
// optional ghost grads.
// Its files: standard.cpp (inference), standard_training.cpp (autograd loss),
// standard_fast.cpp (hand-written step).
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<Sae> make_standard_sae(const SaeConfig& cfg);
std::unique_ptr<TrainingSae> make_standard_training_sae(const TrainingSaeConfig& cfg);
// nullptr where the hand-written step does not implement cfg (ghost grads, lp_norm != 1).
std::unique_ptr<TrainingSae> make_fast_standard_training_sae(const TrainingSaeConfig& cfg);

}  // namespace saelab
