// Template bodies for json.h.
#pragma once
#include "saelab/core/error.h"

namespace saelab {

template <typename T>
T get_field(const json& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) fail("{}: missing key '{}'", where, key);
  try {
    return it->template get<T>();
  } catch (const json::exception&) {
    fail("{}: key '{}' has the wrong type (got {})", where, key, it->dump());
  }
}

template <typename T>
T get_field_or(const json& j, const std::string& key, const T& fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->template get<T>();
  } catch (const json::exception&) {
    fail("{}: key '{}' has the wrong type (got {})", where, key, it->dump());
  }
}

}  // namespace saelab
