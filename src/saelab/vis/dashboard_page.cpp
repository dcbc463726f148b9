// Compact page encoding and the page shell of `saelab vis` (dashboard_page.h). The record format
// the JS reads is described at the top of assets/dashboard.js.
#include "saelab/vis/dashboard_page.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "saelab/core/error.h"
#include "saelab/vis/html.h"

namespace saelab::vis {
namespace {

// f[k] by reference, or an empty array when absent (json::value would copy the whole list).
const json& list_at(const json& f, const char* k) {
  static const json empty = json::array();
  return f.contains(k) ? f.at(k) : empty;
}

constexpr size_t kChunk = 256;  // features per lazily parsed <script> chunk

// x rounded to 4 significant digits: the page shows 3, and shorter numbers keep it small.
double r4(double x) {
  if (x == 0 || !std::isfinite(x)) return std::isfinite(x) ? 0.0 : x;
  const double scale = std::pow(10.0, 3 - std::floor(std::log10(std::fabs(x))));
  return std::round(x * scale) / scale;
}

json pairs(const json& list, const char* a, const char* b) {
  json out = json::array();
  for (const auto& e : list) out.push_back({e.at(a), r4(e.at(b).get<double>())});
  return out;
}

class Encoder {
 public:
  explicit Encoder(json& prompts) : prompts_(prompts) {}

  // [prompt key, position, context start, context length, (offset, q)...]. Examples whose window
  // is not among the stored prompts get a synthetic prompt holding just their context.
  json example(const json& e, double mx) {
    const int64_t pos = e.at("position").get<int64_t>();
    int64_t start = e.at("context_start").get<int64_t>();
    const auto& ids = e.at("token_ids");
    std::string key = std::to_string(e.at("prompt").get<int64_t>());
    int64_t p = pos;
    if (!prompts_.contains(key)) {
      key = "s" + std::to_string(synthetic_++);
      prompts_[key] = ids;
      p = pos - start;
      start = 0;
    }
    json out = json::array({key, p, start, ids.size()});
    const auto& acts = e.at("acts");
    for (size_t k = 0; k < acts.size(); ++k) {
      const double a = acts[k].get<double>();
      if (!(a > 0) || !(mx > 0)) continue;
      out.push_back(k);
      out.push_back(std::clamp<int64_t>(std::llround(a / mx * 255.0), 1, 255));
    }
    return out;
  }

  json record(const json& f) {
    const double mx = f.value("max_act", 0.0);
    json r = {{"i", f.at("index")},
              {"d", r4(f.value("density", 0.0))},
              {"mx", r4(mx)},
              {"mn", r4(f.value("mean_act", 0.0))},
              {"n", f.value("fires", 0)}};
    // Quantisation is relative to the rounded max the page sees.
    const double qmx = r4(mx);
    if (f.contains("histogram") && !f["histogram"]["counts"].empty()) {
      r["h"] = f["histogram"]["counts"];
      r["R"] = f["histogram"]["bin_edges"].back();
    }
    json t = json::array(), tl = json::array();
    for (const auto& e : list_at(f, "top_examples")) {
      t.push_back(example(e, qmx));
      const json& le = e.contains("loss_effect") ? e.at("loss_effect") : json(nullptr);
      tl.push_back(le.is_number() ? json(r4(le.get<double>())) : json(nullptr));
    }
    r["t"] = t;
    r["tl"] = tl;  // the top examples' loss effects (null: not computed)
    json bands = json::array();
    for (const auto& b : list_at(f, "quantile_groups")) {
      json ex = json::array();
      for (const auto& e : b.at("examples")) ex.push_back(example(e, qmx));
      bands.push_back(
          {r4(b.at("lo").get<double>()), r4(b.at("hi").get<double>()), b.at("count"), ex});
    }
    r["b"] = bands;
    if (f.contains("top_logits") && !f["top_logits"].empty()) {
      r["pl"] = pairs(f["top_logits"], "token_id", "value");
      r["nl"] = pairs(f["bottom_logits"], "token_id", "value");
    }
    if (f.contains("logit_histogram")) {
      const auto& lh = f["logit_histogram"];
      r["lh"] = {r4(lh["bin_edges"].front().get<double>()),
                 r4(lh["bin_edges"].back().get<double>()), lh["counts"]};
    }
    if (f.contains("neighbours")) r["nb"] = pairs(f["neighbours"], "index", "cosine");
    if (f.contains("correlated")) r["cr"] = pairs(f["correlated"], "index", "corr");
    if (f.contains("neurons")) r["nu"] = pairs(f["neurons"], "index", "value");
    if (f.contains("probes")) {
      json pr = json::object();
      for (const auto& [name, v] : f["probes"].items()) {
        json d = json::object();
        for (const char* k : {"input", "output"}) {
          json a = json::array();
          for (const auto& x : v.at(k)) a.push_back(r4(x.get<double>()));
          d[k] = a;
        }
        pr[name] = d;
      }
      r["pr"] = pr;
    }
    return r;
  }

 private:
  json& prompts_;
  int64_t synthetic_ = 0;
};

// The index row: [feature, density, max act, the token at the top example's position or -1].
json index_row(const json& f) {
  int64_t top_tok = -1;
  const auto& t = list_at(f, "top_examples");
  if (!t.empty()) {
    const auto& e = t[0];
    const int64_t k = e["position"].get<int64_t>() - e["context_start"].get<int64_t>();
    top_tok = e["token_ids"][k].get<int64_t>();
  }
  return json::array(
      {f.at("index"), r4(f.value("density", 0.0)), r4(f.value("max_act", 0.0)), top_tok});
}

std::string page(const std::string& title, const json& meta, const json& index,
                 const std::vector<json>& chunks, const json* prompt) {
  std::string html;
  html += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>";
  html += html_escape(title);
  html += "</title>\n";
  html += style_tag(asset("dashboard.css"));
  html += "\n</head><body>\n<header><h1>" + html_escape(title) + "</h1><span>" +
          html_escape(meta.value("subtitle", "")) + "</span></header>\n";
  html += "<div id=\"wrap\"><div id=\"side\"></div><div id=\"main\"></div></div>\n";
  html += json_script_tag("meta", meta) + "\n";
  html += json_script_tag("index", index) + "\n";
  if (prompt) html += json_script_tag("prompt", *prompt) + "\n";
  for (size_t c = 0; c < chunks.size(); ++c)
    html += json_script_tag("c" + std::to_string(c), chunks[c]) + "\n";
  html += script_tag(asset("dashboard.js"));
  html += "\n</body></html>\n";
  return html;
}

void encode_features(const json& features, Encoder& enc, json& index, std::vector<json>& chunks) {
  for (size_t k = 0; k < features.size(); ++k) {
    if (k % kChunk == 0) chunks.push_back(json::array());
    chunks.back().push_back(enc.record(features[k]));
    index.push_back(index_row(features[k]));
  }
}

}  // namespace

std::string feature_dashboard_html(const json& stats, const json& page_data,
                                   const std::string& title) {
  json prompts = page_data.value("prompts", json::object());
  Encoder enc(prompts);
  json index = json::array();
  std::vector<json> chunks;
  encode_features(stats.at("features"), enc, index, chunks);
  json meta = {{"kind", "features"},
               {"chunk", kChunk},
               {"othello", page_data.value("othello", false)},
               {"vocab", page_data.value("vocab", json::object())},
               {"prompts", prompts},
               {"subtitle", stats.value("hook_name", "") + " · " + stats.value("model", "") +
                                " · " + std::to_string(stats.value("n_tokens", 0)) + " tokens"}};
  return page(title, meta, index, chunks, nullptr);
}

std::string prompt_view_html(const json& view, const std::string& title) {
  json prompts = json::object();
  Encoder enc(prompts);
  json index = json::array();
  std::vector<json> chunks;
  encode_features(view.at("features"), enc, index, chunks);
  json meta = {{"kind", "prompt"},
               {"chunk", kChunk},
               {"othello", false},
               {"vocab", view.value("vocab", json::object())},
               {"prompts", prompts},
               {"subtitle", view.value("hook_name", "") + " · " + view.value("model", "")}};
  json p = {{"tokens", view.at("tokens")},
            {"token_ids", view.at("token_ids")},
            {"position", view.at("position")},
            {"max_act", view.value("max_act", 0.0)}};
  json per = json::array();
  for (const auto& tok : view.at("per_token")) {
    json row = json::array();
    for (const auto& e : tok) row.push_back({e.at("index"), r4(e.at("act").get<double>())});
    per.push_back(row);
  }
  p["per_token"] = per;
  json ranked = json::array();
  for (const auto& e : view.at("ranked")) {
    auto num = [&](const char* k) -> json {
      return e.contains(k) && e[k].is_number() ? json(r4(e[k].get<double>())) : json(nullptr);
    };
    ranked.push_back(
        {e.at("index"), r4(e.at("act").get<double>()), num("quantile"), num("loss_effect")});
  }
  p["ranked"] = ranked;
  return page(title, meta, index, chunks, &p);
}

}  // namespace saelab::vis
