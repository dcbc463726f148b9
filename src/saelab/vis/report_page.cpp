// The run page and the sweep page of a training report (report_page.h).
#include "saelab/vis/report_page.h"

#include <cmath>

#include "saelab/vis/html.h"

namespace saelab::vis {
namespace {

using page::number;

std::string card(const std::string& label, const std::string& value) {
  return "<div class=\"card\"><div class=\"v\">" + html_escape(value) + "</div><div class=\"k\">" +
         html_escape(label) + "</div></div>";
}

std::string config_text(const json& c, const char* key) {
  if (!c.contains(key)) return "";
  return c[key].is_string() ? c[key].get<std::string>() : c[key].dump();
}

// Token counts are whole numbers: written without a fraction they take fewer bytes.
json compact(const std::vector<double>& v) {
  json out = json::array();
  for (double x : v) {
    if (std::fabs(x) < 9e15 && x == std::floor(x))
      out.push_back(static_cast<int64_t>(x));
    else
      out.push_back(x);
  }
  return out;
}

json chart_data(const ChartSeries& c, const std::string& label) {
  return {{"label", label},
          {"x", compact(c.drawn.x)},
          {"y", compact(c.drawn.y)},
          {"nan_x", compact(c.non_finite_x)}};
}

std::string chart_meta(int64_t points, int64_t drawn) {
  if (points == drawn) return fmt::format("{} points", points);
  return fmt::format("{} points, {} drawn (min/max per pixel)", points, drawn);
}

// Errors the run recorded, the torn last line, and metrics logged as NaN: shown first, since
// everything below them is "the curves up to it".
std::string problems_html(const RunReportData& r) {
  std::string out;
  if (!r.inputs.recorded_errors.empty()) {
    out +=
        "<div class=\"error\" id=\"run-error\"><b>The run recorded an error</b> (error.txt / "
        "metrics.jsonl); the charts show what it logged before it.";
    for (const auto& e : r.inputs.recorded_errors) out += "<pre>" + html_escape(e) + "</pre>";
    out += "</div>\n";
  }
  std::string nan;
  for (const auto& [k, steps] : r.info.non_finite_steps)
    nan += "<li><code>" + html_escape(k) + "</code>: " + std::to_string(steps.size()) +
           " value(s), first at step " + std::to_string(steps.front()) + "</li>";
  if (!nan.empty())
    out +=
        "<div class=\"error\" id=\"run-nonfinite\"><b>Non-finite values</b> (NaN or infinity, "
        "written as null; red dashed lines on the charts):<ul>" +
        nan + "</ul></div>\n";
  if (r.info.torn_last_line)
    out +=
        "<p class=\"note\">metrics.jsonl ends with an incomplete line (the run was killed while "
        "writing it); it is left out.</p>\n";
  return out;
}

std::string findings_html(const std::vector<Finding>& findings, const std::string& run_dir) {
  if (findings.empty())
    return "<div class=\"healthy\" id=\"findings\"><b>saelab doctor</b>: no findings, nothing in "
           "these metrics matches a known failure.</div>\n";
  std::string out =
      "<section id=\"findings\"><h2>saelab doctor: " + std::to_string(findings.size()) +
      (findings.size() == 1 ? " finding" : " findings") + "</h2>\n";
  for (const auto& f : findings)
    out += "<div class=\"finding\" data-finding=\"" + html_escape(f.code) +
           "\"><span class=\"code\">" + html_escape(f.code) + "</span>: " + html_escape(f.message) +
           "<div class=\"suggestion\"><b>Try:</b> " + html_escape(f.suggestion) +
           "</div><details><summary>evidence</summary><pre>" + html_escape(f.evidence.dump(2)) +
           "</pre></details></div>\n";
  out += "<p class=\"note\">docs/doctor.md explains each finding; <code>saelab doctor " +
         html_escape(run_dir) + "</code> prints them.</p></section>\n";
  return out;
}

std::string header_html(const RunReportData& r) {
  const DoctorConfig& c = r.inputs.config;
  std::string out = "<h1>Training report: " + html_escape(r.name) + "</h1><p class=\"sub\">" +
                    html_escape(r.dir) + "</p>\n<div class=\"cards\" id=\"run-header\">";
  // A toy run's config still holds the default model and hook, which it never loads.
  const bool toy = c.dataset_path == "toy";
  out += card("model", toy ? std::string("none (toy data)") : c.model_name);
  out += card("hook", toy ? std::string("none (toy data)") : config_text(r.config, "hook_name"));
  out += card("architecture", c.architecture);
  out += card("d_in × d_sae",
              fmt::format("{} × {} ({}×)", c.d_in, c.d_sae, number(c.expansion_factor())));
  out += card("dataset", c.dataset_path);
  out += card("training tokens",
              page::tokens(double(r.tokens)) + " of " + page::tokens(double(c.training_tokens)));
  out += card(r.wall_from_file_times ? "wall time (from file times)" : "wall time",
              page::duration(r.wall_seconds));
  out += card("throughput", r.wall_seconds > 0
                                ? page::tokens(double(r.tokens) / r.wall_seconds) + " tokens/s"
                                : std::string("unknown"));
  out += "</div>\n";
  return out;
}

std::string figures_html(const RunReportData& r) {
  std::string out = "<h2>final figures</h2><table class=\"kv\" id=\"figures\">";
  for (const auto& f : headline_figures(r))
    out += "<tr><td>" + html_escape(f["name"].get<std::string>()) + "</td><td class=\"num\">" +
           html_escape(number(f["value"].get<double>())) + "</td><td class=\"note\">" +
           html_escape(f["source"].get<std::string>()) + "</td></tr>";
  if (r.sae.contains("num_parameters"))
    out += "<tr><td>parameters</td><td class=\"num\">" +
           std::to_string(r.sae["num_parameters"].get<int64_t>()) +
           "</td><td class=\"note\">final/sae_weights.safetensors</td></tr>";
  if (r.sae.contains("decoder_norms")) {
    const json& d = r.sae["decoder_norms"];
    out +=
        "<tr><td>decoder row norms</td><td class=\"num\">" +
        html_escape(fmt::format("min {}, mean {}, max {}", number(d["min"].get<double>()),
                                number(d["mean"].get<double>()), number(d["max"].get<double>()))) +
        "</td><td class=\"note\">final/sae_weights.safetensors</td></tr>";
  }
  return out + "</table>\n";
}

std::string config_html(const json& config, const std::string& title) {
  std::string out =
      "<details id=\"config\"><summary>" + html_escape(title) + "</summary><table class=\"kv\">";
  for (const auto& [k, v] : config.items())
    out += "<tr><td><code>" + html_escape(k) + "</code></td><td><code>" +
           html_escape(v.is_string() ? v.get<std::string>() : v.dump()) + "</code></td></tr>";
  return out + "</table></details>\n";
}

std::vector<DensitySnapshot> final_snapshots(const SweepReportData& s,
                                             std::vector<std::string>& labels) {
  std::vector<DensitySnapshot> out;
  for (const auto& m : s.members)
    if (m.run && !m.run->density.empty() && m.run->density.back().tokens < 0) {
      out.push_back(m.run->density.back());
      labels.push_back(m.name);
    }
  return out;
}

}  // namespace

std::string run_report_html(const RunReportData& r) {
  json data = {{"kind", "run"}, {"charts", json::object()}};
  std::vector<std::string> keys;
  std::map<std::string, std::string> meta;
  for (const auto& [k, c] : r.charts) {
    keys.push_back(k);
    data["charts"][k] = {{"log", chart_log_y(k, c.drawn.y)},
                         {"series", json::array({chart_data(c, r.name)})}};
    meta[k] = chart_meta(c.points, static_cast<int64_t>(c.drawn.x.size()));
  }
  std::vector<std::string> labels;
  for (const auto& s : r.density) labels.push_back(s.label);
  std::string body = header_html(r) + problems_html(r) + findings_html(r.findings, r.dir) +
                     figures_html(r) + page::density_section(r.density, labels, false, data) +
                     "<p class=\"note\">Charts: x = training tokens; drag to zoom, double-click "
                     "to reset; hover for values.</p>\n" +
                     page::chart_groups_html(keys, meta) + config_html(r.config, "config.toml");
  return page::document("saelab report: " + r.name, body, data);
}

std::string sweep_report_html(const SweepReportData& s, const std::vector<std::string>& hrefs) {
  json data = {{"kind", "sweep"}, {"charts", json::object()}, {"scatter", json::object()}};
  // Every member's curve of every key any member logged, overlaid.
  std::map<std::string, std::pair<int64_t, int64_t>> counts;
  for (const auto& m : s.members) {
    if (!m.run) continue;
    for (const auto& [k, c] : m.run->charts) {
      json& chart = data["charts"][k];
      if (!chart.contains("series")) chart = {{"log", true}, {"series", json::array()}};
      chart["series"].push_back(chart_data(c, m.name));
      chart["log"] = chart["log"].get<bool>() && chart_log_y(k, c.drawn.y);
      counts[k].first += c.points;
      counts[k].second += static_cast<int64_t>(c.drawn.x.size());
    }
  }
  std::vector<std::string> keys;
  std::map<std::string, std::string> meta;
  for (const auto& [k, n] : counts) {
    keys.push_back(k);
    meta[k] = chart_meta(n.first, n.second);
  }

  std::string body = "<h1>Sweep report: " + html_escape(s.name) + "</h1><p class=\"sub\">" +
                     html_escape(s.dir) + "</p>\n<div class=\"cards\" id=\"run-header\">";
  std::string swept;
  if (s.sweep.contains("keys") && s.sweep["keys"].is_array())
    for (const auto& k : s.sweep["keys"])
      swept += (swept.empty() ? "" : ", ") + (k.is_string() ? k.get<std::string>() : k.dump());
  body += card("swept", swept.empty() ? std::string("?") : swept);
  body += card("members", std::to_string(s.members.size()));
  if (s.sweep.contains("seconds") && s.sweep["seconds"].is_number())
    body += card("wall time", page::duration(s.sweep["seconds"].get<double>()));
  if (s.sweep.contains("source") && s.sweep["source"].is_string())
    body += card("activations", s.sweep["source"].get<std::string>());
  if (!s.members.empty() && s.members[0].run) {
    const DoctorConfig& c = s.members[0].run->inputs.config;
    const bool toy = c.dataset_path == "toy";
    body += card("model", toy ? std::string("none (toy data)") : c.model_name);
    body += card("hook", toy ? std::string("none (toy data)")
                             : config_text(s.members[0].run->config, "hook_name"));
    body += card("d_in", std::to_string(c.d_in));
  }
  body += "</div>\n";

  bool any_ce = false;
  json ev_points = json::array(), ce_points = json::array();
  std::string rows;
  for (size_t i = 0; i < s.members.size(); ++i) {
    const auto& m = s.members[i];
    std::string codes;
    if (m.run)
      for (const auto& f : m.run->findings) codes += (codes.empty() ? "" : ", ") + f.code;
    // A member with no readable run has no page to link to.
    const std::string member_link = hrefs[i].empty() ? html_escape(m.name)
                                                     : "<a href=\"" + html_escape(hrefs[i]) +
                                                           "\">" + html_escape(m.name) + "</a>";
    rows +=
        "<tr data-member=\"" + html_escape(m.name) + "\"><td>" + member_link + "</td><td><code>" +
        html_escape(m.values.dump()) + "</code></td><td>" + html_escape(m.status) +
        "</td><td class=\"num\">" + number(m.l0) + "</td><td class=\"num\">" +
        number(m.explained_variance) + "</td><td class=\"num\">" + number(m.ce_loss_score) +
        "</td><td class=\"pareto\">" + (m.pareto ? "★" : "") + "</td><td>" +
        html_escape(m.run ? codes : m.unreadable) +
        (m.error.empty() ? "" : "<br><span class=\"note\">" + html_escape(m.error) + "</span>") +
        "</td></tr>\n";
    if (std::isfinite(m.l0) && std::isfinite(m.explained_variance))
      ev_points.push_back({{"name", m.name},
                           {"x", m.l0},
                           {"y", m.explained_variance},
                           {"pareto", m.pareto},
                           {"href", hrefs[i]}});
    if (std::isfinite(m.l0) && std::isfinite(m.ce_loss_score)) {
      any_ce = true;
      ce_points.push_back({{"name", m.name},
                           {"x", m.l0},
                           {"y", m.ce_loss_score},
                           {"pareto", m.pareto},
                           {"href", hrefs[i]}});
    }
  }
  body +=
      "<h2>members</h2><table class=\"members\" id=\"members\"><thead><tr><th>member</th>"
      "<th>values</th><th>status</th><th>L0</th><th>explained variance</th><th>CE loss "
      "score</th><th>Pareto</th><th>doctor</th></tr></thead><tbody>\n" +
      rows +
      "</tbody></table><p class=\"note\">Final SAEs: the held-out figures of sweep.json when "
      "present, else the last logged value. ★ = on the Pareto front (no other member has both "
      "a lower L0 and a higher explained variance).</p>\n";
  body += "<section id=\"tradeoff\"><h2>sparsity vs reconstruction</h2><div class=\"grid\">";
  auto scatter = [&](const char* key, const char* ylabel, const json& pts) {
    data["scatter"][key] = {{"xlabel", "L0"}, {"ylabel", ylabel}, {"points", pts}};
    body += "<div class=\"chart\" data-chart=\"" + std::string(key) +
            "\"><div class=\"chart-head\"><span class=\"chart-title\">" + key +
            "</span><span class=\"chart-meta\">" + std::to_string(pts.size()) +
            " members</span></div><div class=\"plot\"></div><div class=\"note hover\">click a "
            "point to open that member's report</div></div>\n";
  };
  scatter(kScatterEvKey, "explained variance", ev_points);
  if (any_ce) {
    // The CE scatter marks its own front: low L0 against a high CE loss score.
    std::vector<double> xs, ys;
    for (const auto& p : ce_points) {
      xs.push_back(p["x"].get<double>());
      ys.push_back(p["y"].get<double>());
    }
    auto front = pareto_front(xs, ys);
    for (size_t i = 0; i < ce_points.size(); ++i) ce_points[i]["pareto"] = bool(front[i]);
    scatter(kScatterCeKey, "CE loss score", ce_points);
  }
  body += "</div></section>\n";

  std::vector<std::string> labels;
  auto snaps = final_snapshots(s, labels);
  body += page::density_section(snaps, labels, true, data);
  body +=
      "<p class=\"note\">Charts: every member overlaid, x = training tokens; drag to zoom, "
      "double-click to reset.</p>\n" +
      page::chart_groups_html(keys, meta);
  return page::document("saelab sweep report: " + s.name, body, data);
}

}  // namespace saelab::vis
