// Pieces shared by the run page and the sweep page (report_page.h): number formats, the page
// skeleton with its inlined assets, chart containers, the feature-density section.
#include <cmath>

#include "saelab/vis/html.h"
#include "saelab/vis/report_page.h"

namespace saelab::vis::page {

std::string number(double v) {
  if (!std::isfinite(v)) return "n/a";
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-3)) return fmt::format("{:.3e}", v);
  return fmt::format("{:.4g}", v);
}

std::string tokens(double v) {
  if (!std::isfinite(v)) return "n/a";
  const double a = std::fabs(v);
  if (a >= 1e9) return fmt::format("{:.4g}B", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.4g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.4g}k", v / 1e3);
  return fmt::format("{:.4g}", v);
}

std::string duration(double s) {
  if (!(s >= 0)) return "unknown";
  if (s < 60) return fmt::format("{:.1f} s", s);
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 3600) return fmt::format("{} min {:02d} s", t / 60, static_cast<int>(t % 60));
  return fmt::format("{} h {:02d} min", t / 3600, static_cast<int>((t % 3600) / 60));
}

std::string document(const std::string& title, const std::string& body, const json& data) {
  return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         // A page that must never reach the network says so to the browser too.
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
         "<title>" +
         html_escape(title) + "</title>\n" + style_tag(asset("uplot/uPlot.min.css")) +
         style_tag(asset("report.css")) + "</head>\n<body><main>\n" + body + "</main>\n" +
         json_script_tag("report-data", data) + script_tag(asset("uplot/uPlot.iife.min.js")) +
         script_tag(asset("report.js")) + "</body></html>\n";
}

std::string chart_div(const std::string& key, const std::string& meta, bool log_button) {
  return "<div class=\"chart\" data-chart=\"" + html_escape(key) +
         "\"><div class=\"chart-head\"><span class=\"chart-title\">" + html_escape(key) +
         "</span><span class=\"chart-meta\">" + html_escape(meta) +
         (log_button ? " <button class=\"log\" title=\"log y axis\">log</button>" : "") +
         "</span></div><div class=\"plot\"></div></div>\n";
}

std::string chart_groups_html(const std::vector<std::string>& keys,
                              const std::map<std::string, std::string>& meta) {
  std::string out;
  for (const auto& [group, ks] : chart_groups(keys)) {
    out += "<section class=\"group\" id=\"group-" + html_escape(group) + "\"><h2>" +
           html_escape(group) + "/ <span class=\"count\">" + std::to_string(ks.size()) +
           (ks.size() == 1 ? " chart" : " charts") + "</span></h2><div class=\"grid\">\n";
    for (const auto& k : ks) {
      auto it = meta.find(k);
      out += chart_div(k, it == meta.end() ? "" : it->second, true);
    }
    out += "</div></section>\n";
  }
  return out;
}

json density_zones() {
  // The seed's reading of the histogram: dead latents pile up at log10(1e-10) = -10; "too
  // sparse" below 1e-5; most mass between -5 and -3 when healthy; dense above 1e-2, very dense
  // above 1e-1.
  return json::array({
      {{"lo", -10.0},
       {"hi", -9.8},
       {"label", "dead (never fired)"},
       {"color", "rgba(110,119,129,0.35)"}},
      {{"lo", -9.8},
       {"hi", -5.0},
       {"label", "too sparse (< 1e-5)"},
       {"color", "rgba(84,174,255,0.14)"}},
      {{"lo", -5.0},
       {"hi", -3.0},
       {"label", "healthy (1e-5 to 1e-3)"},
       {"color", "rgba(74,194,107,0.20)"}},
      {{"lo", -2.0},
       {"hi", -1.0},
       {"label", "too dense (> 1e-2)"},
       {"color", "rgba(255,150,0,0.20)"}},
      {{"lo", -1.0},
       {"hi", 0.0},
       {"label", "very dense (> 1e-1)"},
       {"color", "rgba(207,34,46,0.20)"}},
  });
}

std::string density_section(const std::vector<DensitySnapshot>& snaps,
                            const std::vector<std::string>& labels, bool overlay, json& data) {
  std::string out = "<section id=\"density\"><h2>feature density</h2>\n";
  if (snaps.empty()) {
    out +=
        "<p class=\"note\">No feature-density histogram: the run wrote no density.jsonl, "
        "final/ or checkpoint sparsity.safetensors.</p></section>\n";
    return out;
  }
  json zones = density_zones();
  json js = json::array();
  std::string rows;
  for (size_t i = 0; i < snaps.size(); ++i) {
    const auto& s = snaps[i];
    js.push_back({{"label", labels[i]}, {"counts", s.histogram.counts}});
    const DensitySummary& d = s.summary;
    const int64_t too_sparse = d.below_1e5 - d.dead;
    const int64_t between = d.d_sae - d.below_1e5 - d.healthy - d.dense;
    rows += "<tr><td>" + html_escape(labels[i]) + "</td>";
    for (int64_t v : {d.d_sae, d.dead, too_sparse, d.healthy, between, d.dense, d.very_dense})
      rows += "<td class=\"num\">" + std::to_string(v) + "</td>";
    rows += "</tr>\n";
  }
  data["density"] = {{"key", kDensityChartKey},
                     {"edges", snaps.back().histogram.edges},
                     {"zones", zones},
                     {"overlay", overlay},
                     {"snapshots", js}};
  out += "<div class=\"chart wide\" data-chart=\"" + std::string(kDensityChartKey) +
         "\"><div class=\"chart-head\"><span class=\"chart-title\">" + kDensityChartKey +
         "</span><span class=\"chart-meta\">log10(feature density + 1e-10), 50 bins over "
         "[-10, 0]</span></div>\n<div class=\"zones\">";
  for (const auto& z : zones)
    out += "<span style=\"--c:" + z["color"].get<std::string>() + "\">" +
           html_escape(z["label"].get<std::string>()) + "</span>";
  out += "</div>\n";
  if (!overlay && snaps.size() > 1)
    out += "<div class=\"density-controls\"><input type=\"range\" min=\"0\" max=\"" +
           std::to_string(snaps.size() - 1) + "\" value=\"" + std::to_string(snaps.size() - 1) +
           "\" aria-label=\"snapshot\"><span class=\"snapshot-label\"></span></div>\n";
  // One row per snapshot (a long run logs hundreds of windows): the table scrolls.
  out +=
      "<div class=\"plot\"></div>\n<div style=\"max-height:18em;overflow:auto\">"
      "<table class=\"counts\"><thead><tr><th>" +
      std::string(overlay ? "member (final SAE)" : "snapshot") +
      "</th><th>latents</th><th>dead</th><th>too sparse<br>(&lt; 1e-5)</th><th>healthy<br>"
      "(1e-5..1e-3)</th><th>1e-3..1e-2</th><th>dense<br>(&gt; 1e-2)</th><th>of which very "
      "dense<br>(&gt; 1e-1)</th></tr></thead><tbody>\n" +
      rows + "</tbody></table></div></div></section>\n";
  return out;
}

}  // namespace saelab::vis::page
