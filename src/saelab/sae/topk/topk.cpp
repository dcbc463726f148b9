// TopK SAE (Gao et al. 2024; SAELens TopKSAE): z = x̃ W_enc + b_enc; per token keep the k largest
// entries of z, ReLU them, zero the rest.
// SAELens 6 has rescale_acts_by_decoder_norm (kept in cfg.extra): z is multiplied by ‖W_dec,i‖
// before the top-k and the activations divided by it again before decoding. Its inference saves
// fold the norms into the weights, but a cfg.json may still say true; the result is the same
// either way, so saelab applies the flag as written.
#include "saelab/sae/topk/topk.h"

#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

class TopKSae : public Sae {
 public:
  using Sae::Sae;
  SaeForward encode_full(const at::Tensor& x) const override {
    SaeForward out;
    out.acts_pre = torch::matmul(sae_in(x), param("W_enc")) + param("b_enc");
    at::Tensor z = rescale() ? out.acts_pre * decoder_norms() : out.acts_pre;
    auto top = torch::topk(z, cfg_.k, /*dim=*/-1, /*largest=*/true, /*sorted=*/false);
    out.acts_post =
        torch::zeros_like(z).scatter(-1, std::get<1>(top), torch::relu(std::get<0>(top)));
    return out;
  }

 protected:
  at::Tensor decoder_input(const at::Tensor& acts) const override {
    return rescale() ? acts / decoder_norms() : acts;
  }

 private:
  bool rescale() const {
    auto it = cfg_.extra.find("rescale_acts_by_decoder_norm");
    return it != cfg_.extra.end() && it->is_boolean() && it->get<bool>();
  }
  at::Tensor decoder_norms() const { return param("W_dec").norm(2, {-1}); }
};

}  // namespace

std::unique_ptr<Sae> make_topk_sae(const SaeConfig& cfg) {
  if (cfg.k <= 0 || cfg.k > cfg.d_sae)
    fail("SAE config: topk needs k in [1, d_sae={}], got k={}", cfg.d_sae, cfg.k);
  return std::make_unique<TopKSae>(cfg);
}

}  // namespace saelab
