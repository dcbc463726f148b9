// The Matryoshka BatchTopK SAE (Bussmann et al. 2025): a batchtopk SAE whose prefixes of
// matryoshka_widths latents must each reconstruct the input; saved for inference as a JumpReLU.
// Its files: matryoshka_training.cpp (autograd loss), matryoshka_fast.cpp (hand-written step
// on batchtopk's); inference is jumprelu's.
#pragma once
#include <memory>

namespace saelab {

class Sae;
class TrainingSae;
struct SaeConfig;
struct TrainingSaeConfig;

std::unique_ptr<TrainingSae> make_matryoshka_training_sae(const TrainingSaeConfig& cfg);
std::unique_ptr<TrainingSae> make_fast_matryoshka_training_sae(const TrainingSaeConfig& cfg);
// Appends d_sae to cfg.matryoshka_widths when missing and checks the widths increase strictly.
void normalize_matryoshka_widths(TrainingSaeConfig& cfg);

}  // namespace saelab
