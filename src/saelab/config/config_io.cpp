// Reading and writing run configs: TOML / JSON files, `--set key=value` overrides, unknown-key
// suggestions, and the resolved config.toml that a run saves (it loads back to an equal config).
#include <toml++/toml.h>

#include <cmath>
#include <sstream>

#include "saelab/config/config_fields.h"
#include "saelab/config/runner_config.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab {

using config_detail::Field;
using config_detail::fields;
using config_detail::find_field;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json toml_to_json(const toml::node& n) {
  if (auto t = n.as_table()) {
    json o = json::object();
    for (const auto& [k, v] : *t) o[std::string(k.str())] = toml_to_json(v);
    return o;
  }
  if (auto a = n.as_array()) {
    json arr = json::array();
    for (const auto& e : *a) arr.push_back(toml_to_json(e));
    return arr;
  }
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return i->get();
  if (auto f = n.as_floating_point()) return f->get();
  if (auto b = n.as_boolean()) return b->get();
  std::ostringstream os;  // dates and times: keep their text
  if (auto d = n.as_date())
    os << *d;
  else if (auto t2 = n.as_time())
    os << *t2;
  else if (auto dt = n.as_date_time())
    os << *dt;
  return os.str();
}

// The keys that are accepted on input besides the table's own.
bool is_input_alias(const std::string& key) { return key == "k"; }

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& name : runner_config_keys()) {
    size_t d = config_detail::edit_distance(key, name);
    if (d < best_d) best_d = d, best = name;
  }
  if (best_d <= std::max<size_t>(3, key.size() / 3))
    fail("unknown key '{}' in {}; did you mean '{}'?", key, where, best);
  fail("unknown key '{}' in {}; see docs/config.md for the keys", key, where);
}

// Flattens SAELens v6's nesting ([sae], [logger]) into the flat v5 names.
json flatten(const json& in, const std::string& where) {
  if (!in.is_object()) fail("{}: expected a table of config keys at the top level", where);
  json out = json::object();
  for (const auto& [k, v] : in.items()) {
    if ((k == "sae" || k == "logger") && v.is_object()) {
      for (const auto& [k2, v2] : v.items()) out[k2] = v2;
    } else {
      out[k] = v;
    }
  }
  return out;
}

json parse_toml_text(const std::string& text, const std::string& name) {
  try {
    toml::table t = toml::parse(text, name);
    return toml_to_json(t);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    fail("{}:{}:{}: invalid TOML: {}", name, b.line, b.column, std::string(e.description()));
  }
}

json parse_file(const std::string& path) {
  if (ends_with(path, ".json")) return read_json_file(path);
  if (!ends_with(path, ".toml")) fail("{}: expected a run config ending in .toml or .json", path);
  return parse_toml_text(read_file(path), path);
}

// "key=value" -> (key, value): value parsed as TOML; a string-typed key takes unparseable (or
// non-string) text verbatim; an optional key takes none/null as absent.
std::pair<std::string, json> parse_override(const std::string& item) {
  auto eq = item.find('=');
  if (eq == std::string::npos || eq == 0)
    fail("--set {}: expected key=value (for example --set lr=1e-4)", item);
  auto trim = [](std::string s) {
    size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  };
  std::string key = trim(item.substr(0, eq));
  std::string raw = trim(item.substr(eq + 1));
  const Field* f = find_field(key);
  if (!f && !is_input_alias(key)) unknown_key(key, "--set " + item);
  if (f && f->is_optional && (raw == "none" || raw == "None" || raw == "null"))
    return {key, nullptr};
  json value;
  bool parsed = false;
  try {
    toml::table t = toml::parse("v = " + raw);
    if (auto n = t.get("v")) value = toml_to_json(*n), parsed = true;
  } catch (const toml::parse_error&) {
  }
  if (f && f->is_string && (!parsed || !value.is_string())) return {key, raw};
  if (!parsed)
    fail("--set {}: key '{}' expects {}, got '{}' (not a TOML value)", item, key,
         f ? f->expected : std::string("an integer"), raw);
  return {key, value};
}

// Applies keys to cfg; the top-level `k` goes into activation_fn_kwargs (SAELens v6 name).
void apply(RunnerConfig& cfg, const json& flat, const std::string& where, bool k_wins) {
  std::optional<json> k;
  for (const auto& [key, v] : flat.items()) {
    if (is_input_alias(key)) {
      k = v;
      continue;
    }
    const Field* f = find_field(key);
    if (!f) unknown_key(key, where);
    f->set(cfg, v, where);
  }
  if (k) {
    if (!k->is_number())
      fail("{}: key 'k' expects an integer, got {}", where, config_detail::describe_value(*k));
    auto it = cfg.activation_fn_kwargs.find("k");
    if (!k_wins && it != cfg.activation_fn_kwargs.end() && *it != *k)
      fail("{}: key 'k' = {} disagrees with activation_fn_kwargs.k = {}; give one of them", where,
           k->dump(), it->dump());
    cfg.activation_fn_kwargs["k"] = *k;
  }
}

// A TOML literal for a JSON value (TOML has no null: callers drop null keys; null inside arrays,
// which only seqpos_slice has, is written "none").
std::string toml_literal(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "\"none\"";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return v.dump();
    case json::value_t::number_float: {
      double d = v.get<double>();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      std::string s = fmt::format("{}", d);  // shortest text that reads back exactly
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    case json::value_t::string:
      return json(v.get<std::string>()).dump();  // JSON escapes are TOML's
    case json::value_t::array: {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + toml_literal(v[i]);
      return s + "]";
    }
    case json::value_t::object: {
      std::string s = "{";
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (e.is_null()) continue;
        s += (first ? " " : ", ") + json(k).dump() + " = " + toml_literal(e);
        first = false;
      }
      return s + (first ? "}" : " }");
    }
    default:
      return json(v.dump()).dump();
  }
}

}  // namespace

const std::vector<std::string>& runner_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& f : fields()) k.push_back(f.name);
    k.push_back("k");
    return k;
  }();
  return keys;
}

namespace {

RunnerConfig load_with_overrides(const json* file, std::string where,
                                 const std::vector<std::string>& overrides) {
  RunnerConfig cfg;
  if (file) apply(cfg, flatten(*file, where), where, false);
  bool set_d_sae = false, set_ef = false;
  for (const auto& item : overrides) {
    auto [key, value] = parse_override(item);
    set_d_sae |= key == "d_sae";
    set_ef |= key == "expansion_factor";
    apply(cfg, json{{key, value}}, "--set " + item, true);
  }
  // Overriding one of d_sae / expansion_factor replaces the file's other one rather than clashing.
  if (set_d_sae && !set_ef) cfg.expansion_factor.reset();
  if (set_ef && !set_d_sae) cfg.d_sae.reset();
  if (!overrides.empty()) where += " with --set overrides";
  return resolve_runner_config(cfg, where);
}

}  // namespace

json read_runner_config_keys(const std::string& path) {
  if (path.empty()) return json::object();
  return flatten(parse_file(path), path);
}

json read_runner_config_text_keys(const std::string& toml_text, const std::string& name) {
  return flatten(parse_toml_text(toml_text, name), name);
}

ConfigOverride parse_config_override(const std::string& item) {
  auto [key, value] = parse_override(item);
  return {key, value, item};
}

// load_with_overrides on inputs already read (the file flattened, the --set items parsed).
RunnerConfig runner_config_from_inputs(const json* flat_file, const std::string& where_in,
                                       const std::vector<ConfigOverride>& sets) {
  std::string where = where_in;
  RunnerConfig cfg;
  if (flat_file) apply(cfg, *flat_file, where, false);
  bool set_d_sae = false, set_ef = false;
  for (const auto& o : sets) {
    set_d_sae |= o.key == "d_sae";
    set_ef |= o.key == "expansion_factor";
    apply(cfg, json{{o.key, o.value}}, "--set " + o.text, true);
  }
  if (set_d_sae && !set_ef) cfg.expansion_factor.reset();
  if (set_ef && !set_d_sae) cfg.d_sae.reset();
  if (!sets.empty()) where += " with --set overrides";
  return resolve_runner_config(cfg, where);
}

RunnerConfig load_runner_config(const std::string& path,
                                const std::vector<std::string>& overrides) {
  if (path.empty()) return load_with_overrides(nullptr, "the default config", overrides);
  json file = parse_file(path);
  return load_with_overrides(&file, path, overrides);
}

RunnerConfig load_runner_config_text(const std::string& toml_text, const std::string& name,
                                     const std::vector<std::string>& overrides) {
  json file = parse_toml_text(toml_text, name);
  return load_with_overrides(&file, name, overrides);
}

json to_json(const RunnerConfig& cfg) {
  json j = json::object();
  for (const auto& f : fields()) j[f.name] = f.get(cfg);
  return j;
}

std::string to_toml(const RunnerConfig& cfg) {
  std::string out =
      "# saelab run config (resolved). Keys are SAELens's LanguageModelSAERunnerConfig fields;\n"
      "# see docs/config.md. Load it with: saelab train <this file>\n";
  std::string group;
  for (const auto& f : fields()) {
    json v = f.get(cfg);
    if (v.is_null()) continue;  // an absent optional
    if (f.group != group) {
      group = f.group;
      out += "\n# --- " + group + " ---\n";
    }
    out += f.name + " = " + toml_literal(v) + "\n";
  }
  return out;
}

bool RunnerConfig::operator==(const RunnerConfig& o) const { return to_json(*this) == to_json(o); }

}  // namespace saelab
