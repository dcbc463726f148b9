// The gated SAE (Rajamanoharan et al. 2024): a gate path decides which latents fire, a magnitude
// path (sharing W_enc, rescaled by exp(r_mag)) how much; trained with L1 on the gate and an
// auxiliary reconstruction through the gate.
// Its files: gated.cpp (inference), gated_training.{h,cpp} (autograd loss), gated_fast.cpp
// (hand-written step).
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<Sae> make_gated_sae(const SaeConfig& cfg);
std::unique_ptr<TrainingSae> make_gated_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_gated_training_sae(const TrainingSaeConfig& cfg);

}  // namespace saelab
