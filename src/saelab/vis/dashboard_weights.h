// What a dashboard shows about a latent from the weights alone: its logit effects (sae_vis's
// W_dec[i] @ W_U, no final norm), its nearest latents by decoder cosine similarity, the neurons its
// decoder writes to most, and its cosine similarity with board-state probes (Othello).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saelab {

class Transformer;
class Sae;

namespace vis {

struct IndexValue {
  int64_t index = 0;
  double value = 0;
};

struct LogitEffects {
  std::vector<IndexValue> top, bottom;  // most positive first / most negative first
  double hist_lo = 0, hist_hi = 0;      // the histogram of every token's effect: n_bins over
  std::vector<int64_t> hist_counts;     // [hist_lo, hist_hi]
};

// Each selected latent's direction in the residual stream: W_dec[i] for residual-stream hooks
// (d_in = d_model), through W_O for attn.hook_z (heads flattened, or the one hook_head_index head),
// through W_out for mlp.hook_post. nullopt for other hooks (no logit effects then). A transcoder's
// decoder writes its cfg.hook_name_out, so that hook decides for it (its W_dec [d_sae, d_out]).
std::optional<at::Tensor> residual_directions(const Transformer& model, const Sae& sae,
                                              const std::string& hook_name,
                                              std::optional<int64_t> hook_head_index,
                                              const std::vector<int64_t>& features);

// dirs [nF, d_model] @ W_U [d_model, d_vocab]: the n largest and n smallest per row, and a
// histogram of each row over n_bins equal bins from its min to its max. Computed in chunks.
std::vector<LogitEffects> logit_effects(const at::Tensor& dirs, const at::Tensor& W_U, int64_t n,
                                        int64_t n_bins);

// For each selected latent, the m other latents whose W_dec rows have the highest cosine
// similarity with its own (ties: smaller index first). Zero rows have cosine 0 with everything.
std::vector<std::vector<IndexValue>> decoder_neighbours(const Sae& sae,
                                                        const std::vector<int64_t>& features,
                                                        int64_t m);

// The n entries of W_dec[i] largest in absolute value (the neurons, when the hook is in neuron
// space), by |value| descending.
std::vector<std::vector<IndexValue>> top_decoder_entries(const Sae& sae,
                                                         const std::vector<int64_t>& features,
                                                         int64_t n);

// Cosine similarity of each latent's encoder column W_enc[:, i] ("input") and decoder row W_dec[i]
// ("output") with each square's direction probe[:, r, c] of a probe [d_in, 8, 8]: [nF, 64] each.
struct ProbeCosines {
  at::Tensor input, output;
};
ProbeCosines probe_cosines(const Sae& sae, const std::vector<int64_t>& features,
                           const at::Tensor& probe);

}  // namespace vis
}  // namespace saelab
