// Weight-only dashboard statistics (dashboard_weights.h), in chunks of latents so that only
// [chunk, d_vocab] or [chunk, d_sae] is ever held.
#include "saelab/vis/dashboard_weights.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "saelab/core/error.h"
#include "saelab/model/hooks.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab::vis {
namespace {

constexpr int64_t kChunk = 256;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

at::Tensor selected_rows(const at::Tensor& w, const std::vector<int64_t>& features) {
  return w.index_select(0, torch::tensor(features, torch::kLong).to(w.device()));
}

// Top-n of each row of values [rows, cols] with their column indices, on the CPU.
std::vector<std::vector<IndexValue>> rows_topk(const at::Tensor& values, int64_t n, bool largest) {
  const int64_t k = std::min<int64_t>(n, values.size(1));
  auto [v, idx] = values.topk(k, 1, largest, true);
  const at::Tensor vc = v.to(at::kDouble).cpu().contiguous(), ic = idx.cpu().contiguous();
  const auto va = vc.accessor<double, 2>();
  const auto ia = ic.accessor<int64_t, 2>();
  std::vector<std::vector<IndexValue>> out(values.size(0));
  for (int64_t r = 0; r < values.size(0); ++r)
    for (int64_t c = 0; c < k; ++c) out[r].push_back({ia[r][c], va[r][c]});
  return out;
}

}  // namespace

std::optional<at::Tensor> residual_directions(const Transformer& model, const Sae& sae,
                                              const std::string& hook_name_in,
                                              std::optional<int64_t> hook_head_index,
                                              const std::vector<int64_t>& features) {
  at::NoGradGuard no_grad;
  // A transcoder's decoder writes its output hook, not the hook it reads.
  const std::string& hook_name = sae.cfg().is_transcoder() ? sae.cfg().hook_name_out : hook_name_in;
  const at::Tensor dec = selected_rows(sae.param("W_dec"), features).to(at::kFloat).cpu();
  const int64_t d_model = model.cfg().d_model;
  for (const char* s : {"hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
                        "hook_mlp_out", "hook_embed", "hook_pos_embed"})
    if (ends_with(hook_name, s) && dec.size(1) == d_model) return dec;
  const auto layer = hook_block_index(hook_name);
  if (!layer) return std::nullopt;
  const std::string block = "blocks." + std::to_string(*layer) + ".";
  if (ends_with(hook_name, "attn.hook_z") && model.has_weight(block + "attn.W_O")) {
    const at::Tensor W_O = model.weight(block + "attn.W_O").to(at::kFloat).cpu();  // [H, dh, dm]
    if (hook_head_index) return dec.matmul(W_O[*hook_head_index]);
    if (dec.size(1) != W_O.size(0) * W_O.size(1)) return std::nullopt;
    return dec.matmul(W_O.reshape({-1, W_O.size(2)}));
  }
  if (ends_with(hook_name, "mlp.hook_post") && model.has_weight(block + "mlp.W_out")) {
    const at::Tensor W_out = model.weight(block + "mlp.W_out").to(at::kFloat).cpu();
    if (dec.size(1) != W_out.size(0)) return std::nullopt;
    return dec.matmul(W_out);
  }
  return std::nullopt;
}

std::vector<LogitEffects> logit_effects(const at::Tensor& dirs, const at::Tensor& W_U_in, int64_t n,
                                        int64_t n_bins) {
  at::NoGradGuard no_grad;
  const at::Tensor W_U = W_U_in.to(at::kFloat).cpu();
  if (dirs.size(1) != W_U.size(0))
    fail("logit effects: latent directions have width {} but W_U has d_model = {}", dirs.size(1),
         W_U.size(0));
  std::vector<LogitEffects> out;
  for (int64_t c0 = 0; c0 < dirs.size(0); c0 += kChunk) {
    const at::Tensor eff = dirs.slice(0, c0, std::min(dirs.size(0), c0 + kChunk)).matmul(W_U);
    auto top = rows_topk(eff, n, true);
    auto bottom = rows_topk(eff, n, false);
    const at::Tensor lo = std::get<0>(eff.min(1)).to(at::kDouble),
                     hi = std::get<0>(eff.max(1)).to(at::kDouble);
    const at::Tensor width = (hi - lo).clamp_min(1e-30);
    const at::Tensor bin =
        ((eff.to(at::kDouble) - lo.unsqueeze(1)) / width.unsqueeze(1) * double(n_bins))
            .floor()
            .to(at::kLong)
            .clamp(0, n_bins - 1);
    const int64_t rows = eff.size(0);
    const at::Tensor offs = torch::arange(rows, torch::kLong).unsqueeze(1) * n_bins;
    const at::Tensor counts =
        torch::bincount((bin + offs).flatten(), {}, rows * n_bins).reshape({rows, n_bins});
    for (int64_t r = 0; r < rows; ++r) {
      LogitEffects e;
      e.top = std::move(top[r]);
      e.bottom = std::move(bottom[r]);
      e.hist_lo = lo[r].item<double>();
      e.hist_hi = hi[r].item<double>();
      const at::Tensor cr = counts[r].contiguous();
      e.hist_counts.assign(cr.data_ptr<int64_t>(), cr.data_ptr<int64_t>() + n_bins);
      out.push_back(std::move(e));
    }
  }
  return out;
}

std::vector<std::vector<IndexValue>> decoder_neighbours(const Sae& sae,
                                                        const std::vector<int64_t>& features,
                                                        int64_t m) {
  at::NoGradGuard no_grad;
  const at::Tensor W = sae.param("W_dec").to(at::kFloat);
  const at::Tensor Wn = W / W.norm(2, 1, true).clamp_min(1e-30);
  const int64_t d_sae = W.size(0);
  const int64_t k = std::min<int64_t>(m, d_sae - 1);
  std::vector<std::vector<IndexValue>> out;
  if (k <= 0) return std::vector<std::vector<IndexValue>>(features.size());
  for (size_t c0 = 0; c0 < features.size(); c0 += kChunk) {
    const std::vector<int64_t> chunk(features.begin() + c0,
                                     features.begin() + std::min(features.size(), c0 + kChunk));
    at::Tensor cos = selected_rows(Wn, chunk).matmul(Wn.t());  // [chunk, d_sae]
    const at::Tensor self = torch::tensor(chunk, torch::kLong).to(cos.device()).unsqueeze(1);
    cos.scatter_(1, self, -std::numeric_limits<float>::infinity());
    // topk does not order ties; sort each row's k best by (cosine desc, index asc) afterwards.
    auto rows = rows_topk(cos, k, true);
    for (auto& r : rows) {
      std::stable_sort(r.begin(), r.end(), [](const IndexValue& a, const IndexValue& b) {
        return a.value != b.value ? a.value > b.value : a.index < b.index;
      });
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::vector<std::vector<IndexValue>> top_decoder_entries(const Sae& sae,
                                                         const std::vector<int64_t>& features,
                                                         int64_t n) {
  at::NoGradGuard no_grad;
  const at::Tensor dec = selected_rows(sae.param("W_dec"), features).to(at::kFloat).cpu();
  auto rows = rows_topk(dec.abs(), n, true);
  const auto d = dec.accessor<float, 2>();
  for (size_t r = 0; r < rows.size(); ++r)
    for (auto& e : rows[r]) e.value = d[r][e.index];
  return rows;
}

ProbeCosines probe_cosines(const Sae& sae, const std::vector<int64_t>& features,
                           const at::Tensor& probe) {
  at::NoGradGuard no_grad;
  const int64_t d_in = sae.cfg().d_in;
  if (probe.dim() != 3 || probe.size(0) != d_in || probe.size(1) != 8 || probe.size(2) != 8)
    fail("probe: expected a tensor [d_in = {}, 8, 8] of square directions, got {} dimensions", d_in,
         probe.dim());
  const at::Tensor P = probe.to(at::kFloat).cpu().reshape({d_in, 64});
  const at::Tensor Pn = P / P.norm(2, 0, true).clamp_min(1e-30);
  auto cos_with = [&](const at::Tensor& rows) {  // rows [nF, d_in]
    const at::Tensor rn = rows / rows.norm(2, 1, true).clamp_min(1e-30);
    return rn.matmul(Pn);
  };
  ProbeCosines c;
  const at::Tensor idx = torch::tensor(features, torch::kLong);
  c.input = cos_with(sae.param("W_enc").to(at::kFloat).cpu().index_select(1, idx).t());
  c.output = cos_with(sae.param("W_dec").to(at::kFloat).cpu().index_select(0, idx));
  return c;
}

}  // namespace saelab::vis
