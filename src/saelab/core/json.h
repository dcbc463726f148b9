// JSON helpers: read a file with errors that name it, typed field access with errors that name
// the key, atomic pretty-printed writes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace saelab {

using json = nlohmann::json;

json read_json_file(const std::string& path);
json parse_json(const std::string& text, const std::string& what);
void write_json_atomic(const std::string& path, const json& j, int indent = 2);

// get<T>(j, "key", "cfg.json") throws saelab::Error "cfg.json: key 'key' ..." when missing or of
// the wrong type.
template <typename T>
T get_field(const json& j, const std::string& key, const std::string& where);
template <typename T>
T get_field_or(const json& j, const std::string& key, const T& fallback, const std::string& where);

}  // namespace saelab

#include "saelab/core/json_impl.h"
