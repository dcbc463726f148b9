// Loss effects of a latent (sae_vis's "loss contribution"): the next-token cross-entropy at one
// position of one prompt with the latent's decoder contribution act · W_dec[i] removed from the
// hook it writes, minus the clean cross-entropy there. Positive: the latent helped predict the
// next token. Shared by the feature cards (their top examples) and the prompt-centric view.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saelab {
class Sae;
class Transformer;
}  // namespace saelab

namespace saelab::vis {

struct LatentAblation {
  int64_t latent = 0;
  int64_t position = 0;  // in the prompt; the loss is that of predicting token position + 1
  double act = 0;        // the latent's activation there
};

// The hook a latent's decoder writes: `hook` (the SAE's), or a transcoder's hook_name_out.
std::string written_hook(const Sae& sae, const std::string& hook);

// One value per ablation on one prompt `tokens` [T]: nullopt at the prompt's last position, and
// for all of them when the written hook's activation is not [batch, pos, W_dec.size(1)] (per-head
// hooks). One clean forward, then the ablations `batch` rows at a time, each row of the prompt
// with one contribution removed. float64 log-softmax.
std::vector<std::optional<double>> ablation_loss_effects(
    const Transformer& model, const Sae& sae, const std::string& hook, const at::Tensor& tokens,
    const std::vector<LatentAblation>& ablations, int64_t batch = 16);

}  // namespace saelab::vis
