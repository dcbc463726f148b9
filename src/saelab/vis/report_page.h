// The HTML of a training report: one self-contained page (inline CSS, JS, data) for a run or a
// sweep. Static parts (header, findings, tables) are written here; the charts are drawn in the
// browser by assets/report.js with the vendored uPlot, from the data embedded in the page. Every
// chart's element carries data-chart="<key>": the metric name, "plots/feature_density_line_chart"
// for the density histogram, "sweep/l0_vs_explained_variance" and "sweep/l0_vs_ce_loss_score" for
// a sweep's scatters.
#pragma once
#include <string>

#include "saelab/vis/report_run.h"
#include "saelab/vis/report_sweep.h"

namespace saelab::vis {

constexpr const char* kDensityChartKey = "plots/feature_density_line_chart";
constexpr const char* kScatterEvKey = "sweep/l0_vs_explained_variance";
constexpr const char* kScatterCeKey = "sweep/l0_vs_ce_loss_score";

std::string run_report_html(const RunReportData& run);
// member_report_hrefs[i]: the link to member i's own report ("" when it has none), relative to
// the sweep's page or absolute.
std::string sweep_report_html(const SweepReportData& sweep,
                              const std::vector<std::string>& member_report_hrefs);

// Shared pieces of both pages (report_page_parts.cpp).
namespace page {
std::string number(double v);          // 4 significant digits, exponent when tiny or huge
std::string tokens(double v);          // 1.23M
std::string duration(double seconds);  // 1 h 02 min, 3 min 20 s, 4.2 s
std::string document(const std::string& title, const std::string& body, const json& data);
std::string chart_div(const std::string& key, const std::string& meta, bool log_button);
std::string density_section(const std::vector<DensitySnapshot>& snaps,
                            const std::vector<std::string>& labels, bool overlay, json& data);
std::string chart_groups_html(const std::vector<std::string>& keys,
                              const std::map<std::string, std::string>& meta);
json density_zones();
}  // namespace page

}  // namespace saelab::vis
