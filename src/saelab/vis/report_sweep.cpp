// Reading a sweep directory for its training report (report_sweep.h).
#include "saelab/vis/report_sweep.h"

#include <cmath>
#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab::vis {
namespace {

double summary_or_last(const SweepMemberReport& m, const char* key) {
  if (m.run) {
    const json& s = m.run->summary;
    if (s.contains(key) && s[key].is_number()) return s[key].get<double>();
    auto it = m.run->inputs.metrics.find(key);
    if (it != m.run->inputs.metrics.end() && !it->second.empty()) return it->second.back().value;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

std::vector<bool> pareto_front(const std::vector<double>& l0, const std::vector<double>& ev) {
  if (l0.size() != ev.size())
    fail("pareto_front: {} L0 values for {} EV values", l0.size(), ev.size());
  const size_t n = l0.size();
  auto valid = [&](size_t i) { return std::isfinite(l0[i]) && std::isfinite(ev[i]); };
  std::vector<bool> front(n, false);
  for (size_t i = 0; i < n; ++i) {
    if (!valid(i)) continue;
    bool dominated = false;
    for (size_t j = 0; j < n && !dominated; ++j)
      dominated = j != i && valid(j) && l0[j] <= l0[i] && ev[j] >= ev[i] &&
                  (l0[j] < l0[i] || ev[j] > ev[i]);
    front[i] = !dominated;
  }
  return front;
}

SweepReportData read_sweep_report_data(const std::string& sweep_dir) {
  namespace fs = std::filesystem;
  SweepReportData d;
  d.dir = sweep_dir;
  d.name = fs::path(sweep_dir).lexically_normal().filename().string();
  const std::string path = sweep_dir + "/sweep.json";
  if (!path_exists(path)) fail("{}: no sweep.json (expected a sweep directory)", sweep_dir);
  d.sweep = json::parse(read_file(path), nullptr, false);
  if (d.sweep.is_discarded() || !d.sweep.is_object() || !d.sweep.contains("members") ||
      !d.sweep["members"].is_array())
    fail("{}: expected a JSON object with a \"members\" array (a saelab sweep)", path);
  for (const auto& e : d.sweep["members"]) {
    SweepMemberReport m;
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string())
      fail("{}: every member needs a \"name\" string", path);
    m.name = e["name"].get<std::string>();
    // The name is a directory inside the sweep: refuse one that would leave it.
    if (m.name.empty() || m.name.find('/') != std::string::npos || m.name == "." || m.name == "..")
      fail("{}: member name \"{}\" is not a directory name", path, m.name);
    if (e.contains("values") && e["values"].is_object()) m.values = e["values"];
    m.status = e.value("status", std::string("unknown"));
    m.error = e.value("error", std::string());
    const std::string dir = e.contains("run_dir") && e["run_dir"].is_string()
                                ? e["run_dir"].get<std::string>()
                                : m.name;
    if (dir.empty() || dir.find('/') != std::string::npos || dir == "." || dir == "..")
      fail("{}: member run_dir \"{}\" is not a directory name", path, dir);
    json summary =
        e.contains("summary") && e["summary"].is_object() ? e["summary"] : json::object();
    try {
      m.run = read_run_report_data(sweep_dir + "/" + dir, summary);
    } catch (const Error& err) {
      m.unreadable = err.what();
    }
    m.l0 = summary_or_last(m, "metrics/l0");
    m.explained_variance = summary_or_last(m, "metrics/explained_variance");
    m.ce_loss_score = summary_or_last(m, "model_performance_preservation/ce_loss_score");
    d.members.push_back(std::move(m));
  }
  std::vector<double> l0, ev;
  for (const auto& m : d.members) {
    l0.push_back(m.l0);
    ev.push_back(m.explained_variance);
  }
  auto front = pareto_front(l0, ev);
  for (size_t i = 0; i < d.members.size(); ++i) d.members[i].pareto = front[i];
  return d;
}

}  // namespace saelab::vis
