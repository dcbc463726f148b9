// The matryoshka_batchtopk training SAE (Bussmann et al. 2025): a batchtopk SAE whose prefixes of
// matryoshka_widths latents must each reconstruct the input on their own. One BatchTopK over all
// d_sae latents gives the feature activations f; inner level w decodes the prefix f[:, :w] with the
// first w decoder rows plus b_dec and adds Σ_d (x̂_w − x)² averaged over the batch to the loss; the
// outermost level (d_sae) is the ordinary batchtopk loss. This is the paper's and
// dictionary_learning's definition, and SAELens's since October 2025 (earlier SAELens re-ran
// BatchTopK on each prefix, which gave every inner level k·N activations of its own).
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/batchtopk/batchtopk_training.h"
#include "saelab/sae/matryoshka/matryoshka.h"

namespace saelab {

void normalize_matryoshka_widths(TrainingSaeConfig& cfg) {
  auto& w = cfg.matryoshka_widths;
  if (w.empty() || w.back() != cfg.d_sae) w.push_back(cfg.d_sae);
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0) fail("matryoshka_widths: expected positive widths, got {}", w[i]);
    if (i > 0 && w[i] <= w[i - 1])
      fail(
          "matryoshka_widths: expected strictly increasing widths ending at d_sae={}, got {} "
          "after {}",
          cfg.d_sae, w[i], w[i - 1]);
  }
}

namespace {

class MatryoshkaTrainingSae : public BatchTopKTrainingSae {
 public:
  explicit MatryoshkaTrainingSae(TrainingSaeConfig cfg) : BatchTopKTrainingSae(std::move(cfg)) {
    normalize_matryoshka_widths(cfg_);
  }

 protected:
  at::Tensor extra_losses(const at::Tensor& y, const at::Tensor& f,
                          std::map<std::string, at::Tensor>& L, TrainStepOutput& out) override {
    at::Tensor total;
    const auto& w = cfg_.matryoshka_widths;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      int64_t width = w[i];
      auto x_hat = f.narrow(1, 0, width).mm(L["W_dec"].narrow(0, 0, width)) + L["b_dec"];
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
