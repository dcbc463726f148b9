// The streaming feature-statistics pass (feature_stats.h). Dense work per batch stays in tensor ops
// on the acts' device (row selection, batch max, the non-zero entries, bincounts); only the few
// entries that can enter a top-k heap or a band sample come to the CPU, with their context windows.
#include "saelab/eval/feature_stats.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_set>

#include "saelab/core/error.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab {
namespace {

// The smallest power of two >= v (v > 0), exactly.
double pow2_ceil(double v) {
  int e = 0;
  const double m = std::frexp(v, &e);  // v = m 2^e, m in [0.5, 1)
  return m == 0.5 ? v : std::ldexp(1.0, e);
}

// Top-k order: larger act first; ties by smaller prompt, then smaller position.
bool better(const FeatureExample& a, const FeatureExample& b) {
  if (a.act != b.act) return a.act > b.act;
  if (a.prompt != b.prompt) return a.prompt < b.prompt;
  return a.position < b.position;
}

struct Keyed {
  double key;
  FeatureExample ex;
};
bool key_less(const Keyed& a, const Keyed& b) { return a.key < b.key; }

// Python's slice bounds on a length-T axis.
std::pair<int64_t, int64_t> slice_bounds(std::optional<int64_t> a, std::optional<int64_t> b,
                                         int64_t T) {
  auto norm = [T](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + T : i, 0, T); };
  const int64_t lo = a ? norm(*a) : 0, hi = b ? norm(*b) : T;
  return {lo, std::max(lo, hi)};
}

}  // namespace

at::Tensor counted_positions(const at::Tensor& tokens_in, const FeatureStatsOptions& o) {
  const at::Tensor tokens = tokens_in.to(at::kCPU).to(at::kLong);
  const int64_t T = tokens.size(1);
  at::Tensor mask = torch::ones(tokens.sizes(), torch::kBool);
  for (int64_t id : o.exclude_token_ids) mask.logical_and_(tokens.ne(id));
  auto [lo, hi] = slice_bounds(o.seqpos_start, o.seqpos_stop, T);
  mask.slice(1, 0, lo).fill_(false);
  mask.slice(1, hi, T).fill_(false);
  return mask;
}

struct FeatureStatsAccumulator::State {
  int64_t d_sae = 0, nF = 0;
  FeatureStatsOptions o;
  bool all = false;  // the selection is 0..d_sae-1 in order: no column selection needed
  at::Tensor feat;   // [nF] int64 CPU
  int64_t n_tokens = 0, n_prompts = 0;
  std::vector<int64_t> fires, hist, band_count;
  std::vector<double> sum, maxv, range;
  std::vector<std::vector<FeatureExample>> top;  // heaps, worst on top
  std::vector<std::vector<Keyed>> bands;         // [nF * G] heaps, largest key on top
  std::vector<double> thr, keythr;
  at::Tensor cand, cross, s1, s2;  // correlation candidates [nF, M], Σ a_i a_j, Σ a, Σ a²
  bool cand_all = false;           // cand is every latent: cross by a matrix product
  at::Generator gen;

  int64_t G() const { return o.quantile_groups; }

  // Raises feature j's range to at least `need`, merging bins and bands pairwise per doubling.
  void grow_range(int64_t j, double need) {
    if (range[j] == 0) {
      range[j] = pow2_ceil(need);
      return;
    }
    const int64_t nb = o.n_bins, g = G();
    while (range[j] < need) {
      int64_t* h = &hist[j * nb];
      for (int64_t i = 0; i < nb; ++i)
        h[i] = (2 * i < nb ? h[2 * i] : 0) + (2 * i + 1 < nb ? h[2 * i + 1] : 0);
      int64_t* c = &band_count[j * g];
      for (int64_t i = 0; i < g; ++i) {
        c[i] = (2 * i < g ? c[2 * i] : 0) + (2 * i + 1 < g ? c[2 * i + 1] : 0);
        std::vector<Keyed> merged;
        for (int64_t src : {2 * i, 2 * i + 1})
          if (src < g) {
            auto& from = bands[j * g + src];
            merged.insert(merged.end(), std::make_move_iterator(from.begin()),
                          std::make_move_iterator(from.end()));
            from.clear();
          }
        std::sort(merged.begin(), merged.end(), key_less);
        if (int64_t(merged.size()) > o.examples_per_group) merged.resize(o.examples_per_group);
        std::make_heap(merged.begin(), merged.end(), key_less);
        bands[j * g + i] = std::move(merged);
      }
      range[j] *= 2;
    }
    for (int64_t i = 0; i < g; ++i) update_keythr(j * g + i);
  }

  void update_keythr(int64_t slot) {
    const auto& b = bands[slot];
    keythr[slot] = int64_t(b.size()) >= o.examples_per_group ? b.front().key : 2.0;
  }

  void add_top(int64_t j, FeatureExample ex) {
    auto& h = top[j];
    if (int64_t(h.size()) < o.top_k) {
      h.push_back(std::move(ex));
      std::push_heap(h.begin(), h.end(), better);
    } else if (better(ex, h.front())) {
      std::pop_heap(h.begin(), h.end(), better);
      h.back() = std::move(ex);
      std::push_heap(h.begin(), h.end(), better);
    }
    thr[j] = int64_t(h.size()) >= o.top_k ? h.front().act : 0.0;
  }

  void add_band(int64_t slot, double key, FeatureExample ex) {
    auto& h = bands[slot];
    if (int64_t(h.size()) < o.examples_per_group) {
      h.push_back({key, std::move(ex)});
      std::push_heap(h.begin(), h.end(), key_less);
    } else if (key < h.front().key) {
      std::pop_heap(h.begin(), h.end(), key_less);
      h.back() = {key, std::move(ex)};
      std::push_heap(h.begin(), h.end(), key_less);
    }
    update_keythr(slot);
  }
};

FeatureStatsAccumulator::FeatureStatsAccumulator(int64_t d_sae, FeatureStatsOptions opts)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.d_sae = d_sae;
  s.o = std::move(opts);
  const auto& o = s.o;
  if (o.features.empty()) fail("features: expected at least one latent to describe");
  std::unordered_set<int64_t> seen;
  for (int64_t f : o.features) {
    if (f < 0 || f >= d_sae)
      fail("feature index {} is out of range: the SAE has d_sae = {} latents (0..{})", f, d_sae,
           d_sae - 1);
    if (!seen.insert(f).second) fail("feature index {} is listed twice", f);
  }
  if (o.top_k < 0) fail("--top-k: expected a number >= 0, got {}", o.top_k);
  if (o.quantile_groups <= 0)
    fail("--quantile-groups: expected a positive number, got {}", o.quantile_groups);
  if (o.examples_per_group < 0)
    fail("--examples-per-group: expected a number >= 0, got {}", o.examples_per_group);
  if (o.window < 0) fail("--window: expected a number >= 0, got {}", o.window);
  if (o.n_bins <= 0) fail("histogram bins: expected a positive number, got {}", o.n_bins);
  s.nF = int64_t(o.features.size());
  s.all = s.nF == d_sae;
  for (int64_t i = 0; s.all && i < s.nF; ++i) s.all = o.features[i] == i;
  s.feat = torch::tensor(o.features, torch::kLong);
  const int64_t nF = s.nF;
  s.fires.assign(nF, 0);
  s.hist.assign(nF * o.n_bins, 0);
  s.band_count.assign(nF * o.quantile_groups, 0);
  s.sum.assign(nF, 0);
  s.maxv.assign(nF, 0);
  s.range.assign(nF, 0);
  s.top.resize(nF);
  s.bands.resize(nF * o.quantile_groups);
  s.thr.assign(nF, 0.0);
  s.keythr.assign(nF * o.quantile_groups, 2.0);
  s.gen = at::detail::createCPUGenerator(o.seed);
}

FeatureStatsAccumulator::~FeatureStatsAccumulator() = default;
FeatureStatsAccumulator::FeatureStatsAccumulator(FeatureStatsAccumulator&&) noexcept = default;

int64_t FeatureStatsAccumulator::n_tokens() const { return s_->n_tokens; }
int64_t FeatureStatsAccumulator::n_prompts() const { return s_->n_prompts; }
const FeatureStatsOptions& FeatureStatsAccumulator::options() const { return s_->o; }

void FeatureStatsAccumulator::set_correlation_candidates(const at::Tensor& candidates) {
  State& s = *s_;
  if (s.n_prompts > 0) fail("correlation candidates: set them before the first batch");
  if (candidates.dim() != 2 || candidates.size(0) != s.nF)
    fail("correlation candidates: expected [{}, M] latent indices", s.nF);
  at::Tensor c = candidates.to(at::kLong).cpu().contiguous();
  if (c.numel() > 0 && (c.min().item<int64_t>() < 0 || c.max().item<int64_t>() >= s.d_sae))
    fail("correlation candidates: indices must lie in [0, {})", s.d_sae);
  s.cand = c;
  s.cross = torch::zeros({s.nF, c.size(1)}, torch::kDouble);
  s.s1 = torch::zeros({s.d_sae}, torch::kDouble);
  s.s2 = torch::zeros({s.d_sae}, torch::kDouble);
}

void FeatureStatsAccumulator::set_correlate_with_all() {
  State& s = *s_;
  set_correlation_candidates(torch::arange(s.d_sae, torch::kLong).unsqueeze(0).expand({s.nF, -1}));
  s.cand_all = true;
}

void FeatureStatsAccumulator::add_batch(const at::Tensor& tokens_in, const at::Tensor& acts) {
  State& s = *s_;
  const auto& o = s.o;
  if (tokens_in.dim() != 2 || acts.dim() != 3 || acts.size(0) != tokens_in.size(0) ||
      acts.size(1) != tokens_in.size(1) || acts.size(2) != s.d_sae)
    fail("feature statistics: expected tokens [B, T] and acts [B, T, {}]", s.d_sae);
  at::NoGradGuard no_grad;
  const int64_t B = tokens_in.size(0), T = tokens_in.size(1), nF = s.nF, D = s.d_sae;
  const int64_t nb = o.n_bins, G = o.quantile_groups, W = 2 * o.window + 1;
  const at::Device dev = acts.device();
  const auto dbl = torch::TensorOptions().dtype(torch::kDouble).device(dev);
  const at::Tensor tokens = tokens_in.to(at::kCPU).to(at::kLong).contiguous();
  const int64_t prompt0 = s.n_prompts;
  s.n_prompts += B;

  const at::Tensor mask = counted_positions(tokens, o);
  const at::Tensor rows = mask.flatten().nonzero().squeeze(1);  // counted rows b*T + t
  const int64_t Nc = rows.numel();
  s.n_tokens += Nc;
  if (Nc == 0) return;

  const at::Tensor flat = acts.reshape({B * T, D});
  const at::Tensor rows_d = rows.to(dev);
  const at::Tensor feat_d = s.feat.to(dev);
  const at::Tensor Afull = flat.index_select(0, rows_d);                            // [Nc, D]
  const at::Tensor A = s.all ? Afull : Afull.index_select(1, feat_d).contiguous();  // [Nc, nF]
  if (s.cand.defined()) {
    s.s1 += Afull.sum(0, false, at::kDouble).cpu();
    s.s2 += (Afull * Afull).sum(0, false, at::kDouble).cpu();
  }

  // Ranges first, so that this batch's entries are binned on the final grid of this batch.
  const at::Tensor bmax = A.amax(0).to(at::kDouble).cpu().contiguous();
  const double* bm = bmax.data_ptr<double>();
  for (int64_t j = 0; j < nF; ++j)
    if (bm[j] > 0) {
      s.maxv[j] = std::max(s.maxv[j], bm[j]);
      if (bm[j] > s.range[j]) s.grow_range(j, bm[j]);
    }

  const at::Tensor nz = A.gt(0).nonzero();  // [nnz, 2]: (row in A, latent slot), row-major
  const int64_t nnz = nz.size(0);
  if (nnz == 0) return;
  const at::Tensor r = nz.select(1, 0).contiguous(), j = nz.select(1, 1).contiguous();
  const at::Tensor vd = A.reshape(-1).index_select(0, r * nF + j).to(at::kDouble);
  {
    const at::Tensor f = torch::bincount(j, {}, nF).cpu();
    const at::Tensor sm = torch::zeros({nF}, dbl).index_add_(0, j, vd).cpu();
    const int64_t* fp = f.data_ptr<int64_t>();
    const double* sp = sm.data_ptr<double>();
    for (int64_t i = 0; i < nF; ++i) s.fires[i] += fp[i], s.sum[i] += sp[i];
  }
  const at::Tensor u = vd / torch::tensor(s.range, torch::kDouble).to(dev).index_select(0, j);
  const at::Tensor bin = (u * double(nb)).floor().to(at::kLong).clamp_max(nb - 1);
  const at::Tensor band = (u * double(G)).floor().to(at::kLong).clamp_max(G - 1);
  const at::Tensor slot = j * G + band;
  {
    const at::Tensor h = torch::bincount(j * nb + bin, {}, nF * nb).cpu();
    const at::Tensor c = torch::bincount(slot, {}, nF * G).cpu();
    const int64_t* hp = h.data_ptr<int64_t>();
    const int64_t* cp = c.data_ptr<int64_t>();
    for (int64_t i = 0; i < nF * nb; ++i) s.hist[i] += hp[i];
    for (int64_t i = 0; i < nF * G; ++i) s.band_count[i] += cp[i];
  }

  if (s.cand_all) {
    // Every latent: one product over this batch's counted positions (zeros add nothing).
    s.cross += A.to(at::kDouble).t().mm(Afull.to(at::kDouble)).cpu();
  } else if (s.cand.defined() && s.cand.size(1) > 0) {
    // Σ_t a_i(t) a_c(t) over the positions where a_i > 0 (elsewhere the product is 0).
    const at::Tensor cd = s.cand.to(dev);
    const at::Tensor partners = cd.index_select(0, j);  // [nnz, M]
    const at::Tensor pa = Afull.reshape(-1).take(r.unsqueeze(1) * D + partners).to(at::kDouble);
    s.cross += torch::zeros({nF, cd.size(1)}, dbl).index_add_(0, j, pa * vd.unsqueeze(1)).cpu();
  }

  // Candidates for the top-k heaps and the band samples.
  const at::Tensor keys = torch::rand({nnz}, s.gen, torch::kDouble).to(dev);
  const at::Tensor is_top =
      o.top_k > 0 ? vd.gt(torch::tensor(s.thr, torch::kDouble).to(dev).index_select(0, j))
                  : torch::zeros({nnz}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  const at::Tensor is_band =
      o.examples_per_group > 0
          ? keys.lt(torch::tensor(s.keythr, torch::kDouble).to(dev).index_select(0, slot))
          : torch::zeros({nnz}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  const at::Tensor ci = is_top.logical_or(is_band).nonzero().squeeze(1);
  const int64_t nc = ci.numel();
  if (nc == 0) return;
  const at::Tensor orow = rows_d.index_select(0, r.index_select(0, ci));
  const at::Tensor jc = j.index_select(0, ci);
  const at::Tensor b = orow.div(T, "floor"), t = orow.remainder(T);
  const at::Tensor off =
      torch::arange(-o.window, o.window + 1, torch::dtype(torch::kLong).device(dev));
  const at::Tensor pos = (t.unsqueeze(1) + off.unsqueeze(0)).clamp(0, T - 1);
  const at::Tensor fj = s.all ? jc : feat_d.index_select(0, jc);
  const at::Tensor wacts =
      flat.reshape(-1).take((b.unsqueeze(1) * T + pos) * D + fj.unsqueeze(1)).to(at::kFloat).cpu();

  const at::Tensor c_b = b.cpu(), c_t = t.cpu(), c_j = jc.cpu();
  const at::Tensor c_v = vd.index_select(0, ci).cpu(), c_key = keys.index_select(0, ci).cpu();
  const at::Tensor c_top = is_top.index_select(0, ci).cpu(),
                   c_band = is_band.index_select(0, ci).cpu();
  const at::Tensor c_slot = slot.index_select(0, ci).cpu();
  const int64_t* pb = c_b.data_ptr<int64_t>();
  const int64_t* pt = c_t.data_ptr<int64_t>();
  const int64_t* pj = c_j.data_ptr<int64_t>();
  const int64_t* ps = c_slot.data_ptr<int64_t>();
  const double* pv = c_v.data_ptr<double>();
  const double* pk = c_key.data_ptr<double>();
  const bool* ptop = c_top.data_ptr<bool>();
  const bool* pband = c_band.data_ptr<bool>();
  const float* pw = wacts.data_ptr<float>();
  const int64_t* tok = tokens.data_ptr<int64_t>();
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t bi = pb[i], ti = pt[i];
    const int64_t start = std::max<int64_t>(0, ti - o.window);
    const int64_t stop = std::min<int64_t>(T, ti + o.window + 1);
    FeatureExample ex;
    ex.prompt = prompt0 + bi;
    ex.position = ti;
    ex.act = pv[i];
    ex.context_start = start;
    ex.token_ids.assign(tok + bi * T + start, tok + bi * T + stop);
    // Row i of wacts holds positions ti - window .. ti + window (clamped): keep the in-range ones.
    const float* row = pw + i * W + (start - (ti - o.window));
    ex.acts.assign(row, row + (stop - start));
    if (ptop[i] && pband[i]) {
      s.add_top(pj[i], ex);
      s.add_band(ps[i], pk[i], std::move(ex));
    } else if (ptop[i]) {
      s.add_top(pj[i], std::move(ex));
    } else {
      s.add_band(ps[i], pk[i], std::move(ex));
    }
  }
}

std::vector<FeatureSummary> FeatureStatsAccumulator::summaries(int64_t n_correlated) const {
  const State& s = *s_;
  const auto& o = s.o;
  const int64_t nb = o.n_bins, G = o.quantile_groups;
  const double N = double(s.n_tokens);
  std::vector<FeatureSummary> out(s.nF);
  const double* s1 = s.s1.defined() ? s.s1.data_ptr<double>() : nullptr;
  const double* s2 = s.s2.defined() ? s.s2.data_ptr<double>() : nullptr;
  for (int64_t j = 0; j < s.nF; ++j) {
    FeatureSummary& f = out[j];
    f.index = o.features[j];
    f.fires = s.fires[j];
    f.density = N > 0 ? double(f.fires) / N : 0.0;
    f.max_act = s.maxv[j];
    f.mean_act = f.fires > 0 ? s.sum[j] / double(f.fires) : 0.0;
    f.range = s.range[j];
    f.top_examples = s.top[j];
    std::sort(f.top_examples.begin(), f.top_examples.end(), better);
    if (f.fires > 0) {
      for (int64_t i = 0; i <= nb; ++i) f.bin_edges.push_back(f.range * double(i) / double(nb));
      f.counts.assign(s.hist.begin() + j * nb, s.hist.begin() + (j + 1) * nb);
      for (int64_t g = 0; g < G; ++g) {
        QuantileBand band;
        band.lo = f.range * double(g) / double(G);
        band.hi = f.range * double(g + 1) / double(G);
        band.count = s.band_count[j * G + g];
        for (const auto& k : s.bands[j * G + g]) band.examples.push_back(k.ex);
        std::sort(band.examples.begin(), band.examples.end(), better);
        f.bands.push_back(std::move(band));
      }
    }
    if (s.cand.defined() && N > 0) {
      const int64_t M = s.cand.size(1), fi = f.index;
      const int64_t* cp = s.cand.data_ptr<int64_t>() + j * M;
      const double* xp = s.cross.data_ptr<double>() + j * M;
      const double mi = s1[fi] / N, vi = s2[fi] / N - mi * mi;
      for (int64_t m = 0; m < M; ++m) {
        const int64_t c = cp[m];
        if (c == fi) continue;
        const double mc = s1[c] / N, vc = s2[c] / N - mc * mc;
        if (!(vi > 0) || !(vc > 0)) continue;  // a constant latent has no correlation
        f.correlated.push_back({c, (xp[m] / N - mi * mc) / std::sqrt(vi * vc)});
      }
      std::sort(f.correlated.begin(), f.correlated.end(), [](const auto& a, const auto& b) {
        return a.corr != b.corr ? a.corr > b.corr : a.index < b.index;
      });
      if (int64_t(f.correlated.size()) > n_correlated) f.correlated.resize(n_correlated);
    }
  }
  return out;
}

at::Tensor sae_input_at_hook(const Transformer& model, const Sae& sae, const std::string& hook_name,
                             std::optional<int64_t> hook_head_index, const at::Tensor& tokens) {
  at::NoGradGuard no_grad;
  auto cache = model.run_with_cache(tokens, {hook_name});
  at::Tensor act = cache.at(hook_name);
  at::Tensor x;
  if (act.dim() == 4) {
    if (hook_head_index) {
      if (*hook_head_index < 0 || *hook_head_index >= act.size(2))
        fail("hook_head_index: {} is out of range for hook '{}' with {} heads", *hook_head_index,
             hook_name, act.size(2));
      x = act.select(2, *hook_head_index);
    } else {
      x = act.flatten(2);
    }
  } else if (act.dim() == 3) {
    if (hook_head_index)
      fail("hook_head_index: {} given for hook '{}', which has no head axis", *hook_head_index,
           hook_name);
    x = act;
  } else {
    fail("hook '{}': its activation has {} dimensions; an SAE reads [batch, pos, d] activations",
         hook_name, act.dim());
  }
  if (x.size(-1) != sae.cfg().d_in)
    fail("SAE d_in = {} does not match the width {} of hook '{}' of model '{}'", sae.cfg().d_in,
         x.size(-1), hook_name, model.cfg().model_name);
  return x;
}

FeaturePassTiming run_feature_pass(const Transformer& model, const Sae& sae,
                                   const std::string& hook_name,
                                   std::optional<int64_t> hook_head_index,
                                   const std::function<at::Tensor()>& next_batch,
                                   FeatureStatsAccumulator& acc,
                                   const std::function<void(int64_t)>& on_batch) {
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  at::NoGradGuard no_grad;
  FeaturePassTiming timing;
  const at::Device sae_device = sae.param("W_dec").device();
  for (at::Tensor tokens = next_batch(); tokens.defined(); tokens = next_batch()) {
    const auto t0 = clock::now();
    const at::Tensor x = sae_input_at_hook(model, sae, hook_name, hook_head_index, tokens);
    const auto t1 = clock::now();
    const at::Tensor acts = sae.encode(x.to(sae_device));
    const auto t2 = clock::now();
    acc.add_batch(tokens, acts);
    const auto t3 = clock::now();
    timing.forward_s += secs(t0, t1);
    timing.encode_s += secs(t1, t2);
    timing.stats_s += secs(t2, t3);
    if (on_batch) on_batch(acc.n_prompts() * tokens.size(1));
  }
  return timing;
}

}  // namespace saelab
