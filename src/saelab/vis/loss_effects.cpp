// Latent ablation loss effects (loss_effects.h).
#include "saelab/vis/loss_effects.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab::vis {

std::string written_hook(const Sae& sae, const std::string& hook) {
  return sae.cfg().is_transcoder() ? sae.cfg().hook_name_out : hook;
}

std::vector<std::optional<double>> ablation_loss_effects(
    const Transformer& model, const Sae& sae, const std::string& hook_in, const at::Tensor& tokens,
    const std::vector<LatentAblation>& ablations, int64_t batch) {
  std::vector<std::optional<double>> out(ablations.size());
  if (ablations.empty()) return out;
  at::NoGradGuard no_grad;
  const std::string hook = written_hook(sae, hook_in);
  const int64_t T = tokens.size(0);
  const at::Tensor tok = tokens.to(model.device(), at::kLong).unsqueeze(0);
  const auto clean = model.run(tok, {}, {hook}, /*return_logits=*/true);
  const at::Tensor& act = clean.cache.at(hook);
  const at::Tensor W_dec = sae.param("W_dec").to(at::kFloat).cpu();
  if (act.dim() != 3 || act.size(-1) != W_dec.size(1)) return out;
  const at::Tensor lp_clean = clean.logits[0].to(at::kDouble).log_softmax(-1).cpu();  // [T, V]
  const at::Tensor ids = tokens.to(at::kLong).cpu();

  // Ablations that have a next token, `batch` rows per forward.
  std::vector<size_t> todo;
  for (size_t a = 0; a < ablations.size(); ++a)
    if (ablations[a].position >= 0 && ablations[a].position + 1 < T) todo.push_back(a);
  for (size_t s = 0; s < todo.size(); s += size_t(batch)) {
    const size_t e = std::min(todo.size(), s + size_t(batch));
    const int64_t K = int64_t(e - s);
    at::Tensor pos = torch::empty({K}, torch::kLong), lat = torch::empty({K}, torch::kLong);
    at::Tensor a = torch::empty({K, 1}, torch::kFloat);
    for (int64_t k = 0; k < K; ++k) {
      const LatentAblation& ab = ablations[todo[s + size_t(k)]];
      pos[k] = ab.position;
      lat[k] = ab.latent;
      a[k][0] = float(ab.act);
    }
    const at::Tensor delta = W_dec.index_select(0, lat) * a;  // [K, d]
    const at::Tensor rows = torch::arange(K, torch::kLong);
    Hook h{hook, [&](const at::Tensor& x, const std::string&) {
             at::Tensor r = x.clone();
             const at::Tensor ri = rows.to(x.device()), pi = pos.to(x.device());
             r.index_put_({ri, pi}, r.index({ri, pi}) - delta.to(x.device(), x.scalar_type()));
             return r;
           }};
    const at::Tensor logits = model.run_with_hooks(tok.expand({K, T}).contiguous(), {h});
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = pos[k].item<int64_t>(), next = ids[p + 1].item<int64_t>();
      const double ablated = -logits[k][p].to(at::kDouble).log_softmax(-1)[next].item<double>();
      out[todo[s + size_t(k)]] = ablated + lp_clean[p][next].item<double>();
    }
  }
  return out;
}

}  // namespace saelab::vis
