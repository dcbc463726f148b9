// Feature-density summaries and histograms (see density.h).
#include "saelab/eval/density.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "saelab/core/error.h"

namespace saelab {

namespace {

// Dead means "fired on fewer than one token in 1e12": recovering a density from a stored float32
// log10 value leaves an error of ~1e-16 around 0, so exact zero cannot be tested there.
constexpr double kDeadFromLogDensity = 1e-12;

DensitySummary summarize(const at::Tensor& density, const at::Tensor& is_dead) {
  DensitySummary s;
  s.d_sae = density.numel();
  if (s.d_sae == 0) return s;
  auto d = density;
  s.dead = is_dead.sum().item<int64_t>();
  s.dense = (d > kDenseThreshold).sum().item<int64_t>();
  s.very_dense = (d > kVeryDenseThreshold).sum().item<int64_t>();
  s.below_1e5 = ((d < 1e-5) | is_dead).sum().item<int64_t>();
  s.below_1e6 = ((d < 1e-6) | is_dead).sum().item<int64_t>();
  s.healthy = ((d >= 1e-5) & (d <= 1e-3) & ~is_dead).sum().item<int64_t>();
  s.mean_log10 = at::log10(d + kDensityLogEps).mean().item<double>();
  return s;
}

}  // namespace

json density_summary_json(const DensitySummary& s) {
  return {{"d_sae", s.d_sae},          {"dead", s.dead},
          {"dense", s.dense},          {"very_dense", s.very_dense},
          {"healthy", s.healthy},      {"below_1e-5", s.below_1e5},
          {"below_1e-6", s.below_1e6}, {"mean_log10", s.mean_log10}};
}

DensitySummary density_summary_from_json(const json& j, const std::string& where) {
  auto number = [&](const char* key) -> const json& {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number())
      fail("{}: expected a feature-sampling window with a number '{}'", where, key);
    return j[key];
  };
  DensitySummary s;
  s.d_sae = number("d_sae").get<int64_t>();
  s.dead = number("dead").get<int64_t>();
  s.dense = number("dense").get<int64_t>();
  s.very_dense = number("very_dense").get<int64_t>();
  s.healthy = number("healthy").get<int64_t>();
  s.below_1e5 = number("below_1e-5").get<int64_t>();
  s.below_1e6 = number("below_1e-6").get<int64_t>();
  s.mean_log10 = number("mean_log10").get<double>();
  return s;
}

DensitySummary summarize_fire_counts(const at::Tensor& fire_counts, int64_t n_tokens) {
  if (n_tokens <= 0) fail("feature density: needs at least one token, got {}", n_tokens);
  if (fire_counts.dim() != 1)
    fail("feature density: fire counts must be 1-D, got {}-D", fire_counts.dim());
  auto counts = fire_counts.detach().to(at::kCPU, at::kDouble);
  return summarize(counts / static_cast<double>(n_tokens), counts == 0);
}

DensitySummary summarize_log10_density(const at::Tensor& log10_density) {
  if (log10_density.dim() != 1)
    fail("feature density: log10 density must be 1-D, got {}-D", log10_density.dim());
  auto v = log10_density.detach().to(at::kCPU, at::kDouble);
  if (!at::isfinite(v).all().item<bool>())
    fail("feature density: log10 density has non-finite values");
  auto density = at::clamp_min(at::pow(10.0, v) - kDensityLogEps, 0.0);
  auto s = summarize(density, density < kDeadFromLogDensity);
  s.mean_log10 = v.mean().item<double>();  // the stored values themselves
  return s;
}

at::Tensor log10_density(const at::Tensor& fire_counts, int64_t n_tokens) {
  if (n_tokens <= 0) fail("feature density: needs at least one token, got {}", n_tokens);
  auto counts = fire_counts.detach().to(at::kCPU, at::kDouble);
  return at::log10(counts / static_cast<double>(n_tokens) + kDensityLogEps).to(at::kFloat);
}

Histogram histogram(const at::Tensor& values, double lo, double hi, int64_t bins) {
  if (bins <= 0 || !(hi > lo))
    fail("histogram: need bins > 0 and hi > lo, got {} bins over [{}, {}]", bins, lo, hi);
  Histogram h;
  h.edges.resize(bins + 1);
  for (int64_t i = 0; i <= bins; ++i) h.edges[i] = lo + (hi - lo) * static_cast<double>(i) / bins;
  h.counts.assign(bins, 0);
  auto v = values.detach().to(at::kCPU, at::kDouble).contiguous().reshape({-1});
  const double* p = v.data_ptr<double>();
  for (int64_t i = 0; i < v.numel(); ++i) {
    if (std::isnan(p[i])) continue;  // not countable in any bin
    double pos = (p[i] - lo) / (hi - lo) * static_cast<double>(bins);
    int64_t b = pos <= 0                           ? 0
                : pos >= static_cast<double>(bins) ? bins - 1
                                                   : static_cast<int64_t>(pos);
    ++h.counts[b];
  }
  return h;
}

Histogram density_histogram(const at::Tensor& log10_density, int64_t bins) {
  return histogram(log10_density, std::log10(kDensityLogEps), 0.0, bins);
}

json density_histogram_json(const at::Tensor& log10_density, int64_t bins) {
  Histogram h = density_histogram(log10_density, bins);
  return {
      {"value", "log10(feature density + 1e-10)"}, {"bin_edges", h.edges}, {"counts", h.counts}};
}

std::string density_histogram_text(const json& histogram) {
  const auto edges = histogram.at("bin_edges").get<std::vector<double>>();
  const auto counts = histogram.at("counts").get<std::vector<int64_t>>();
  if (edges.size() != counts.size() + 1)
    fail("feature density histogram: expected one more edge than counts");
  std::vector<int64_t> decades(10, 0);  // decade d holds [d - 10, d - 9)
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t d = static_cast<int64_t>(std::floor(edges[i] + 1e-9)) + 10;
    decades[std::clamp<int64_t>(d, 0, 9)] += counts[i];
  }
  size_t w = 3;
  for (auto c : decades) w = std::max(w, std::to_string(c).size());
  std::string labels = "  ", row = "  ";
  for (size_t d = 0; d < decades.size(); ++d) {
    std::string l = std::to_string(int(d) - 10), c = std::to_string(decades[d]);
    labels += std::string(w + 1 - l.size(), ' ') + l;
    row += std::string(w + 1 - c.size(), ' ') + c;
  }
  return "feature density histogram: latents per decade of log10(density + 1e-10), from -10 (dead) "
         "to 0\n" +
         labels + "\n" + row + "\n";
}

}  // namespace saelab
