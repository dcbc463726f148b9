#include "saelab/core/json.h"

#include "saelab/core/io.h"

namespace saelab {

namespace {

// nlohmann's messages quote the text they last read, which a hostile file makes arbitrarily long.
std::string short_reason(const char* what) {
  std::string m = what;
  constexpr size_t kMax = 240;
  return m.size() <= kMax ? m : m.substr(0, kMax) + "...";
}

}  // namespace

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON (byte {}: {})", what, e.byte, short_reason(e.what()));
  } catch (const json::exception& e) {
    // Valid syntax that nlohmann cannot hold, e.g. a number beyond double (out_of_range.406).
    fail("{}: not valid JSON ({})", what, short_reason(e.what()));
  }
}

json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }

void write_json_atomic(const std::string& path, const json& j, int indent) {
  write_file_atomic(path, j.dump(indent) + "\n");
}

}  // namespace saelab
