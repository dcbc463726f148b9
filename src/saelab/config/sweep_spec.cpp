// Sweep configs (sweep_spec.h): which values are sweeps, which keys may be swept, the Cartesian
// product of members with their names, and the sweep of an existing sweep directory (--resume).
#include "saelab/config/sweep_spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "saelab/config/config_fields.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab {

namespace {
namespace fs = std::filesystem;

bool is_list_key(const std::string& k) {
  return k == "seqpos_slice" || k == "matryoshka_widths" || k == "exclude_special_tokens";
}
bool is_table_key(const std::string& k) {
  return k == "model_kwargs" || k == "model_from_pretrained_kwargs" || k == "activation_fn_kwargs";
}

// Whether `v` given for `key` is a list of values to sweep rather than one value.
bool is_sweep_value(const std::string& key, const json& v) {
  if (key != "k" && !config_detail::find_field(key)) return false;  // the loader names it
  if (!v.is_array()) return false;
  if (is_table_key(key)) return true;
  if (is_list_key(key)) {
    if (v.empty()) return false;  // [] is one value (no widths, no excluded tokens)
    for (const auto& e : v)
      if (!e.is_array() && !(key == "exclude_special_tokens" && e.is_boolean())) return false;
    return true;
  }
  return true;
}

// `--set architecture=[topk, batchtopk]`: a bracketed list of bare words for a string key.
json bare_word_list(const std::string& text) {
  json out = json::array();
  std::string inner = text.substr(1, text.size() - 2), item;
  auto push = [&] {
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    out.push_back(a == std::string::npos ? std::string() : item.substr(a, b - a + 1));
    item.clear();
  };
  for (char c : inner) {
    if (c == ',')
      push();
    else
      item += c;
  }
  push();
  return out;
}

// Text of one value in a member's directory name: filesystem-safe, short.
std::string value_text(const json& v) {
  std::string s;
  switch (v.type()) {
    case json::value_t::null:
      s = "none";
      break;
    case json::value_t::number_float: {
      s = fmt::format("{}", v.get<double>());
      break;
    }
    case json::value_t::string:
      s = v.get<std::string>();
      break;
    case json::value_t::array: {
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "-" : "") + value_text(v[i]);
      if (v.empty()) s = "empty";
      break;
    }
    case json::value_t::object: {
      bool first = true;
      for (const auto& [k, e] : v.items())
        s += (first ? "" : "-") + k + value_text(e), first = false;
      if (first) s = "empty";
      break;
    }
    default:
      s = v.dump();
      break;
  }
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' ||
          c == '='))
      c = '-';
  return s;
}

bool draws_initial_sample(const RunnerConfig& c) {
  return c.b_dec_init_method != "zeros" || c.normalize_activations == "expected_average_only_in";
}

// Every member must read the same activation stream: the keys that shape it agree, and all or none
// draw the initial sample (b_dec init / activation scale), which shifts the stream.
void check_shared_stream(const std::vector<SweepMember>& ms) {
  if (ms.empty()) return;
  const json first = to_json(ms[0].cfg);
  for (size_t i = 1; i < ms.size(); ++i) {
    const json j = to_json(ms[i].cfg);
    // hook_layer follows each member's hook_name in a sweep over hook_name.
    const bool own_hook = ms[i].cfg.hook_name != ms[0].cfg.hook_name;
    for (const auto& f : config_detail::fields())
      if (f.name != "run_name" && !(own_hook && f.name == "hook_layer") &&
          !sweep_forbidden_reason(f.name).empty() && j[f.name] != first[f.name])
        fail("sweep: members {} and {} differ in {} ({} vs {}), which {}", ms[0].name, ms[i].name,
             f.name, first[f.name].dump(), j[f.name].dump(), sweep_forbidden_reason(f.name));
    if (draws_initial_sample(ms[i].cfg) != draws_initial_sample(ms[0].cfg)) {
      const SweepMember& no = draws_initial_sample(ms[0].cfg) ? ms[i] : ms[0];
      const SweepMember& yes = draws_initial_sample(ms[0].cfg) ? ms[0] : ms[i];
      fail(
          "sweep: member {} has b_dec_init_method = \"zeros\" (and normalize_activations = "
          "\"{}\"), "
          "so it draws no initial sample of activations, but member {} draws one; the sample "
          "shifts "
          "the shared activation stream, so sweep b_dec_init_method only among geometric_median "
          "and mean (or set normalize_activations = \"expected_average_only_in\")",
          no.name, no.cfg.normalize_activations, yes.name);
    }
  }
}

SweepSpec expand(const json& file, const std::string& where,
                 const std::vector<std::string>& items) {
  std::vector<ConfigOverride> sets;
  for (const auto& item : items) sets.push_back(parse_config_override(item));

  // The swept keys and where each comes from: the file (-1) or the --set item with that index.
  std::vector<std::string> keys;
  std::map<std::string, json> values;
  std::map<std::string, int> origin;
  std::vector<std::string> file_dropped;  // file sweeps that a single --set value replaced
  std::vector<bool> set_dropped(sets.size(), false);  // --set sweeps that a later one replaced
  for (const auto& [k, v] : file.items())
    if (is_sweep_value(k, v)) keys.push_back(k), values[k] = v, origin[k] = -1;
  for (size_t i = 0; i < sets.size(); ++i) {
    auto& o = sets[i];
    const auto* f = config_detail::find_field(o.key);
    if (f && f->is_string && o.value.is_string()) {
      const std::string t = o.value.get<std::string>();
      if (t.size() >= 2 && t.front() == '[' && t.back() == ']') o.value = bare_word_list(t);
    }
    auto it = std::find(keys.begin(), keys.end(), o.key);
    if (it != keys.end()) {  // a later --set replaces an earlier sweep of the key
      if (origin[o.key] < 0)
        file_dropped.push_back(o.key);
      else
        set_dropped[size_t(origin[o.key])] = true;
    }
    if (is_sweep_value(o.key, o.value)) {
      if (it == keys.end()) keys.push_back(o.key);
      values[o.key] = o.value;
      origin[o.key] = int(i);
    } else if (it != keys.end()) {
      keys.erase(it);
      values.erase(o.key);
      origin.erase(o.key);
    }
  }
  SweepSpec spec;
  if (keys.empty()) return spec;

  for (const auto& k : keys) {
    std::string why = sweep_forbidden_reason(k);
    if (!why.empty())
      fail("sweep: {} cannot be swept: it {}; train separate runs for its values", k, why);
    const json& vs = values[k];
    if (vs.empty()) fail("sweep: {} = [] lists no values", k);
    for (size_t a = 0; a < vs.size(); ++a)
      for (size_t b = a + 1; b < vs.size(); ++b)
        if (vs[a] == vs[b] || value_text(vs[a]) == value_text(vs[b]))
          fail("sweep: {} lists the value {} twice", k, vs[b].dump());
  }

  bool explicit_name = false;
  std::string given_name;
  if (file.contains("run_name") && file["run_name"].is_string())
    explicit_name = true, given_name = file["run_name"].get<std::string>();
  for (const auto& o : sets)
    if (o.key == "run_name" && o.value.is_string())
      explicit_name = true, given_name = o.value.get<std::string>();
  if (explicit_name && given_name.empty()) explicit_name = false;
  spec.keys = keys;
  for (const auto& k : keys) spec.values[k] = values[k];
  if (explicit_name) {
    spec.sweep_name = given_name;
  } else {
    spec.sweep_name = "sweep";
    for (const auto& k : keys) spec.sweep_name += "_" + k;
  }

  size_t n = 1;
  for (const auto& k : keys) n *= values[k].size();
  if (n > 256) fail("sweep: {} combinations is more than 256; sweep fewer values", n);
  std::set<std::string> names;
  for (size_t idx = 0; idx < n; ++idx) {
    SweepMember m;
    json f = file;
    for (const auto& k : file_dropped) f.erase(k);
    std::vector<ConfigOverride> s = sets;
    std::string label;
    size_t rest = idx, stride = n;
    for (const auto& k : keys) {
      stride /= values[k].size();
      const json& v = values[k][rest / stride];
      rest %= stride;
      m.values[k] = v;
      if (!m.name.empty()) m.name += "_", label += ", ";
      m.name += k + "=" + value_text(v);
      label += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      if (origin[k] < 0) {
        f[k] = v;
      } else {
        auto& o = s[size_t(origin[k])];
        o.value = v;
        o.text = k + "=" + v.dump();
      }
    }
    for (size_t i = s.size(); i-- > 0;)
      if (set_dropped[i]) s.erase(s.begin() + long(i));
    // A sweep over hook_name: each member's hook_layer is its hook's block (SAELens runs the
    // model up to hook_layer, and it must name the hook's block).
    if (m.values.contains("hook_name") && m.values["hook_name"].is_string()) {
      const std::string digits = block_digits(m.values["hook_name"].get<std::string>());
      if (!digits.empty() && digits.size() <= 9)
        s.push_back({"hook_layer", json(std::stoll(digits)), "hook_layer=" + digits});
    }
    if (m.name.size() > 120) m.name = fmt::format("{}_{}", m.name.substr(0, 110), idx);
    if (!names.insert(m.name).second) fail("sweep: two members would both be named {}", m.name);
    try {
      m.cfg = runner_config_from_inputs(&f, where, s);
    } catch (const Error& e) {
      fail("sweep member {}: {}", label, e.what());
    }
    m.cfg.run_name = spec.sweep_name + "_" + m.name;
    if (m.values.contains("hook_name")) {
      // (A toy member is refused by its own validation: hook_name has no effect on the toy.)
      const char* why = m.cfg.use_cached_activations
                            ? "cached activations hold one hook (cache each hook and sweep "
                              "separately)"
                        : m.cfg.hook_name_out   ? "a transcoder pairs two fixed hooks"
                        : m.cfg.hook_head_index ? "hook_head_index selects a head of one hook"
                                                : nullptr;
      if (why) fail("sweep: hook_name can be swept only over a model's hooks: {}", why);
    }
    spec.members.push_back(std::move(m));
  }
  check_shared_stream(spec.members);
  return spec;
}

}  // namespace

std::vector<std::string> sweep_hook_names(const SweepSpec& spec, size_t first, size_t stride) {
  std::vector<std::string> hooks;
  for (size_t i = first; i < spec.members.size(); i += std::max<size_t>(stride, 1))
    if (std::find(hooks.begin(), hooks.end(), spec.members[i].cfg.hook_name) == hooks.end())
      hooks.push_back(spec.members[i].cfg.hook_name);
  return hooks;
}

std::string sweep_forbidden_reason(const std::string& key) {
  static const std::map<std::string, std::string> reasons = [] {
    std::map<std::string, std::string> r;
    auto add = [&](std::initializer_list<const char*> ks, const char* why) {
      for (const char* k : ks) r[k] = why;
    };
    add({"model_name", "model_class_name", "model_kwargs", "model_from_pretrained_kwargs",
         "autocast_lm"},
        "selects or runs the language model that every member's activations come from");
    add({"hook_layer", "hook_head_index", "hook_eval", "hook_name_out"},
        "selects the hook point of the activations that every member trains on (sweep "
        "hook_name instead: each member's hook_layer follows its hook)");
    add({"dataset_path", "dataset_trust_remote_code", "streaming", "is_dataset_tokenized",
         "context_size", "prepend_bos", "seqpos_slice", "exclude_special_tokens",
         "sequence_separator_token", "disable_concat_sequences", "dataset_column",
         "dataset_revision", "dataset_split"},
        "changes the tokens or positions that the shared activations come from");
    add({"ddp_timeout_s"}, "applies to the collectives of the ranks, which every member shares");
    add({"use_cached_activations", "cached_activations_path"},
        "selects the activation source that every member shares");
    add({"n_batches_in_buffer", "store_batch_size_prompts", "act_store_device"},
        "changes the activations store's mixing buffer, and so the order of the shared batches");
    add({"training_tokens", "finetuning_tokens", "train_batch_size_tokens"},
        "sets the batches and steps, which the members share (every member trains on the same "
        "batches)");
    add({"d_in", "d_out"}, "is the width of the shared activations");
    add({"seed"},
        "seeds the data order (the toy stream, the cached shard order, the store's shuffling) as "
        "well as the SAE init, and the members share one activation stream");
    add({"device"}, "is where the shared activations are produced");
    add({"toy_n_features", "toy_feature_probability", "toy_probability_power_law",
         "toy_magnitude_mean", "toy_magnitude_std", "toy_correlated_groups", "toy_group_size",
         "toy_seed"},
        "changes the toy model, whose activations every member shares");
    add({"checkpoint_path", "run_name"},
        "names the sweep's directory (each member writes <sweep dir>/<member name>)");
    add({"resume"}, "is not a config key in saelab");
    return r;
  }();
  auto it = reasons.find(key);
  return it == reasons.end() ? std::string() : it->second;
}

SweepSpec load_sweep_config(const std::string& path, const std::vector<std::string>& sets) {
  json file = read_runner_config_keys(path);
  return expand(file, path.empty() ? "the default config" : path, sets);
}

SweepSpec load_sweep_config_text(const std::string& toml_text, const std::string& name,
                                 const std::vector<std::string>& sets) {
  return expand(read_runner_config_text_keys(toml_text, name), name, sets);
}

bool is_sweep_dir(const std::string& dir) { return path_exists(dir + "/sweep.json"); }

SweepSpec load_sweep_dir(const std::string& dir, const std::vector<std::string>& sets) {
  const std::string where = dir + "/sweep.json";
  json j = read_json_file(where);
  if (!j.contains("members") || !j["members"].is_array() || j["members"].empty())
    fail("{}: expected a list of sweep members", where);
  for (const auto& item : sets)
    if (is_sweep_value(parse_config_override(item).key, parse_config_override(item).value))
      fail("--set {}: a resumed sweep keeps its members; give one value", item);
  SweepSpec spec;
  spec.sweep_name = j.value("sweep_name", std::string("sweep"));
  if (j.contains("keys")) spec.keys = j["keys"].get<std::vector<std::string>>();
  spec.values = j.value("values", json::object());
  for (const auto& e : j["members"]) {
    SweepMember m;
    m.name = e.value("name", std::string());
    if (m.name.empty() || m.name.find('/') != std::string::npos)
      fail("{}: a member has no valid name", where);
    m.values = e.value("values", json::object());
    std::string path = dir + "/" + m.name + "/config.toml";
    if (!path_exists(path)) fail("{}: missing (member {} of the sweep)", path, m.name);
    m.cfg = load_runner_config(path, sets);
    spec.members.push_back(std::move(m));
  }
  if (spec.keys.empty()) spec.keys = {"member"};
  check_shared_stream(spec.members);
  return spec;
}

}  // namespace saelab
