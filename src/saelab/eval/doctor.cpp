// The doctor's rules: from a run's config and metric series to findings (doctor.h). Each rule
// reads summary figures (means over the last log steps, so one noisy step decides nothing) and
// fires only when every part of its pattern is present; docs/doctor.md states each in words.
#include "saelab/eval/doctor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "saelab/sae/registry.h"

namespace saelab {
namespace {

using namespace doctor;

// Names the trainer logs, with the older / eval-time names accepted for the same figure.
const std::vector<std::string> kL0Names = {"metrics/l0", "sparsity/l0"};
const std::vector<std::string> kEvNames = {"metrics/explained_variance",
                                           "reconstruction_quality/explained_variance"};
const std::vector<std::string> kDeadNames = {"sparsity/dead_features"};
const std::vector<std::string> kDenseNames = {"sparsity/dense_features"};
const std::vector<std::string> kCeCleanNames = {
    "model_performance_preservation/ce_loss_without_sae", "metrics/ce_loss_without_sae"};
const std::vector<std::string> kLossNames = {"losses/mse_loss", "losses/overall_loss"};

const std::vector<MetricPoint>* find_series(const MetricSeries& m,
                                            const std::vector<std::string>& names) {
  for (const auto& n : names) {
    auto it = m.find(n);
    if (it != m.end() && !it->second.empty()) return &it->second;
  }
  return nullptr;
}

// Mean of the last `fraction` of the points (at least 3, or all there are).
double tail_mean(const std::vector<MetricPoint>& s, double fraction = kTailFraction) {
  const size_t n = s.size();
  size_t k = std::max<size_t>(3, static_cast<size_t>(std::ceil(fraction * double(n))));
  k = std::min(k, n);
  double sum = 0;
  for (size_t i = n - k; i < n; ++i) sum += s[i].value;
  return sum / double(k);
}

// Mean of the points whose index lies in [lo, hi) of the series, as fractions of its length.
std::optional<double> window_mean(const std::vector<MetricPoint>& s, double lo, double hi) {
  const size_t n = s.size();
  size_t a = static_cast<size_t>(std::floor(lo * double(n)));
  size_t b = std::max(a + 1, static_cast<size_t>(std::ceil(hi * double(n))));
  b = std::min(b, n);
  if (a >= b) return std::nullopt;
  double sum = 0;
  for (size_t i = a; i < b; ++i) sum += s[i].value;
  return sum / double(b - a);
}

double round_sig(double v, int digits = 4) {
  if (v == 0 || !std::isfinite(v)) return v;
  const double scale = std::pow(10.0, digits - 1 - int(std::floor(std::log10(std::fabs(v)))));
  return std::round(v * scale) / scale;
}

std::string fmt_num(double v) { return fmt::format("{:g}", round_sig(v, 3)); }

// The loss-curve figures behind lr_too_low, from the points after the warm-ups, in windows of
// kTailFraction of them: window means, because single batches are noisy.
struct LossTrend {
  std::string metric;
  int64_t tail_from_step = 0;
  int64_t last_step = 0;
  double first = 0;           // mean loss over the first window
  double before_tail = 0;     // ... over the window before the last
  double last = 0;            // ... over the last window (the tail)
  double tail_drop = 0;       // 1 - last / before_tail
  double total_log_drop = 0;  // log(first / last)
  double tail_share = 0;      // log(before_tail / last) / total_log_drop
};

bool still_falling(const LossTrend& t) {
  return t.tail_drop >= kTailMinDrop && t.tail_share >= kTailMinShare;
}

// mse_loss, not overall_loss: the overall loss carries the sparsity term, which is noisier (it
// counts the features in each batch) and keeps falling while the codes sharpen in a run whose
// reconstruction converged long ago.
std::optional<LossTrend> loss_trend(const DoctorInputs& in) {
  const auto& c = in.config;
  const int64_t warm = std::max({c.lr_warm_up_steps, c.l1_warm_up_steps, c.l0_warm_up_steps});
  const std::vector<MetricPoint>* all = nullptr;
  std::string metric;
  for (const auto& name : kLossNames) {
    auto it = in.metrics.find(name);
    if (it != in.metrics.end() && !it->second.empty()) {
      all = &it->second, metric = name;
      break;
    }
  }
  if (!all) return std::nullopt;
  std::vector<MetricPoint> s;
  for (const auto& p : *all)
    if (p.step >= warm) s.push_back(p);
  const size_t n = s.size();
  if (int64_t(n) < kMinLossPoints) return std::nullopt;
  const size_t w = std::max<size_t>(2, static_cast<size_t>(std::ceil(kTailFraction * double(n))));
  auto mean = [&](size_t a, size_t b) {
    double sum = 0;
    for (size_t i = a; i < b; ++i) sum += s[i].value;
    return sum / double(b - a);
  };
  LossTrend t;
  t.metric = metric;
  t.tail_from_step = s[n - w].step;
  t.last_step = s.back().step;
  t.first = mean(0, w);
  t.before_tail = mean(n - 2 * w, n - w);
  t.last = mean(n - w, n);
  if (!(t.first > 0) || !(t.before_tail > 0) || !(t.last > 0)) return std::nullopt;
  t.tail_drop = 1.0 - t.last / t.before_tail;
  t.total_log_drop = std::log(t.first / t.last);
  t.tail_share = t.total_log_drop > 0 ? std::log(t.before_tail / t.last) / t.total_log_drop : 0.0;
  return t;
}

// Figures shared by the rules.
struct Figures {
  std::optional<double> l0, ev, dead, dead_mid, dead_early, dense, ce_clean;
  std::optional<int64_t> dense_from_file;
  std::optional<LossTrend> trend;
};

Figures compute_figures(const DoctorInputs& in) {
  Figures f;
  if (auto* s = find_series(in.metrics, kL0Names)) f.l0 = tail_mean(*s);
  if (auto* s = find_series(in.metrics, kEvNames)) f.ev = tail_mean(*s);
  if (auto* s = find_series(in.metrics, kDeadNames)) {
    f.dead = tail_mean(*s);
    f.dead_mid = window_mean(*s, 0.4, 0.6);
    f.dead_early = window_mean(*s, 0.15, 0.35);
  } else if (in.final_density) {
    f.dead = double(in.final_density->dead);
  }
  const double dense_threshold = in.config.dense_density_threshold;
  if (in.final_density) {
    int64_t dense = in.final_density->dense;
    if (dense_threshold > kDenseThreshold && !in.final_log10_density.empty()) {
      const double cut = std::log10(dense_threshold + kDensityLogEps);
      dense = 0;
      for (float v : in.final_log10_density) dense += double(v) > cut;
    }
    f.dense_from_file = dense;
    f.dense = double(dense);
  } else if (auto* s = find_series(in.metrics, kDenseNames)) {
    f.dense = s->back().value;
  }
  if (auto* s = find_series(in.metrics, kCeCleanNames)) f.ce_clean = tail_mean(*s, 1.0);
  f.trend = loss_trend(in);
  return f;
}

json opt_json(const std::optional<double>& v) { return v ? json(round_sig(*v, 6)) : json(nullptr); }

// A smaller d_sae to try: room for the live latents (rounded up to a multiple of d_in, at least
// 2 x d_in), and at most half the current width, as the seed's run #2 (32x) against its baseline
// (16x).
int64_t suggested_d_sae(int64_t live, int64_t d_sae, int64_t d_in) {
  auto round_up = [d_in](int64_t v) { return ((v + d_in - 1) / d_in) * d_in; };
  const int64_t half = std::max<int64_t>(d_in, (d_sae / 2 / d_in) * d_in);
  return std::min(half, std::max<int64_t>(2 * d_in, round_up(live)));
}

std::string sparsity_knob(const DoctorConfig& c, const std::string& how) {
  if (c.k_sparse()) return fmt::format("k (activation_fn_kwargs = {{ k = {} }})", c.k);
  if (c.sparsity_coefficient != "l1_coefficient") return c.sparsity_coefficient;
  return fmt::format("l1_coefficient (now {})", fmt_num(c.l1_coefficient)) + how;
}

}  // namespace

DoctorConfig doctor_config(const RunnerConfig& r) {
  DoctorConfig c;
  c.architecture = r.architecture;
  c.sparsity_coefficient = find_architecture(r.architecture, "architecture").sparsity_coefficient;
  c.model_name = r.model_name;
  c.dataset_path = r.dataset_path;
  c.d_in = r.d_in;
  c.d_sae = r.resolved_d_sae();
  c.lr = r.lr;
  c.lr_warm_up_steps = r.lr_warm_up_steps;
  c.lr_decay_steps = r.lr_decay_steps;
  c.l1_coefficient = r.l1_coefficient;
  c.l1_warm_up_steps = r.l1_warm_up_steps;
  c.l0_warm_up_steps = r.l0_warm_up_steps;
  c.k = r.k();
  c.resample_dead_latents = r.resample_dead_latents;
  c.use_ghost_grads = r.use_ghost_grads;
  c.training_tokens = r.training_tokens;
  c.train_batch_size_tokens = r.train_batch_size_tokens;
  c.dense_density_threshold = kDenseThreshold;
  if (r.is_toy()) {
    // data/toy_model: p_i ∝ (i+1)^-alpha, rescaled to mean p; the largest is p_0.
    double norm = 0;
    for (int64_t i = 0; i < r.toy_n_features; ++i)
      norm += std::pow(double(i + 1), -r.toy_probability_power_law);
    const double p_max = std::min(1.0, r.toy_feature_probability * double(r.toy_n_features) / norm);
    c.dense_density_threshold = std::max(kDenseThreshold, 2.0 * p_max);
  }
  return c;
}

json doctor_figures(const DoctorInputs& in) {
  const auto f = compute_figures(in);
  const auto& c = in.config;
  json j = {{"d_in", c.d_in},
            {"d_sae", c.d_sae},
            {"expansion_factor", round_sig(c.expansion_factor())},
            {"l0", opt_json(f.l0)},
            {"explained_variance", opt_json(f.ev)},
            {"dead_features", opt_json(f.dead)},
            {"dense_features", opt_json(f.dense)},
            {"ce_loss_without_sae", opt_json(f.ce_clean)},
            {"log_steps", 0}};
  size_t steps = 0;
  for (const auto& [name, s] : in.metrics) steps = std::max(steps, s.size());
  j["log_steps"] = steps;
  if (f.trend) {
    j["loss_trend"] = {{"metric", f.trend->metric},
                       {"tail_from_step", f.trend->tail_from_step},
                       {"last_step", f.trend->last_step},
                       {"loss_first_window", round_sig(f.trend->first, 6)},
                       {"loss_before_tail", round_sig(f.trend->before_tail, 6)},
                       {"loss_tail", round_sig(f.trend->last, 6)},
                       {"tail_drop", round_sig(f.trend->tail_drop)},
                       {"tail_share", round_sig(f.trend->tail_share)}};
  }
  return j;
}

std::vector<Finding> diagnose(const DoctorInputs& in) {
  const auto& c = in.config;
  const auto f = compute_figures(in);
  std::vector<Finding> out;
  const double d_sae = double(std::max<int64_t>(c.d_sae, 1));
  const bool good_ev = f.ev && *f.ev >= kGoodExplainedVariance;
  const bool poor_ev = f.ev && *f.ev < kGoodExplainedVariance;
  const bool high_l0 = f.l0 && c.d_in > 0 && *f.l0 > kHighL0PerDin * double(c.d_in);
  const double dead_fraction = f.dead ? *f.dead / d_sae : 0.0;
  const bool many_dead = f.dead && dead_fraction >= kManyDeadFraction;
  const bool revives_dead = c.resample_dead_latents || c.use_ghost_grads;

  // dataset_mismatch: the model itself does badly on the data, before any SAE is involved.
  for (const auto& e : in.recorded_errors) {
    // The model's own check ("token id ... is out of range") and the activations store's
    // ("... does not match model ...: token id ... is outside the model's vocabulary").
    const bool out_of_range = e.find("out of range") != std::string::npos ||
                              e.find("outside the model's vocabulary") != std::string::npos;
    if (out_of_range &&
        (e.find("token") != std::string::npos || e.find("vocab") != std::string::npos)) {
      out.push_back(
          {"dataset_mismatch",
           "The run stopped on a token id outside the model's vocabulary: the dataset was "
           "tokenized for another model.",
           {{"recorded_error", e}, {"dataset_path", c.dataset_path}, {"model_name", c.model_name}},
           fmt::format("Use a dataset tokenized with {}'s tokenizer (dataset_path), or an "
                       "untokenized one with is_dataset_tokenized = false.",
                       c.model_name.empty() ? "the model" : c.model_name)});
      break;
    }
  }
  if (f.ce_clean) {
    std::optional<double> bound;
    json ev = {{"ce_loss_without_sae", round_sig(*f.ce_clean)},
               {"dataset_path", c.dataset_path},
               {"model_name", c.model_name}};
    if (in.reference_ce_loss) {
      bound = kCeMismatchRatio * *in.reference_ce_loss;
      ev["reference_ce_loss"] = round_sig(*in.reference_ce_loss);
      ev["threshold"] = round_sig(*bound);
      ev["rule"] = fmt::format("ce_loss_without_sae > {} x reference", kCeMismatchRatio);
    } else {
      const int64_t vocab = in.d_vocab.value_or(kDefaultVocab);
      bound = std::log(double(vocab)) / 2.0;
      ev["d_vocab"] = vocab;
      ev["d_vocab_assumed"] = !in.d_vocab.has_value();
      ev["threshold"] = round_sig(*bound);
      ev["rule"] = "ce_loss_without_sae > log(d_vocab) / 2";
    }
    const bool already = !out.empty();
    if (*f.ce_clean > *bound && !already) {
      out.push_back(
          {"dataset_mismatch",
           fmt::format("The model's own loss on this dataset (ce_loss_without_sae = {}, no "
                       "SAE involved) is far above what it gets on its own data (threshold {}): "
                       "the activations come from the wrong input distribution.",
                       fmt_num(*f.ce_clean), fmt_num(*bound)),
           ev,
           fmt::format("Set dataset_path to a dataset like the one {} was trained on, tokenized "
                       "with its tokenizer; the SAE itself may be fine, but it describes the "
                       "wrong activations.",
                       c.model_name.empty() ? "the model" : c.model_name)});
    }
  }

  // too_narrow: no room for more features than dimensions.
  if (c.d_in > 0 && c.d_sae > 0 && c.d_sae <= c.d_in && (poor_ev || high_l0)) {
    out.push_back(
        {"too_narrow",
         fmt::format("The SAE has d_sae = {} latents for d_in = {} dimensions (expansion "
                     "factor {}): it cannot be both sparse and accurate, so it gives up on "
                     "one or both.",
                     c.d_sae, c.d_in, fmt_num(c.expansion_factor())),
         {{"d_in", c.d_in},
          {"d_sae", c.d_sae},
          {"expansion_factor", round_sig(c.expansion_factor())},
          {"explained_variance", opt_json(f.ev)},
          {"l0", opt_json(f.l0)},
          {"l0_threshold", kHighL0PerDin * double(c.d_in)},
          {"explained_variance_threshold", kGoodExplainedVariance}},
         fmt::format("Raise expansion_factor (e.g. expansion_factor = 8, d_sae = {}); SAEs "
                     "are overcomplete, typically 4-64x d_in.",
                     8 * c.d_in)});
  }

  // l1_too_small: dense codes that reconstruct well, i.e. the sparsity penalty is not biting.
  if (c.d_sae > c.d_in && high_l0 && good_ev) {
    out.push_back(
        {"l1_too_small",
         fmt::format("L0 = {} latents fire per token, more than {} of d_in = {}: the SAE "
                     "reconstructs well (explained variance {}) but is not sparse.",
                     fmt_num(*f.l0), kHighL0PerDin, c.d_in, fmt_num(*f.ev)),
         {{"l0", round_sig(*f.l0)},
          {"l0_threshold", kHighL0PerDin * double(c.d_in)},
          {"d_in", c.d_in},
          {"d_sae", c.d_sae},
          {"explained_variance", round_sig(*f.ev)},
          {"dense_features", opt_json(f.dense)},
          {"l1_coefficient", c.l1_coefficient}},
         c.k_sparse()
             ? fmt::format("Lower k (now {}) in activation_fn_kwargs.", c.k)
             : fmt::format("Raise {} about 10x and retrain; then tune until L0 is well below "
                           "{} (tens, not hundreds, for an LM).",
                           sparsity_knob(c, ""), fmt_num(kHighL0PerDin * double(c.d_in)))});
  }

  // Dead latents: from a shock early in training (dead_from_lr) or from a dictionary larger than
  // the data needs (too_wide). Told apart by whether the live latents still reconstruct well.
  const bool dead_from_lr = many_dead && poor_ev && c.lr_warm_up_steps == 0 && !revives_dead;
  if (dead_from_lr) {
    out.push_back(
        {"dead_from_lr",
         fmt::format("{} of {} latents ({}%) are dead and reconstruction is poor (explained "
                     "variance {}): with lr = {}, no warm-up and no resampling, latents "
                     "died early and nothing brought them back.",
                     fmt_num(*f.dead), c.d_sae, fmt_num(100 * dead_fraction), fmt_num(*f.ev),
                     fmt_num(c.lr)),
         {{"dead_features", round_sig(*f.dead)},
          {"dead_fraction", round_sig(dead_fraction)},
          {"dead_fraction_threshold", kManyDeadFraction},
          {"dead_features_early", opt_json(f.dead_early)},
          {"explained_variance", round_sig(*f.ev)},
          {"explained_variance_threshold", kGoodExplainedVariance},
          {"lr", c.lr},
          {"lr_warm_up_steps", c.lr_warm_up_steps},
          {"resample_dead_latents", c.resample_dead_latents},
          {"use_ghost_grads", c.use_ghost_grads}},
         fmt::format(
             "Lower lr (e.g. lr = {}), add a warm-up (lr_warm_up_steps = {}) and "
             "revive dead latents (resample_dead_latents = true).",
             fmt_num(c.lr / 3),
             std::max<int64_t>(
                 1, c.training_tokens / std::max<int64_t>(1, c.train_batch_size_tokens) / 20))});
  }
  const bool not_falling = f.dead && (!f.dead_mid || *f.dead >= kDeadNotFallingRatio * *f.dead_mid);
  if (many_dead && good_ev && c.d_sae > c.d_in && not_falling) {
    const int64_t live = std::max<int64_t>(0, c.d_sae - int64_t(std::llround(*f.dead)));
    const int64_t want = suggested_d_sae(live, c.d_sae, c.d_in);
    out.push_back(
        {"too_wide",
         fmt::format("{} of {} latents ({}%) are dead{} while the {} live ones reconstruct "
                     "well (explained variance {}): the dictionary is wider than the data needs.",
                     fmt_num(*f.dead), c.d_sae, fmt_num(100 * dead_fraction),
                     revives_dead ? " and resampling is not reviving them" : "", live,
                     fmt_num(*f.ev)),
         {{"dead_features", round_sig(*f.dead)},
          {"dead_features_mid_training", opt_json(f.dead_mid)},
          {"dead_fraction", round_sig(dead_fraction)},
          {"dead_fraction_threshold", kManyDeadFraction},
          {"live_features", live},
          {"explained_variance", round_sig(*f.ev)},
          {"expansion_factor", round_sig(c.expansion_factor())},
          {"resample_dead_latents", c.resample_dead_latents},
          {"lr_warm_up_steps", c.lr_warm_up_steps}},
         fmt::format("Lower expansion_factor (e.g. d_sae = {}, expansion_factor = {}): the "
                     "dead latents are wasted capacity{}.",
                     want, fmt_num(double(want) / double(c.d_in)),
                     revives_dead ? "" : "; or turn on resample_dead_latents = true")});
  }

  // lr_too_low: the loss is still falling at the end at a rate comparable to earlier.
  // Not after dead_from_lr: a run wrecked by too high an lr may still be slowly recovering, and
  // "raise the lr" would contradict the finding that explains it.
  if (!dead_from_lr && f.trend && still_falling(*f.trend)) {
    const auto& t = *f.trend;
    out.push_back({"lr_too_low",
                   fmt::format("{} is still falling steeply at the end: its mean over the last {} "
                               "steps is {}% below the window before, {}% of its whole (log) fall: "
                               "training stopped before converging (lr = {}).",
                               t.metric, t.last_step - t.tail_from_step, fmt_num(100 * t.tail_drop),
                               fmt_num(100 * t.tail_share), fmt_num(c.lr)),
                   {{"metric", t.metric},
                    {"tail_from_step", t.tail_from_step},
                    {"last_step", t.last_step},
                    {"loss_before_tail", round_sig(t.before_tail, 6)},
                    {"loss_tail", round_sig(t.last, 6)},
                    {"tail_drop", round_sig(t.tail_drop)},
                    {"tail_drop_threshold", kTailMinDrop},
                    {"tail_share", round_sig(t.tail_share)},
                    {"tail_share_threshold", kTailMinShare},
                    {"lr", c.lr},
                    {"training_tokens", c.training_tokens}},
                   fmt::format("Raise lr (e.g. lr = {}) or train longer (training_tokens = {}).",
                               fmt_num(c.lr * 3), c.training_tokens * 3)});
  }

  // dense_latents: many latents firing on more than 1 token in 100.
  if (f.dense && *f.dense > kManyDenseFraction * d_sae) {
    const double density_bar = f.dense_from_file ? c.dense_density_threshold : kDenseThreshold;
    out.push_back(
        {"dense_latents",
         fmt::format("{} of {} latents ({}%) fire on more than {}% of tokens: dense latents "
                     "explain little and usually mean the sparsity penalty is too weak.",
                     fmt_num(*f.dense), c.d_sae, fmt_num(100 * *f.dense / d_sae),
                     fmt_num(100 * density_bar)),
         {{"dense_features", round_sig(*f.dense)},
          {"dense_fraction", round_sig(*f.dense / d_sae)},
          {"dense_fraction_threshold", kManyDenseFraction},
          {"density_threshold", density_bar},
          {"source", f.dense_from_file ? "final/sparsity.safetensors" : "sparsity/dense_features"},
          {"l0", opt_json(f.l0)}},
         fmt::format("Raise {} (e.g. 3x) and look at the density histogram "
                     "(plots/feature_density_line_chart): healthy mass sits between log10 "
                     "density -5 and -3.",
                     sparsity_knob(c, ""))});
  }
  return out;
}

json findings_json(const std::vector<Finding>& findings) {
  json arr = json::array();
  for (const auto& f : findings)
    arr.push_back({{"code", f.code},
                   {"message", f.message},
                   {"evidence", f.evidence},
                   {"suggestion", f.suggestion}});
  return json{{"findings", arr}};
}

std::string findings_text(const std::vector<Finding>& findings) {
  if (findings.empty()) return "no findings: the run looks healthy\n";
  std::string s;
  for (const auto& f : findings) {
    s += fmt::format("[{}] {}\n", f.code, f.message);
    for (const auto& [k, v] : f.evidence.items()) s += fmt::format("    {:<32} {}\n", k, v.dump());
    s += fmt::format("  try: {}\n\n", f.suggestion);
  }
  return s;
}

}  // namespace saelab
