// The matryoshka_batchtopk training SAE (Bussmann et al. 2025): a batchtopk SAE whose prefixes of
// matryoshka_widths latents must each reconstruct the input on their own. As in SAELens, every
// inner level re-applies BatchTopK to the prefix of the pre-activations, decodes with the first
// `width` decoder rows plus b_dec, and adds Σ_d (x̂_w − x)² averaged over the batch to the loss; the
// outermost level (d_sae) is the ordinary batchtopk loss.
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/batchtopk/batchtopk_training.h"
#include "saelab/sae/matryoshka/matryoshka.h"

namespace saelab {

void normalize_matryoshka_widths(TrainingSaeConfig& cfg) {
  auto& w = cfg.matryoshka_widths;
  if (w.empty() || w.back() != cfg.d_sae) w.push_back(cfg.d_sae);
  for (size_t i = 0; i < w.size(); ++i) {
    if (i > 0 && w[i] <= w[i - 1])
      fail(
          "matryoshka_widths: expected strictly increasing widths ending at d_sae={}, got {} "
          "after {}",
          cfg.d_sae, w[i], w[i - 1]);
    if (w[i] < cfg.k) fail("matryoshka_widths: expected every width >= k={}, got {}", cfg.k, w[i]);
  }
}

namespace {

class MatryoshkaTrainingSae : public BatchTopKTrainingSae {
 public:
  explicit MatryoshkaTrainingSae(TrainingSaeConfig cfg) : BatchTopKTrainingSae(std::move(cfg)) {
    normalize_matryoshka_widths(cfg_);
  }

 protected:
  at::Tensor extra_losses(const at::Tensor& y, const at::Tensor& hidden_pre,
                          std::map<std::string, at::Tensor>& L, TrainStepOutput& out) override {
    at::Tensor total;
    const auto& w = cfg_.matryoshka_widths;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      int64_t width = w[i];
      auto inner = activation(hidden_pre.narrow(1, 0, width));
      auto x_hat = inner.mm(L["W_dec"].narrow(0, 0, width)) + L["b_dec"];
      auto loss = mse_elements(x_hat, y).sum(-1).mean();
      out.losses["inner_mse_loss_" + std::to_string(width)] = loss.item<double>();
      total = total.defined() ? total + loss : loss;
    }
    return total;
  }
};

}  // namespace

std::unique_ptr<TrainingSae> make_matryoshka_training_sae(const TrainingSaeConfig& cfg) {
  return std::make_unique<MatryoshkaTrainingSae>(cfg);
}

}  // namespace saelab
