// write_report: reads a run or sweep directory, writes its page, describes what was drawn.
#include "saelab/vis/report.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/vis/report_page.h"
#include "saelab/vis/report_run.h"
#include "saelab/vis/report_sweep.h"

namespace saelab::vis {
namespace {

namespace fs = std::filesystem;

json density_json(const RunReportData& r) {
  if (r.density.empty()) return nullptr;
  const DensitySnapshot& s = r.density.back();
  const DensitySummary& d = s.summary;
  return {{"snapshot", s.label},
          {"snapshots", r.density.size()},
          {"bin_edges", s.histogram.edges},
          {"counts", s.histogram.counts},
          {"d_sae", d.d_sae},
          {"dead", d.dead},
          {"too_sparse", d.below_1e5 - d.dead},
          {"healthy", d.healthy},
          {"dense", d.dense},
          {"very_dense", d.very_dense}};
}

json run_description(const RunReportData& r) {
  json charts = json::array();
  for (const auto& [k, c] : r.charts)
    charts.push_back({{"key", k}, {"points", c.points}, {"drawn", c.drawn.x.size()}});
  json codes = json::array();
  for (const auto& f : r.findings) codes.push_back(f.code);
  return {{"kind", "run"},     {"run_dir", r.dir},
          {"charts", charts},  {"density", density_json(r)},
          {"findings", codes}, {"errors", r.inputs.recorded_errors},
          {"tokens", r.tokens}};
}

void write_page(const std::string& path, const std::string& html) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::is_directory(parent, ec))
    fail("{}: cannot write the report, {} is not a directory", path, parent.string());
  write_file_atomic(path, html);
}

}  // namespace

ReportResult write_report(const std::string& dir, const ReportOptions& opts) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("{}: not a directory (expected a training run or sweep directory)", dir);
  ReportResult res;
  res.path = opts.out.empty() ? dir + "/report.html" : opts.out;
  if (fs::is_regular_file(fs::path(dir) / "sweep.json", ec)) {
    SweepReportData s = read_sweep_report_data(dir);
    // Each member's own page, linked from the sweep's page: relative when the sweep's page sits
    // in the sweep directory, absolute otherwise.
    const bool in_dir = fs::weakly_canonical(fs::path(res.path).parent_path(), ec) ==
                        fs::weakly_canonical(fs::path(dir), ec);
    std::vector<std::string> hrefs;
    json members = json::array();
    std::set<std::string> all_codes;  // the sweep's findings: every member's, once each
    for (const auto& m : s.members) {
      const std::string page_path = dir + "/" + m.name + "/report.html";
      std::string href;
      if (m.run) {
        write_page(page_path, run_report_html(*m.run));
        href = in_dir ? m.name + "/report.html" : fs::absolute(page_path).string();
      }
      hrefs.push_back(href);
      json c = json::array();
      json codes = json::array();
      if (m.run) {
        for (const auto& [k, ch] : m.run->charts)
          c.push_back({{"key", k}, {"points", ch.points}, {"drawn", ch.drawn.x.size()}});
        for (const auto& f : m.run->findings) {
          codes.push_back(f.code);
          all_codes.insert(f.code);
        }
      }
      auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
      members.push_back({{"name", m.name},
                         {"values", m.values},
                         {"status", m.status},
                         {"report", m.run ? json(page_path) : json(nullptr)},
                         {"unreadable", m.unreadable},
                         {"l0", num(m.l0)},
                         {"explained_variance", num(m.explained_variance)},
                         {"ce_loss_score", num(m.ce_loss_score)},
                         {"pareto", m.pareto},
                         {"findings", codes},
                         {"charts", c}});
    }
    const std::string html = sweep_report_html(s, hrefs);
    write_page(res.path, html);
    res.bytes = static_cast<int64_t>(html.size());
    // The sweep's charts overlay the members': their counts are the members' sums.
    std::map<std::string, std::pair<int64_t, int64_t>> sums;
    for (const auto& m : s.members)
      if (m.run)
        for (const auto& [k, ch] : m.run->charts) {
          sums[k].first += ch.points;
          sums[k].second += static_cast<int64_t>(ch.drawn.x.size());
        }
    json charts = json::array();
    for (const auto& [k, n] : sums)
      charts.push_back({{"key", k}, {"points", n.first}, {"drawn", n.second}});
    res.description = {{"kind", "sweep"},    {"sweep_dir", dir},      {"charts", charts},
                       {"density", nullptr}, {"findings", all_codes}, {"members", members}};
  } else {
    RunReportData r = read_run_report_data(dir, opts.train_summary);
    const std::string html = run_report_html(r);
    write_page(res.path, html);
    res.bytes = static_cast<int64_t>(html.size());
    res.description = run_description(r);
  }
  res.description["report"] = res.path;
  res.description["bytes"] = res.bytes;
  return res;
}

}  // namespace saelab::vis
