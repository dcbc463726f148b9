// Reading one run directory for its training report (report_run.h).
#include "saelab/vis/report_run.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/safetensors.h"

namespace saelab::vis {
namespace {

namespace fs = std::filesystem;

// Six significant digits are more than a chart can show and keep the embedded data small.
double round6(double v) { return std::stod(fmt::format("{:.6g}", v)); }

DensitySnapshot snapshot_of(const std::string& sparsity_path, const std::string& label,
                            int64_t tokens, int64_t d_sae) {
  SafetensorsFile f(sparsity_path);
  if (!f.contains("sparsity"))
    fail("{}: no tensor 'sparsity' (expected log10 feature density [d_sae])", sparsity_path);
  at::Tensor v = f.tensor("sparsity");
  if (v.dim() != 1 || (d_sae > 0 && v.size(0) != d_sae))
    fail("{}: 'sparsity' has {} dimensions and {} values, expected [{}] (d_sae of config.toml)",
         sparsity_path, v.dim(), v.numel(), d_sae);
  DensitySnapshot s;
  s.label = label;
  s.tokens = tokens;
  s.histogram = density_histogram(v);
  s.summary = summarize_log10_density(v);
  return s;
}

// density.jsonl, the trainer's record of each feature-sampling window: {"step",
// "n_training_tokens", "window_tokens", "bin_edges" [51], "counts" [50], "d_sae", "dead", "dense",
// "very_dense", "healthy", "below_1e-5", "below_1e-6", "mean_log10"}. A torn last line (a killed
// run) is skipped.
std::vector<DensitySnapshot> read_density_windows(const std::string& path) {
  std::vector<DensitySnapshot> out;
  std::istringstream in(read_file(path));
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    if (l.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(l);
  for (size_t i = 0; i < lines.size(); ++i) {
    json j = json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() && i + 1 == lines.size()) break;
    const std::string where = fmt::format("{}:{}", path, i + 1);
    DensitySnapshot s;
    s.summary = density_summary_from_json(j, where);
    if (!j.contains("n_training_tokens") || !j["n_training_tokens"].is_number())
      fail("{}: expected a feature-sampling window with a number 'n_training_tokens'", where);
    s.tokens = j["n_training_tokens"].get<int64_t>();
    const json& edges = j.value("bin_edges", json());
    const json& counts = j.value("counts", json());
    if (!edges.is_array() || !counts.is_array() || counts.empty() ||
        edges.size() != counts.size() + 1)
      fail("{}: expected 'bin_edges' [n + 1] and 'counts' [n] arrays", where);
    int64_t total = 0;
    for (const auto& e : edges) {
      if (!e.is_number()) fail("{}: 'bin_edges' holds a non-number", where);
      s.histogram.edges.push_back(e.get<double>());
    }
    for (const auto& c : counts) {
      if (!c.is_number_integer() || c.get<int64_t>() < 0)
        fail("{}: 'counts' holds a value that is not a count", where);
      s.histogram.counts.push_back(c.get<int64_t>());
      total += c.get<int64_t>();
    }
    if (total != s.summary.d_sae)
      fail("{}: the counts sum to {}, not d_sae = {}", where, total, s.summary.d_sae);
    s.label = fmt::format("window ending at {} tokens", s.tokens);
    out.push_back(std::move(s));
  }
  return out;
}

// Every logged feature-sampling window (density.jsonl) or, for runs without one, the checkpoints
// (checkpoints/<tokens>/sparsity.safetensors) in token order; then final/.
std::vector<DensitySnapshot> read_density(const std::string& dir, int64_t d_sae) {
  std::error_code ec;
  if (fs::is_regular_file(dir + "/density.jsonl", ec)) {
    std::vector<DensitySnapshot> out = read_density_windows(dir + "/density.jsonl");
    const std::string final_path = dir + "/final/sparsity.safetensors";
    if (fs::is_regular_file(final_path, ec))
      out.push_back(snapshot_of(final_path, "final SAE", -1, d_sae));
    return out;
  }
  std::vector<std::pair<int64_t, std::string>> ckpts;
  const fs::path cdir = fs::path(dir) / "checkpoints";
  if (fs::is_directory(cdir, ec))
    for (const auto& e : fs::directory_iterator(cdir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      if (fs::is_regular_file(e.path() / "sparsity.safetensors", ec))
        ckpts.emplace_back(std::stoll(name), (e.path() / "sparsity.safetensors").string());
    }
  std::sort(ckpts.begin(), ckpts.end());
  std::vector<DensitySnapshot> out;
  for (const auto& [tokens, path] : ckpts)
    out.push_back(snapshot_of(path, fmt::format("checkpoint at {} tokens", tokens), tokens, d_sae));
  const std::string final_path = dir + "/final/sparsity.safetensors";
  if (fs::is_regular_file(final_path, ec))
    out.push_back(snapshot_of(final_path, "final SAE", -1, d_sae));
  return out;
}

// saelab info's figures of the final SAE: parameter count and decoder row norms.
json final_sae_figures(const std::string& dir) {
  const std::string path = dir + "/final/sae_weights.safetensors";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return json::object();
  SafetensorsFile f(path);
  int64_t n = 0;
  for (const auto& name : f.names()) {
    int64_t numel = 1;
    for (int64_t d : f.entry(name).shape) numel *= d;
    n += numel;
  }
  json j = {{"num_parameters", n}};
  if (f.contains("W_dec")) {
    const at::Tensor w = f.tensor("W_dec");
    if (w.dim() == 2 && w.numel() > 0) {
      // In float64, 4,096 rows at a time: a float64 copy of the whole decoder would be the
      // training run's peak of memory (the report is written while the trainer still holds
      // its state).
      std::vector<at::Tensor> parts;
      for (int64_t r = 0; r < w.size(0); r += 4096)
        parts.push_back(w.narrow(0, r, std::min<int64_t>(4096, w.size(0) - r))
                            .to(at::kDouble)
                            .pow(2)
                            .sum(1)
                            .sqrt());
      const at::Tensor norms = at::cat(parts);
      j["decoder_norms"] = {{"min", norms.min().item<double>()},
                            {"mean", norms.mean().item<double>()},
                            {"max", norms.max().item<double>()}};
    }
  }
  return j;
}

double seconds_between(const fs::path& a, const fs::path& b) {
  std::error_code ec1, ec2;
  auto ta = fs::last_write_time(a, ec1), tb = fs::last_write_time(b, ec2);
  if (ec1 || ec2) return -1;
  return std::chrono::duration<double>(tb - ta).count();
}

}  // namespace

std::string chart_group(const std::string& key) {
  const auto slash = key.find('/');
  return slash == std::string::npos ? "other" : key.substr(0, slash);
}

std::vector<std::pair<std::string, std::vector<std::string>>> chart_groups(
    const std::vector<std::string>& keys) {
  // The seed's dashboard advice: reconstruction and sparsity first, run details last.
  static const std::vector<std::string> order = {"losses",
                                                 "metrics",
                                                 "model_performance_preservation",
                                                 "model_behavior_preservation",
                                                 "reconstruction_quality",
                                                 "shrinkage",
                                                 "sparsity",
                                                 "details"};
  std::map<std::string, std::vector<std::string>> by_group;
  for (const auto& k : keys) by_group[chart_group(k)].push_back(k);
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& g : order) {
    auto it = by_group.find(g);
    if (it == by_group.end()) continue;
    out.emplace_back(g, it->second);
    by_group.erase(it);
  }
  for (auto& [g, ks] : by_group) out.emplace_back(g, ks);
  for (auto& [g, ks] : out) std::sort(ks.begin(), ks.end());
  return out;
}

bool chart_log_y(const std::string& key, const std::vector<double>& y) {
  const bool is_l0 = key.size() >= 3 && key.compare(key.size() - 3, 3, "/l0") == 0;
  const bool spans_decades =
      chart_group(key) == "losses" || is_l0 || key.find("mse") != std::string::npos;
  if (!spans_decades || y.empty()) return false;
  return std::all_of(y.begin(), y.end(), [](double v) { return v > 0; });
}

double tokens_at_step(const RunReportData& r, int64_t step) {
  auto it = r.inputs.metrics.find("details/n_training_tokens");
  if (it != r.inputs.metrics.end()) {
    const auto& s = it->second;
    auto p = std::lower_bound(s.begin(), s.end(), step,
                              [](const MetricPoint& a, int64_t b) { return a.step < b; });
    if (p != s.end() && p->step == step) return p->value;
  }
  return double(step) * double(r.inputs.config.train_batch_size_tokens);
}

RunReportData read_run_report_data(const std::string& run_dir, const json& summary) {
  RunReportData r;
  r.dir = run_dir;
  r.name = fs::path(run_dir).lexically_normal().filename().string();
  if (r.name.empty())
    r.name = fs::path(run_dir).lexically_normal().parent_path().filename().string();
  // The doctor's reader names a missing config.toml / metrics.jsonl and reads error.txt.
  r.inputs = read_doctor_inputs(run_dir);
  r.findings = diagnose(r.inputs);
  // Read again for what the doctor does not keep: null values, the torn last line.
  std::vector<std::string> ignored;
  read_metrics_jsonl(run_dir + "/metrics.jsonl", &ignored, &r.info);
  r.config = read_runner_config_keys(run_dir + "/config.toml");
  r.summary = summary.is_object() ? summary : json::object();

  std::vector<std::string> keys;
  for (const auto& [k, s] : r.inputs.metrics) keys.push_back(k);
  for (const auto& [k, steps] : r.info.non_finite_steps)
    if (!r.inputs.metrics.count(k)) keys.push_back(k);
  for (const auto& k : keys) {
    ChartSeries c;
    c.key = k;
    auto it = r.inputs.metrics.find(k);
    if (it != r.inputs.metrics.end()) {
      XYSeries full;
      for (const auto& p : it->second) {
        full.x.push_back(tokens_at_step(r, p.step));
        full.y.push_back(p.value);
      }
      c.points = static_cast<int64_t>(full.x.size());
      c.drawn = downsample_min_max(full, kReportColumns);
      for (double& v : c.drawn.y) v = round6(v);
    }
    auto nf = r.info.non_finite_steps.find(k);
    if (nf != r.info.non_finite_steps.end())
      for (int64_t step : nf->second) c.non_finite_x.push_back(tokens_at_step(r, step));
    r.charts[k] = std::move(c);
  }
  if (r.info.last_step >= 0) r.tokens = static_cast<int64_t>(tokens_at_step(r, r.info.last_step));

  r.density = read_density(run_dir, r.inputs.config.d_sae);
  r.sae = final_sae_figures(run_dir);
  if (r.summary.contains("seconds") && r.summary["seconds"].is_number()) {
    r.wall_seconds = r.summary["seconds"].get<double>();
  } else {
    r.wall_seconds =
        seconds_between(fs::path(run_dir) / "config.toml", fs::path(run_dir) / "metrics.jsonl");
    r.wall_from_file_times = r.wall_seconds >= 0;
  }
  return r;
}

json headline_figures(const RunReportData& r) {
  json out = json::array();
  auto last = [&](const char* key, const char* label) {
    auto it = r.inputs.metrics.find(key);
    if (it == r.inputs.metrics.end() || it->second.empty()) return;
    out.push_back({{"name", label},
                   {"key", key},
                   {"value", it->second.back().value},
                   {"source", "last logged value"}});
  };
  last("metrics/explained_variance", "explained variance");
  last("metrics/l0", "L0");
  last("losses/mse_loss", "MSE loss");
  last("sparsity/dead_features", "dead latents");
  last("sparsity/dense_features", "dense latents");
  last("model_performance_preservation/ce_loss_score", "CE loss score");
  last("model_behavior_preservation/kl_div_score", "KL div score");
  last("metrics/mmcs", "MMCS (true features)");
  for (const auto& [key, label] : std::vector<std::pair<std::string, std::string>>{
           {"metrics/explained_variance", "explained variance"},
           {"metrics/l0", "L0"},
           {"model_performance_preservation/ce_loss_score", "CE loss score"},
           {"metrics/features_recovered", "features recovered"}})
    if (r.summary.contains(key) && r.summary[key].is_number())
      out.push_back({{"name", label},
                     {"key", key},
                     {"value", r.summary[key].get<double>()},
                     {"source", "final SAE, held-out eval"}});
  if (!r.density.empty() && r.density.back().tokens < 0) {
    const DensitySummary& d = r.density.back().summary;
    for (const auto& [label, v] :
         std::vector<std::pair<std::string, int64_t>>{{"dead latents", d.dead},
                                                      {"dense latents (> 1e-2)", d.dense},
                                                      {"healthy latents (1e-5..1e-3)", d.healthy}})
      out.push_back(
          {{"name", label}, {"key", ""}, {"value", v}, {"source", "final/sparsity.safetensors"}});
  }
  return out;
}

}  // namespace saelab::vis
