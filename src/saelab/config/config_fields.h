// Internal to train/config*.cpp: the table of RunnerConfig keys, each with its group, a typed
// setter that checks the JSON value's type (naming key, expected and got) and a getter. The table
// drives loading, saving, equality and "did you mean".
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"

namespace saelab::config_detail {

struct Field {
  std::string name;
  std::string group;         // heading in config.toml and docs/config.md
  std::string expected;      // "an integer", "a string", ... for error messages and docs
  bool is_string = false;    // a --set value that is not valid TOML is taken as this string
  bool is_optional = false;  // accepts null (JSON) or "none" from --set
  std::function<void(RunnerConfig&, const json&, const std::string& where)> set;
  std::function<json(const RunnerConfig&)> get;
};

// Every stored field, in documentation order. The input-only alias `k` is not in this table.
const std::vector<Field>& fields();
const Field* find_field(const std::string& name);

// "got string \"abc\"" style description of a JSON value for error messages.
std::string describe_value(const json& v);

// Levenshtein distance (for "did you mean").
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace saelab::config_detail
