// metrics.jsonl writer (see metrics_jsonl.h).
#include "saelab/log/metrics_jsonl.h"

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

}  // namespace saelab
