#include "saelab/core/json.h"

#include "saelab/core/io.h"

namespace saelab {

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON (byte {}: {})", what, e.byte, e.what());
  } catch (const json::exception& e) {
    // Valid syntax that nlohmann cannot hold, e.g. a number beyond double (out_of_range.406).
    fail("{}: not valid JSON ({})", what, e.what());
  }
}

json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }

void write_json_atomic(const std::string& path, const json& j, int indent) {
  write_file_atomic(path, j.dump(indent) + "\n");
}

}  // namespace saelab
