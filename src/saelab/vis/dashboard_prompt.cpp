// The prompt-centric view of `saelab vis --prompt` (dashboard_data.h): the prompt's latents token
// by token, ranked at one position by activation, by where that activation falls in the latent's
// distribution (from a previous --json pass), and by the loss effect of removing the latent there.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "saelab/core/error.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"
#include "saelab/vis/dashboard_common.h"
#include "saelab/vis/dashboard_data.h"
#include "saelab/vis/loss_effects.h"

namespace saelab::vis {
namespace {

// f[k] by reference, or an empty array when absent (json::value would copy the whole list).
const json& list_at(const json& f, const char* k) {
  static const json empty = json::array();
  return f.contains(k) ? f.at(k) : empty;
}

constexpr int64_t kPerToken = 8;  // latents listed per token
constexpr int64_t kRanked = 25;   // latents ranked at the chosen position

json read_stats(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    fail("--json {}: cannot read the statistics of a previous `saelab vis --json` pass", path);
  json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    fail("--json {}: not JSON ({})", path, e.what());
  }
  if (!j.is_object() || !j.contains("features") || !j["features"].is_array())
    fail("--json {}: expected the object `saelab vis --json` writes, with a \"features\" list",
         path);
  return j;
}

// Fraction of the latent's firing activations <= act, from its histogram (linear within a bin).
std::optional<double> quantile_of(const json& rec, double act) {
  if (!rec.contains("histogram")) return std::nullopt;
  const auto& edges = rec["histogram"]["bin_edges"];
  const auto& counts = rec["histogram"]["counts"];
  if (counts.empty()) return std::nullopt;
  double total = 0, below = 0;
  for (const auto& c : counts) total += c.get<double>();
  if (total <= 0) return std::nullopt;
  for (size_t b = 0; b < counts.size(); ++b) {
    const double lo = edges[b].get<double>(), hi = edges[b + 1].get<double>();
    const double c = counts[b].get<double>();
    if (act >= hi)
      below += c;
    else if (act > lo)
      below += c * (act - lo) / (hi - lo);
  }
  return below / total;
}

}  // namespace

json build_prompt_view(const VisOptions& o) {
  VisModel m = load_vis_model(o);
  const Transformer& model = *m.lm.model;
  const Sae& sae = *m.sae;
  if (!m.tok)
    fail(
        "--prompt: model '{}' has no tokenizer files in {} (tokenizer.json, vocab.json + "
        "merges.txt, or tokenizer.model)",
        o.model, m.lm.dir);
  const std::vector<int64_t> ids = to_tokens(*m.tok, o.prompt, sae.cfg().prepend_bos);
  const int64_t T = int64_t(ids.size());
  if (T == 0) fail("--prompt: the prompt has no tokens");
  if (T > m.lm.cfg.n_ctx)
    fail("--prompt: {} tokens is longer than the n_ctx = {} of model '{}'", T, m.lm.cfg.n_ctx,
         o.model);
  int64_t P = o.position.value_or(T - 1);
  if (P < 0) P += T;
  if (P < 0 || P >= T)
    fail("--position: {} is out of range for the prompt's {} tokens (0..{}, or -1..-{})",
         *o.position, T, T - 1, T);

  at::NoGradGuard no_grad;
  const at::Device dev = model.device();
  const at::Tensor tokens = torch::tensor(ids, torch::kLong).unsqueeze(0).to(dev);
  const at::Tensor x = sae_input_at_hook(model, sae, m.hook, m.head, tokens);
  const at::Tensor acts =
      sae.encode(x.to(sae.param("W_dec").device()))[0].to(at::kFloat).cpu();  // [T, d_sae]

  json view = {{"kind", "prompt"}, {"prompt", o.prompt},  {"token_ids", ids},
               {"position", P},    {"hook_name", m.hook}, {"model", o.model}};
  json strs = json::array();
  for (int64_t id : ids) strs.push_back(token_string(m, id));
  view["tokens"] = strs;

  json per = json::array();
  double max_act = 0;
  for (int64_t t = 0; t < T; ++t) {
    auto [v, i] = acts[t].topk(std::min<int64_t>(kPerToken, acts.size(1)));
    json row = json::array();
    for (int64_t k = 0; k < v.size(0); ++k)
      if (v[k].item<float>() > 0)
        row.push_back({{"index", i[k].item<int64_t>()}, {"act", double(v[k].item<float>())}});
    if (!row.empty()) max_act = std::max(max_act, row[0]["act"].get<double>());
    per.push_back(row);
  }
  view["per_token"] = per;
  view["max_act"] = max_act;

  // The ranked latents at P.
  auto [v, idx] = acts[P].topk(std::min<int64_t>(kRanked, acts.size(1)));
  std::vector<int64_t> feats;
  std::vector<double> fa;
  for (int64_t k = 0; k < v.size(0); ++k)
    if (v[k].item<float>() > 0) {
      feats.push_back(idx[k].item<int64_t>());
      fa.push_back(v[k].item<float>());
    }

  // Loss effect of each ranked latent at P (loss_effects.h).
  std::vector<LatentAblation> ablations;
  for (size_t k = 0; k < feats.size(); ++k) ablations.push_back({feats[k], P, fa[k]});
  const std::vector<std::optional<double>> loss =
      ablation_loss_effects(model, sae, m.hook, tokens[0], ablations);

  std::map<int64_t, json> stats;
  if (!o.stats_json.empty()) {
    json st = read_stats(o.stats_json);
    for (const auto& r : st["features"]) stats[r.at("index").get<int64_t>()] = r;
  }
  json ranked = json::array();
  for (size_t k = 0; k < feats.size(); ++k) {
    json e = {{"index", feats[k]}, {"act", fa[k]}};
    std::optional<double> q;
    if (stats.count(feats[k])) q = quantile_of(stats[feats[k]], fa[k]);
    e["quantile"] = q ? json(*q) : json(nullptr);
    e["loss_effect"] = loss[k] ? json(*loss[k]) : json(nullptr);
    ranked.push_back(e);
  }
  view["ranked"] = ranked;

  // Cards: every latent listed anywhere on the page.
  std::set<int64_t> listed(feats.begin(), feats.end());
  for (const auto& row : per)
    for (const auto& e : row) listed.insert(e["index"].get<int64_t>());
  std::vector<int64_t> card_feats(listed.begin(), listed.end());
  std::vector<json> records;
  for (int64_t f : card_feats) {
    json r = stats.count(f) ? stats[f] : json{{"index", f}};
    r.erase("neighbours");  // recomputed from the weights
    records.push_back(r);
  }
  if (!card_feats.empty()) add_weight_parts(m, card_feats, o, records);
  std::set<int64_t> used(ids.begin(), ids.end());
  for (const auto& r : records) {
    for (const char* k : {"top_logits", "bottom_logits"})
      if (r.contains(k))
        for (const auto& e : r[k]) used.insert(e["token_id"].get<int64_t>());
    auto note = [&](const json& e) {
      for (const auto& id : e["token_ids"]) used.insert(id.get<int64_t>());
    };
    for (const auto& e : list_at(r, "top_examples")) note(e);
    for (const auto& b : list_at(r, "quantile_groups"))
      for (const auto& e : b["examples"]) note(e);
  }
  json vocab = json::object();
  for (int64_t id : used) vocab[std::to_string(id)] = token_string(m, id);
  view["vocab"] = vocab;
  view["features"] = records;
  return view;
}

}  // namespace saelab::vis
