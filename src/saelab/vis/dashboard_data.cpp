// The feature-centric data of `saelab vis` (dashboard_data.h): the dataset read as `saelab eval`
// reads it, the latents chosen, one streaming pass, then the contract JSON assembled.
#include "saelab/vis/dashboard_data.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/core/torch_pickle.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"
#include "saelab/eval/evaluator.h"
#include "saelab/log/progress.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"
#include "saelab/vis/dashboard_common.h"
#include "saelab/vis/loss_effects.h"

namespace saelab::vis {
namespace {

// Correlation candidates per latent: its nearest latents by decoder cosine (at least this many,
// so that a small SAE correlates every pair).
constexpr int64_t kCorrelationCandidates = 32;
// Up to this many (selected, other) latent pairs the correlations run over every latent (the
// product costs tokens × pairs per pass); beyond, over the kCorrelationCandidates decoder-nearest.
constexpr int64_t kAllCorrelationPairs = int64_t(1) << 22;

// Windows of the dataset, --batch-size-prompts at a time, up to --n-prompts, each checked against
// the model's vocabulary. Kept (on the CPU) for the page's contexts and Othello boards.
class BatchReader {
 public:
  BatchReader(const VisOptions& o, const VisModel& m, int64_t ctx) : o_(o), ctx_(ctx) {
    TokenSourceOptions to;
    to.dataset_path = o.dataset;
    to.dataset_column = o.dataset_column;
    to.dataset_split = o.dataset_split;
    to.dataset_revision = o.dataset_revision;
    to.context_size = ctx;
    to.prepend_bos = m.sae->cfg().prepend_bos;
    to.bos_id = m.tok ? m.tok->bos_token_id() : m.lm.cfg.bos_token_id;
    to.tokenizer = m.tok;
    to.seed = o.seed;
    src_ = open_token_source(to);
    d_vocab_ = m.lm.cfg.d_vocab;
  }

  at::Tensor next() {
    const int64_t want = std::min(o_.batch_size_prompts, o_.n_prompts - read_);
    if (want <= 0) return {};
    std::vector<int64_t> ids, window;
    int64_t rows = 0;
    while (rows < want && src_->next(window)) {
      if (int64_t(window.size()) != ctx_)
        fail("{}: a token window has {} ids, expected --context-size = {}", o_.dataset,
             window.size(), ctx_);
      for (size_t p = 0; p < window.size(); ++p)
        if (window[p] < 0 || window[p] >= d_vocab_)
          fail(
              "{}: token id {} (window {}, position {}) is outside the vocabulary of model '{}' "
              "(d_vocab = {}): the dataset does not match the model",
              o_.dataset, window[p], read_ + rows, p, o_.model, d_vocab_);
      ids.insert(ids.end(), window.begin(), window.end());
      ++rows;
    }
    if (rows == 0) {
      if (read_ == 0)
        fail("{}: no token window of --context-size = {} could be read", o_.dataset, ctx_);
      return {};
    }
    read_ += rows;
    at::Tensor t = torch::tensor(ids, torch::kLong).reshape({rows, ctx_});
    kept_.push_back(t);
    return t;
  }

  const std::vector<at::Tensor>& kept() const { return kept_; }

 private:
  const VisOptions& o_;
  int64_t ctx_;
  int64_t d_vocab_ = 0;
  int64_t read_ = 0;
  std::unique_ptr<TokenSource> src_;
  std::vector<at::Tensor> kept_;
};

// --select density: the n latents firing most often (fires [d_sae], over the whole pass), among
// those that fire at all.
std::vector<int64_t> select_by_density(const at::Tensor& fires, int64_t n) {
  const at::Tensor order = std::get<1>(fires.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  std::vector<int64_t> out;
  for (int64_t i = 0; i < order.size(0) && int64_t(out.size()) < n; ++i) {
    const int64_t f = order[i].item<int64_t>();
    if (fires[f].item<int64_t>() == 0) break;
    out.push_back(f);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// fires: every latent's firing count over the pass's counted positions (--select density only).
std::vector<int64_t> choose_features(const VisOptions& o, int64_t d_sae, const at::Tensor& fires) {
  if (!o.features.empty()) return o.features;
  if (o.select == "all") {
    std::vector<int64_t> f(d_sae);
    std::iota(f.begin(), f.end(), 0);
    return f;
  }
  if (o.n_features <= 0) fail("--n-features: expected a positive number, got {}", o.n_features);
  if (o.select == "random") {
    std::vector<int64_t> f(d_sae);
    std::iota(f.begin(), f.end(), 0);
    std::mt19937_64 rng(o.seed);
    std::shuffle(f.begin(), f.end(), rng);
    f.resize(std::min<int64_t>(o.n_features, d_sae));
    std::sort(f.begin(), f.end());
    return f;
  }
  if (o.select == "density") {
    auto f = select_by_density(fires, o.n_features);
    if (f.empty())
      fail("--select density: no latent of the SAE fired on the {} windows read", o.n_prompts);
    return f;
  }
  fail("--select: expected density, random or all, got '{}'", o.select);
}

json histogram_json(const FeatureSummary& s) {
  return {{"bin_edges", s.bin_edges}, {"counts", s.counts}};
}

json summary_json(const FeatureSummary& s) {
  json top = json::array(), bands = json::array(), corr = json::array();
  for (const auto& e : s.top_examples) top.push_back(example_json(e));
  for (const auto& b : s.bands) {
    json ex = json::array();
    for (const auto& e : b.examples) ex.push_back(example_json(e));
    bands.push_back({{"lo", b.lo}, {"hi", b.hi}, {"count", b.count}, {"examples", ex}});
  }
  for (const auto& c : s.correlated) corr.push_back({{"index", c.index}, {"corr", c.corr}});
  return {{"index", s.index},       {"density", s.density},     {"max_act", s.max_act},
          {"mean_act", s.mean_act}, {"fires", s.fires},         {"histogram", histogram_json(s)},
          {"top_examples", top},    {"quantile_groups", bands}, {"correlated", corr}};
}

// Each top example's "loss_effect" (loss_effects.h; null at a window's last position), grouped by
// prompt so that each prompt runs clean once. Above `limit` examples in all, every one is null and
// stats["loss_effects"] says why.
void add_top_example_loss_effects(const Transformer& model, const Sae& sae, const std::string& hook,
                                  const std::vector<at::Tensor>& windows,
                                  const std::vector<FeatureSummary>& sums, int64_t limit,
                                  std::vector<json>& records, json& stats) {
  int64_t n = 0;
  for (size_t i = 0; i < sums.size(); ++i) {
    n += int64_t(sums[i].top_examples.size());
    for (auto& e : records[i]["top_examples"]) e["loss_effect"] = nullptr;
  }
  if (n > limit) {
    stats["loss_effects"] = fmt::format(
        "not computed: {} top examples exceed --loss-effect-limit {} (one forward each)", n, limit);
    return;
  }
  // (feature, example) of every top example, by prompt.
  std::map<int64_t, std::vector<std::pair<size_t, size_t>>> by_prompt;
  for (size_t i = 0; i < sums.size(); ++i)
    for (size_t k = 0; k < sums[i].top_examples.size(); ++k)
      by_prompt[sums[i].top_examples[k].prompt].push_back({i, k});
  int64_t base = 0;
  for (const at::Tensor& batch : windows) {
    for (int64_t r = 0; r < batch.size(0); ++r) {
      auto it = by_prompt.find(base + r);
      if (it == by_prompt.end()) continue;
      std::vector<LatentAblation> ablations;
      for (auto [i, k] : it->second) {
        const FeatureExample& e = sums[i].top_examples[k];
        ablations.push_back({sums[i].index, e.position, e.act});
      }
      const auto loss = ablation_loss_effects(model, sae, hook, batch[r], ablations);
      for (size_t a = 0; a < loss.size(); ++a) {
        auto [i, k] = it->second[a];
        if (loss[a]) records[i]["top_examples"][k]["loss_effect"] = *loss[a];
      }
    }
    base += batch.size(0);
  }
  stats["loss_effects"] = "computed";
}

// The named board-state probes of --probe: [d_in, 8, 8] each.
std::map<std::string, at::Tensor> read_probes(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    fail("--probe {}: not a file (expected safetensors or a torch .pt of [d_in, 8, 8] probes)",
         path);
  const bool st = path.size() > 12 && path.substr(path.size() - 12) == ".safetensors";
  auto all = st ? load_safetensors(path) : load_torch_state_dict(path);
  if (all.empty()) fail("--probe {}: no tensors in the file", path);
  return all;
}

}  // namespace

DashboardData build_feature_dashboard(const VisOptions& o) {
  if (o.n_prompts <= 0) fail("--n-prompts: expected a positive number, got {}", o.n_prompts);
  if (o.batch_size_prompts <= 0)
    fail("--batch-size-prompts: expected a positive number, got {}", o.batch_size_prompts);
  if (o.context_size <= 0)
    fail("--context-size: expected a positive number, got {}", o.context_size);
  if (o.loss_effect_limit < 0)
    fail("--loss-effect-limit: expected a number of examples >= 0, got {}", o.loss_effect_limit);
  VisModel m = load_vis_model(o);
  const Transformer& model = *m.lm.model;
  const Sae& sae = *m.sae;
  const int64_t d_sae = sae.cfg().d_sae;
  for (int64_t f : o.features)
    if (f < 0 || f >= d_sae)
      fail("--features: index {} is out of range: SAE {} has d_sae = {} latents (0..{})", f,
           o.sae_dir, d_sae, d_sae - 1);
  const int64_t ctx =
      m.othello ? std::min<int64_t>(o.context_size, m.lm.cfg.n_ctx) : o.context_size;
  if (ctx > m.lm.cfg.n_ctx)
    fail("--context-size: {} is longer than the n_ctx = {} of model '{}'", ctx, m.lm.cfg.n_ctx,
         o.model);
  std::map<std::string, at::Tensor> probes;
  if (!o.probe.empty()) probes = read_probes(o.probe);

  BatchReader reader(o, m, ctx);
  DashboardData out;
  FeatureStatsOptions fo;
  fo.top_k = o.top_k;
  fo.quantile_groups = o.quantile_groups;
  fo.examples_per_group = o.examples_per_group;
  fo.window = o.window;
  fo.seqpos_start = o.seqpos_start;
  fo.seqpos_stop = o.seqpos_stop;
  fo.seed = o.seed;
  if (!o.include_special_tokens) {
    fo.exclude_token_ids =
        special_token_ids(m.lm.cfg, m.tok ? m.tok->pad_token_id() : std::nullopt);
    if (m.tok)
      for (auto id : {m.tok->bos_token_id(), m.tok->eos_token_id()})
        if (id && std::find(fo.exclude_token_ids.begin(), fo.exclude_token_ids.end(), *id) ==
                      fo.exclude_token_ids.end())
          fo.exclude_token_ids.push_back(*id);
  }

  // --select density: every latent's firing count over the counted positions of all the windows,
  // from a first pass over them (the model to the hook and the encode, timed with the rest); the
  // statistics pass then reads the same windows again.
  const bool density = o.features.empty() && o.select == "density";
  at::Tensor fires;
  if (density) {
    if (o.n_features <= 0) fail("--n-features: expected a positive number, got {}", o.n_features);
    fires = torch::zeros({d_sae}, torch::kLong);
    at::NoGradGuard ng;
    for (at::Tensor t = reader.next(); t.defined(); t = reader.next()) {
      const auto t0 = std::chrono::steady_clock::now();
      const at::Tensor x = sae_input_at_hook(model, sae, m.hook, m.head, t);
      const auto t1 = std::chrono::steady_clock::now();
      const at::Tensor acts = sae.encode(x.to(sae.param("W_dec").device()));
      out.timing.forward_s += std::chrono::duration<double>(t1 - t0).count();
      out.timing.encode_s +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      const at::Tensor counted = counted_positions(t, fo).to(acts.device()).unsqueeze(-1);
      fires += acts.gt(0).logical_and(counted).sum(at::IntArrayRef{0, 1}).cpu();
    }
  }
  const std::vector<int64_t> features = choose_features(o, d_sae, fires);
  fo.features = features;
  FeatureStatsAccumulator acc(d_sae, fo);
  const bool correlate_all = int64_t(features.size()) * d_sae <= kAllCorrelationPairs;
  if (correlate_all) {
    acc.set_correlate_with_all();
  } else {
    const auto nbrs =
        decoder_neighbours(sae, features, std::max(kCorrelationCandidates, o.n_correlated));
    const int64_t M = nbrs.empty() ? 0 : int64_t(nbrs[0].size());
    at::Tensor cand = torch::empty({int64_t(features.size()), M}, torch::kLong);
    for (size_t i = 0; i < nbrs.size(); ++i)
      for (int64_t k = 0; k < M; ++k) cand[i][k] = nbrs[i][k].index;
    acc.set_correlation_candidates(cand);
  }

  // Progress on stderr: every few seconds, and once at the end.
  const auto t_start = std::chrono::steady_clock::now();
  auto last = t_start;
  const int64_t total = o.n_prompts * ctx;
  auto progress = [&](int64_t done, bool final) {
    const auto now = std::chrono::steady_clock::now();
    if (!o.progress || (!final && now - last < std::chrono::seconds(5))) return;
    last = now;
    const double s = std::chrono::duration<double>(now - t_start).count();
    std::fprintf(
        stderr, "vis: %s/%s tokens  %s tok/s  ETA %s\n", format_count(double(done)).c_str(),
        format_count(double(total)).c_str(), format_count(done / std::max(s, 1e-9)).c_str(),
        final ? "0:00" : format_duration(s / std::max<double>(done, 1) * (total - done)).c_str());
  };
  size_t replayed = 0;  // after a density pass: its windows again
  auto next = [&]() -> at::Tensor {
    if (!density) return reader.next();
    return replayed < reader.kept().size() ? reader.kept()[replayed++] : at::Tensor();
  };
  FeaturePassTiming rest = run_feature_pass(model, sae, m.hook, m.head, next, acc,
                                            [&](int64_t done) { progress(done, false); });
  progress(acc.n_prompts() * ctx, true);
  out.timing.forward_s += rest.forward_s;
  out.timing.encode_s += rest.encode_s;
  out.timing.stats_s += rest.stats_s;

  const auto sums = acc.summaries(o.n_correlated);
  std::vector<json> records;
  for (const auto& s : sums) records.push_back(summary_json(s));
  {
    const auto t0 = std::chrono::steady_clock::now();
    add_top_example_loss_effects(model, sae, m.hook, reader.kept(), sums, o.loss_effect_limit,
                                 records, out.stats);
    out.loss_effects_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  add_weight_parts(m, features, o, records);

  json page = json::object();
  if (!probes.empty()) {
    for (const auto& [name, t] : probes) {
      const ProbeCosines c = probe_cosines(sae, features, t);
      for (size_t i = 0; i < features.size(); ++i) {
        auto vec = [](const at::Tensor& row) {
          const at::Tensor r = row.to(at::kDouble).contiguous();
          return std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
        };
        records[i]["probes"][name] = {{"input", vec(c.input[i])}, {"output", vec(c.output[i])}};
      }
    }
  }

  // The strings of every token the page shows, and the windows the examples come from.
  std::set<int64_t> ids, prompts;
  for (const auto& s : sums) {
    auto note = [&](const FeatureExample& e) {
      prompts.insert(e.prompt);
      ids.insert(e.token_ids.begin(), e.token_ids.end());
    };
    for (const auto& e : s.top_examples) note(e);
    for (const auto& b : s.bands)
      for (const auto& e : b.examples) note(e);
  }
  for (const auto& r : records)
    for (const char* k : {"top_logits", "bottom_logits"})
      for (const auto& e : r[k]) ids.insert(e["token_id"].get<int64_t>());
  json vocab = json::object(), pj = json::object();
  for (int64_t id : ids) vocab[std::to_string(id)] = token_string(m, id);
  int64_t base = 0;
  for (const auto& t : reader.kept()) {
    for (int64_t r = 0; r < t.size(0); ++r)
      if (prompts.count(base + r)) {
        const at::Tensor row = t[r].contiguous();
        std::vector<int64_t> v(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
        if (m.othello) ids.insert(v.begin(), v.end());
        pj[std::to_string(base + r)] = v;
      }
    base += t.size(0);
  }
  if (m.othello)
    for (int64_t id : ids) vocab[std::to_string(id)] = token_string(m, id);
  page["vocab"] = vocab;
  page["prompts"] = pj;
  page["othello"] = m.othello;

  json& st = out.stats;
  st["n_tokens"] = acc.n_tokens();
  st["n_prompts"] = acc.n_prompts();
  st["context_size"] = ctx;
  st["sae"] = o.sae_dir;
  st["model"] = o.model;
  st["dataset"] = o.dataset;
  st["hook_name"] = m.hook;
  st["d_sae"] = d_sae;
  st["excluded_token_ids"] = fo.exclude_token_ids;
  st["correlated_over"] = correlate_all
                              ? std::string("all latents")
                              : fmt::format("the {} decoder-nearest latents",
                                            std::max(kCorrelationCandidates, o.n_correlated));
  st["features"] = records;
  out.page = std::move(page);
  return out;
}

}  // namespace saelab::vis
