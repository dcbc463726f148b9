// metrics.jsonl: its writer and its one reader (see metrics_jsonl.h).
#include "saelab/log/metrics_jsonl.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab {

MetricsJsonl::MetricsJsonl(const std::string& path, int64_t drop_after_step) : path_(path) {
  if (drop_after_step >= 0 && path_exists(path)) {
    // Keep the lines up to the resume step; a torn last line (killed mid-write) is dropped too.
    std::istringstream in(read_file(path));
    std::string line, kept;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      auto it = j.find("step");
      if (it != j.end() && it->is_number() && it->get<int64_t>() > drop_after_step) continue;
      kept += line + "\n";
    }
    write_file_atomic(path, kept);
  }
  file_ = std::fopen(path.c_str(), "ab");
  if (!file_) fail("{}: cannot open metrics file for appending ({})", path, std::strerror(errno));
}

MetricsJsonl::~MetricsJsonl() {
  if (file_) std::fclose(file_);
}

void MetricsJsonl::write(int64_t step, const std::map<std::string, double>& values) {
  json j = json::object();
  for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? json(v) : json(nullptr);
  write(step, j);
}

void MetricsJsonl::write(int64_t step, const json& values) {
  json line = json::object();
  line["step"] = step;
  for (const auto& [k, v] : values.items()) {
    if (k == "step") continue;
    line[k] = (v.is_number_float() && !std::isfinite(v.get<double>())) ? json(nullptr) : v;
  }
  std::string text = line.dump() + "\n";
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0)
    fail("{}: cannot write metrics ({})", path_, std::strerror(errno));
}

void MetricsJsonl::flush() {
  if (file_) std::fflush(file_);
}

MetricSeries read_metrics_jsonl(const std::string& path, std::vector<std::string>* errors,
                                MetricsJsonlInfo* info) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open for reading", path);
  MetricSeries m;
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(l, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      if (i + 1 == lines.size()) {  // a run killed mid-write leaves a partial last line
        if (info) info->torn_last_line = true;
        break;
      }
      fail("{}:{}: expected one JSON object per line", path, i + 1);
    }
    auto st = j.find("step");
    if (st == j.end() || !st->is_number())
      fail("{}:{}: expected a numeric \"step\" field", path, i + 1);
    const int64_t step = st->get<int64_t>();
    if (info) {
      ++info->lines;
      info->last_step = std::max(info->last_step, step);
    }
    for (const auto& [k, v] : j.items()) {
      if (k == "step") continue;
      if (v.is_number()) {
        const double d = v.get<double>();
        if (std::isfinite(d)) m[k].push_back({step, d});
      } else if (v.is_null() && info) {
        info->non_finite_steps[k].push_back(step);
      } else if (v.is_string() && errors &&
                 (k == "error" || (k.size() > 6 && k.substr(k.size() - 6) == "/error"))) {
        errors->push_back(v.get<std::string>());
      }
    }
  }
  for (auto& [k, s] : m)
    std::stable_sort(s.begin(), s.end(),
                     [](const MetricPoint& a, const MetricPoint& b) { return a.step < b.step; });
  return m;
}

}  // namespace saelab
