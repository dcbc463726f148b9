// ReconstructionStats: streaming float64 accumulation of the model-free SAE metrics (metrics.h).
#include "saelab/eval/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "saelab/core/error.h"
#include "saelab/eval/density.h"

namespace saelab {

namespace {

// Latent activations are converted to float64 a slice of rows at a time (8 MiB of float64), so a
// 4096 × 65536 batch never needs a 2 GB float64 copy, and the copies stay small enough for the
// allocator to reuse.
constexpr int64_t kActsChunkElements = int64_t{1} << 20;

at::Tensor zero_scalar(const at::Device& device) {
  return at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
}

double scalar(const at::Tensor& t) { return t.to(at::kCPU).item<double>(); }

std::string shape(const at::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

void ReconstructionStats::init(int64_t d_in, int64_t d_sae, const at::Device& device) {
  auto opts = at::TensorOptions().dtype(at::kDouble).device(device);
  d_in_ = d_in;
  d_sae_ = d_sae;
  mean_x_ = at::zeros({d_in}, opts);
  m2_x_ = at::zeros({d_in}, opts);
  for (at::Tensor* t :
       {&sse_, &cos_sum_, &norm_in_, &norm_out_, &norm_out2_, &dot_, &ratio_sum_, &ratio_n_, &l1_})
    *t = zero_scalar(device);
  fires_ = at::zeros({d_sae}, at::TensorOptions().dtype(at::kLong).device(device));
}

void ReconstructionStats::add(const at::Tensor& x_in, const at::Tensor& x_hat_in,
                              const at::Tensor& acts_in) {
  if (x_in.dim() < 1 || acts_in.dim() < 1)
    fail("metrics: x and acts need a feature dimension, got x {} and acts {}", shape(x_in),
         shape(acts_in));
  if (!x_in.sizes().equals(x_hat_in.sizes()))
    fail("metrics: x {} and reconstruction {} differ in shape", shape(x_in), shape(x_hat_in));
  if (!x_in.sizes().slice(0, x_in.dim() - 1).equals(acts_in.sizes().slice(0, acts_in.dim() - 1)))
    fail("metrics: x {} and acts {} differ in their token dimensions", shape(x_in), shape(acts_in));
  const int64_t d_in = x_in.size(-1), d_sae = acts_in.size(-1);
  if (n_ == 0 && d_in_ == 0) {
    init(d_in, d_sae, x_in.device());
  } else if (d_in != d_in_ || d_sae != d_sae_) {
    fail("metrics: batch has d_in {} and d_sae {}, earlier batches had {} and {}", d_in, d_sae,
         d_in_, d_sae_);
  }
  at::NoGradGuard no_grad;
  const auto dev = mean_x_.device();
  auto x = x_in.detach().reshape({-1, d_in}).to(dev, at::kDouble);
  auto y = x_hat_in.detach().reshape({-1, d_in}).to(dev, at::kDouble);
  auto acts = acts_in.detach().reshape({-1, d_sae}).to(dev);
  const int64_t nb = x.size(0);
  if (nb == 0) return;

  // Per-dimension moments, merged with Chan et al.'s formula (exact for any split into batches).
  auto batch_mean = x.mean(0);
  auto batch_m2 = (x - batch_mean).pow(2).sum(0);
  const double n_old = static_cast<double>(n_), n_new = static_cast<double>(n_ + nb);
  auto delta = batch_mean - mean_x_;
  mean_x_ = mean_x_ + delta * (static_cast<double>(nb) / n_new);
  m2_x_ = m2_x_ + batch_m2 + delta.pow(2) * (n_old * static_cast<double>(nb) / n_new);

  auto nx = x.norm(2, -1);
  auto ny = y.norm(2, -1);
  auto dot = (x * y).sum(-1);
  sse_ += (x - y).pow(2).sum();
  auto norm_prod = nx * ny;
  auto nonzero = norm_prod > 0;
  cos_sum_ += at::where(nonzero, dot / at::where(nonzero, norm_prod, at::ones_like(norm_prod)),
                        at::zeros_like(norm_prod))
                  .sum();
  norm_in_ += nx.sum();
  norm_out_ += ny.sum();
  norm_out2_ += ny.pow(2).sum();
  dot_ += dot.sum();
  auto has_in = nx > 0;
  ratio_sum_ +=
      at::where(has_in, ny / at::where(has_in, nx, at::ones_like(nx)), at::zeros_like(nx)).sum();
  ratio_n_ += has_in.sum().to(at::kDouble);

  fires_ += (acts > 0).sum(0);
  const int64_t rows = std::max<int64_t>(1, kActsChunkElements / std::max<int64_t>(1, d_sae));
  for (int64_t r = 0; r < nb; r += rows)
    l1_ += acts.slice(0, r, std::min(nb, r + rows)).to(at::kDouble).abs().sum();
  n_ += nb;
}

void ReconstructionStats::merge(const ReconstructionStats& o) {
  if (o.n_ == 0) return;
  if (n_ == 0) {
    *this = o;
    return;
  }
  if (o.d_in_ != d_in_ || o.d_sae_ != d_sae_)
    fail("metrics: cannot merge d_in {}/d_sae {} into d_in {}/d_sae {}", o.d_in_, o.d_sae_, d_in_,
         d_sae_);
  const auto dev = mean_x_.device();
  const double na = static_cast<double>(n_), nb = static_cast<double>(o.n_), n = na + nb;
  auto delta = o.mean_x_.to(dev) - mean_x_;
  mean_x_ = mean_x_ + delta * (nb / n);
  m2_x_ = m2_x_ + o.m2_x_.to(dev) + delta.pow(2) * (na * nb / n);
  for (auto [mine, theirs] : {std::pair{&sse_, &o.sse_},
                              {&cos_sum_, &o.cos_sum_},
                              {&norm_in_, &o.norm_in_},
                              {&norm_out_, &o.norm_out_},
                              {&norm_out2_, &o.norm_out2_},
                              {&dot_, &o.dot_},
                              {&ratio_sum_, &o.ratio_sum_},
                              {&ratio_n_, &o.ratio_n_},
                              {&l1_, &o.l1_},
                              {&fires_, &o.fires_}})
    *mine = *mine + theirs->to(dev);
  n_ += o.n_;
}

at::Tensor ReconstructionStats::fire_counts() const {
  if (n_ == 0) return at::zeros({d_sae_}, at::kLong);
  return fires_.to(at::kCPU).clone();
}

at::Tensor ReconstructionStats::log10_feature_density() const {
  if (n_ == 0) fail("metrics: no tokens were added, feature density is undefined");
  return log10_density(fires_, n_);
}

json ReconstructionStats::metrics() const {
  if (n_ == 0) fail("metrics: no tokens were added, the metrics are undefined");
  const double n = static_cast<double>(n_);
  const double sse = scalar(sse_);
  const double total_var = scalar(m2_x_.sum());  // Σ_d Σ_t (x_td − mean_d)² = N · Σ_d Var(x_d)
  // sklearn's force_finite convention when every token is the same vector.
  const double ev = total_var > 0 ? 1.0 - sse / total_var : (sse == 0 ? 1.0 : 0.0);
  const double dot = scalar(dot_), out2 = scalar(norm_out2_), ratio_n = scalar(ratio_n_);
  const double fires_total = static_cast<double>(fires_.sum().to(at::kCPU).item<int64_t>());
  auto density = summarize_fire_counts(fires_, n_);

  json m = json::object();
  m["n_tokens"] = n_;
  m["reconstruction_quality/explained_variance"] = ev;
  m["reconstruction_quality/mse"] = sse / n / static_cast<double>(d_in_);
  m["reconstruction_quality/cossim"] = scalar(cos_sum_) / n;
  m["shrinkage/l2_norm_in"] = scalar(norm_in_) / n;
  m["shrinkage/l2_norm_out"] = scalar(norm_out_) / n;
  m["shrinkage/l2_ratio"] = ratio_n > 0 ? scalar(ratio_sum_) / ratio_n : 0.0;
  // E‖x̂‖² / E⟨x, x̂⟩; an all-zero reconstruction is total shrinkage, reported as 0.
  m["shrinkage/relative_reconstruction_bias"] = dot != 0 ? out2 / dot : 0.0;
  m["sparsity/l0"] = fires_total / n;
  m["sparsity/l1"] = scalar(l1_) / n;
  m["sparsity/dead_features"] = density.dead;
  m["sparsity/dense_features"] = density.dense;
  m["sparsity/below_1e-5"] = density.below_1e5;
  m["sparsity/below_1e-6"] = density.below_1e6;
  return m;
}

std::string metrics_table(const json& metrics) {
  // Group "a/b" keys under "a", keeping first-appearance order; ungrouped keys come first.
  std::vector<std::string> groups{""};
  std::vector<std::vector<std::pair<std::string, const json*>>> rows(1);
  size_t width = 0;
  for (auto it = metrics.begin(); it != metrics.end(); ++it) {
    const std::string& key = it.key();
    auto slash = key.find('/');
    std::string group = slash == std::string::npos ? "" : key.substr(0, slash);
    std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
    auto g = std::find(groups.begin(), groups.end(), group) - groups.begin();
    if (g == static_cast<long>(groups.size())) {
      groups.push_back(group);
      rows.emplace_back();
    }
    rows[g].emplace_back(name, &it.value());
    width = std::max(width, name.size());
  }
  std::ostringstream out;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (rows[g].empty()) continue;
    const bool grouped = !groups[g].empty();
    if (grouped) out << groups[g] << "\n";
    for (auto& [name, value] : rows[g]) {
      std::string shown;
      if (value->is_number_integer() || value->is_number_unsigned())
        shown = value->dump();
      else if (value->is_number())
        shown = fmt::format("{:.6g}", value->get<double>());
      else if (value->is_string())
        shown = value->get<std::string>();
      else
        shown = value->dump();
      out << (grouped ? "  " : "") << name
          << std::string(width + 2 - name.size() + (grouped ? 0 : 2), ' ') << shown << "\n";
    }
  }
  return out.str();
}

}  // namespace saelab
