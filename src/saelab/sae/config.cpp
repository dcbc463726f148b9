// SaeConfig <-> cfg.json, in the layouts SAELens reads and writes.
//
// Reading. SAELens has two layouts (sae_lens/loading/pretrained_sae_loaders.py,
// handle_config_defaulting / handle_pre_6_0_config, v6.18):
//  - pre-6 ("v5 flat"): every field at the top level, as SAELens 5's SAEConfig.to_dict writes it;
//    topk is `activation_fn_str: "topk"` + `activation_fn_kwargs: {k: N}`; old aliases hook_point,
//    hook_point_layer, hook_point_head_index, activation_fn; a missing architecture is "standard";
//    a bool normalize_activations means "expected_average_only_in" (true) / "none" (false).
//  - v6: SAE fields (d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
//    reshape_activations, architecture, topk's k) at the top level, the model/hook/dataset fields
//    under "metadata".
//  SAELens picks the layout by sae_lens_version (top level, or metadata.sae_lens_version): below
//  6.0.0-rc.0 or absent means pre-6. saelab does the same, and looks in the other place when a
//  field is absent from the one the version points to.
//
// Writing: both at once. The flat v5 fields (SAELens 5's to_dict keys, which SAELens 5 requires:
// hook_layer, activation_fn_str, finetuning_scaling_factor, dataset_trust_remote_code, ...) at the
// top level, topk's `k` at the top level as well as in activation_fn_kwargs, and a complete
// "metadata" object with the model/hook/dataset fields. saelab writes no sae_lens_version of its
// own, so SAELens 6's SAE.load_from_disk converts the file through handle_pre_6_0_config, which
// reads exactly the flat fields; if a sae_lens_version >= 6 was read from a SAELens 6 file and
// kept, SAELens 6 reads the v6 path instead and finds the same values under metadata. SAELens 5
// ignores "metadata". Unknown fields (top level and inside metadata) are written back unchanged.
#include "saelab/sae/config.h"

#include <cctype>
#include <regex>
#include <set>

#include "saelab/core/error.h"
#include "saelab/sae/registry.h"

namespace saelab {
namespace {

// Model/hook/dataset fields that v6 keeps under "metadata" and SaeConfig has as members.
const char* const kMetadataFields[] = {
    "model_name",  "hook_name",    "hook_head_index", "context_size",
    "prepend_bos", "dataset_path", "seqpos_slice",    "model_from_pretrained_kwargs"};

// A transcoder's own fields (top level and metadata; d_out only at the top level).
const char* const kTranscoderFields[] = {"d_out", "hook_name_out", "hook_layer_out",
                                         "hook_head_index_out"};
// Pre-6 aliases that SAELens renames on load.
const std::map<std::string, std::string> kAliases = {{"hook_name", "hook_point"},
                                                     {"hook_layer", "hook_point_layer"},
                                                     {"hook_head_index", "hook_point_head_index"}};

int version_major(const json& v) {
  if (!v.is_string()) return -1;
  const std::string s = v.get<std::string>();
  size_t i = 0;
  while (i < s.size() && !std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == s.size()) return -1;
  return std::atoi(s.c_str() + i);
}

bool is_v6_layout(const json& j) {
  if (j.contains("sae_lens_version") && !j["sae_lens_version"].is_null())
    return version_major(j["sae_lens_version"]) >= 6;
  if (j.contains("metadata") && j["metadata"].is_object() &&
      j["metadata"].contains("sae_lens_version"))
    return version_major(j["metadata"]["sae_lens_version"]) >= 6;
  return false;
}

struct Reader {
  const json& top;
  const json* meta;  // nullptr when there is no metadata object
  bool v6;
  const std::string& where;

  // The value of a model/hook/dataset field: v6 looks under metadata first, pre-6 at the top level
  // first (then the alias); null counts as absent.
  const json* find_meta_field(const std::string& key) const {
    auto in = [&](const json* obj, const std::string& k) -> const json* {
      if (!obj) return nullptr;
      auto it = obj->find(k);
      return (it == obj->end() || it->is_null()) ? nullptr : &*it;
    };
    auto alias = kAliases.find(key);
    const json* flat = in(&top, key);
    if (!flat && alias != kAliases.end()) flat = in(&top, alias->second);
    const json* m = in(meta, key);
    return v6 ? (m ? m : flat) : (flat ? flat : m);
  }
  const json* find_top(const std::string& key) const {
    auto it = top.find(key);
    return (it == top.end() || it->is_null()) ? nullptr : &*it;
  }
};

template <typename T>
T as(const json& v, const std::string& key, const std::string& where, const char* type_name) {
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>)
    ok = v.is_boolean();
  else if constexpr (std::is_same_v<T, int64_t>)
    ok = v.is_number_integer();
  else if constexpr (std::is_same_v<T, std::string>)
    ok = v.is_string();
  if (!ok) fail("{}: key '{}' must be {}, got {}", where, key, type_name, v.dump());
  return v.get<T>();
}

int64_t hook_layer_from_name(const std::string& hook_name) {
  static const std::regex re(R"(^blocks\.(\d+)\.)");
  std::smatch m;
  if (!std::regex_search(hook_name, m, re)) return 0;
  // std::stoll throws std::out_of_range on a long digit run; no model has a billion blocks.
  if (m[1].length() > 9)
    fail("hook_name '{}': block number {} is out of range", hook_name, m[1].str());
  return std::stoll(m[1].str());
}

}  // namespace

SaeConfig SaeConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object, got {}", where, j.type_name());
  const json* meta = nullptr;
  if (j.contains("metadata") && !j["metadata"].is_null()) {
    if (!j["metadata"].is_object())
      fail("{}: key 'metadata' must be an object, got {}", where, j["metadata"].dump());
    meta = &j["metadata"];
  }
  const bool v6 = is_v6_layout(j);
  Reader r{j, meta, v6, where};
  SaeConfig c;
  std::set<std::string> used = {"metadata"};

  // Architecture; SAELens defaults it to standard only in its pre-6 conversion.
  if (auto* v = r.find_top("architecture")) {
    c.architecture = as<std::string>(*v, "architecture", where, "a string");
  } else if (v6) {
    fail("{}: missing key 'architecture' (required in a SAELens 6 cfg.json)", where);
  }
  used.insert("architecture");
  // v5 topk: activation_fn_str "topk" (alias activation_fn) with activation_fn_kwargs.k.
  std::string activation_fn = "relu";
  for (const char* key : {"activation_fn_str", "activation_fn"}) {
    used.insert(key);
    if (auto* v = r.find_top(key)) activation_fn = as<std::string>(*v, key, where, "a string");
  }
  // A transcoder's name ("jumprelu_skip_transcoder") carries its inference architecture.
  std::string transcoder_of;
  const bool transcoder =
      parse_transcoder_architecture(c.architecture, &transcoder_of, &c.skip_connection);
  if (transcoder) c.architecture = transcoder_of;
  c.architecture = saved_architecture(c.architecture, activation_fn, where);
  c.activation_fn = activation_fn == "tanh-relu" ? activation_fn : "relu";

  auto need_int = [&](const char* key) {
    auto* v = r.find_top(key);
    if (!v) fail("{}: missing key '{}'", where, key);
    int64_t n = as<int64_t>(*v, key, where, "an integer");
    if (n <= 0) fail("{}: key '{}' must be positive, got {}", where, key, n);
    used.insert(key);
    return n;
  };
  c.d_in = need_int("d_in");
  c.d_sae = need_int("d_sae");
  if (transcoder) c.d_out = need_int("d_out");

  if (find_architecture(c.architecture, where).k_sparse) {
    const json* kwargs_k = nullptr;
    if (auto* kw = r.find_top("activation_fn_kwargs"); kw && kw->is_object() && kw->contains("k"))
      kwargs_k = &(*kw)["k"];
    const json* top_k = r.find_top("k");
    // SAELens's pre-6 conversion takes activation_fn_kwargs.k; v6 reads the top-level k.
    const json* kv = v6 ? (top_k ? top_k : kwargs_k) : (kwargs_k ? kwargs_k : top_k);
    if (!kv) fail("{}: topk needs 'k' (or activation_fn_kwargs.k)", where);
    c.k = as<int64_t>(*kv, "k", where, "an integer");
    if (c.k <= 0 || c.k > c.d_sae)
      fail("{}: key 'k' must be in [1, d_sae={}], got {}", where, c.d_sae, c.k);
    used.insert("k");
  }

  used.insert("dtype");
  if (auto* v = r.find_top("dtype")) c.dtype = as<std::string>(*v, "dtype", where, "a string");
  sae_scalar_type(c.dtype, where);  // validates
  used.insert("device");
  if (auto* v = r.find_top("device")) c.device = as<std::string>(*v, "device", where, "a string");
  used.insert("apply_b_dec_to_input");
  if (auto* v = r.find_top("apply_b_dec_to_input"))
    c.apply_b_dec_to_input = as<bool>(*v, "apply_b_dec_to_input", where, "true or false");

  used.insert("normalize_activations");
  if (auto* v = r.find_top("normalize_activations")) {
    if (v->is_boolean()) {
      c.normalize_activations = v->get<bool>() ? "expected_average_only_in" : "none";
    } else {
      c.normalize_activations = as<std::string>(*v, "normalize_activations", where, "a string");
    }
  }
  if (transcoder && c.apply_b_dec_to_input)
    fail("{}: apply_b_dec_to_input = true is not supported for transcoders (b_dec is [d_out])",
         where);
  static const std::set<std::string> kNorms = {"none", "expected_average_only_in",
                                               "constant_norm_rescale", "layer_norm"};
  if (!kNorms.count(c.normalize_activations))
    fail(
        "{}: normalize_activations '{}' is not one of none, expected_average_only_in, "
        "constant_norm_rescale, layer_norm",
        where, c.normalize_activations);

  if (transcoder && c.normalize_activations != "none")
    fail(
        "{}: normalize_activations '{}' is not supported for transcoders (a transcoder's output "
        "is not its normalised input); expected none",
        where, c.normalize_activations);
  // Model/hook/dataset fields.
  if (auto* v = r.find_meta_field("model_name"))
    c.model_name = as<std::string>(*v, "model_name", where, "a string");
  if (auto* v = r.find_meta_field("hook_name"))
    c.hook_name = as<std::string>(*v, "hook_name", where, "a string");
  if (auto* v = r.find_meta_field("hook_layer")) {
    c.hook_layer = as<int64_t>(*v, "hook_layer", where, "an integer");
  } else {
    c.hook_layer = hook_layer_from_name(c.hook_name);  // v6 dropped hook_layer
  }
  if (auto* v = r.find_meta_field("hook_head_index"))
    c.hook_head_index = as<int64_t>(*v, "hook_head_index", where, "an integer or null");
  if (auto* v = r.find_meta_field("context_size"))
    c.context_size = as<int64_t>(*v, "context_size", where, "an integer");
  if (auto* v = r.find_meta_field("prepend_bos"))
    c.prepend_bos = as<bool>(*v, "prepend_bos", where, "true or false");
  if (auto* v = r.find_meta_field("dataset_path"))
    c.dataset_path = as<std::string>(*v, "dataset_path", where, "a string");
  if (auto* v = r.find_meta_field("seqpos_slice")) {
    if (!v->is_array()) fail("{}: key 'seqpos_slice' must be a list, got {}", where, v->dump());
    c.seqpos_slice = *v;
  }
  if (auto* v = r.find_meta_field("model_from_pretrained_kwargs")) {
    if (!v->is_object())
      fail("{}: key 'model_from_pretrained_kwargs' must be an object, got {}", where, v->dump());
    c.model_from_pretrained_kwargs = *v;
  }
  if (transcoder) {
    if (auto* v = r.find_meta_field("hook_name_out"))
      c.hook_name_out = as<std::string>(*v, "hook_name_out", where, "a string");
    if (auto* v = r.find_meta_field("hook_layer_out"))
      c.hook_layer_out = as<int64_t>(*v, "hook_layer_out", where, "an integer");
    else
      c.hook_layer_out = hook_layer_from_name(c.hook_name_out);
    if (r.find_meta_field("hook_head_index_out"))
      fail("{}: hook_head_index_out is not supported (a transcoder writes the whole hook)", where);
  }
  for (const char* key : kTranscoderFields) used.insert(key);
  for (const char* key : kMetadataFields) used.insert(key);
  used.insert("hook_layer");
  for (auto& [name, alias] : kAliases) used.insert(alias);

  // Everything else is kept as it was.
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!used.count(it.key())) c.extra[it.key()] = it.value();
  if (meta) {
    json rest = json::object();
    std::set<std::string> known(std::begin(kMetadataFields), std::end(kMetadataFields));
    known.insert("hook_layer");
    known.insert(std::begin(kTranscoderFields), std::end(kTranscoderFields));
    for (auto it = meta->begin(); it != meta->end(); ++it)
      if (!known.count(it.key())) rest[it.key()] = it.value();
    if (!rest.empty()) c.extra["metadata"] = rest;
  }
  // k lives in the field, not in the kept kwargs (to_json puts it back for topk).
  if (c.extra.contains("activation_fn_kwargs") && c.extra["activation_fn_kwargs"].is_object())
    c.extra["activation_fn_kwargs"].erase("k");
  return c;
}

json SaeConfig::to_json() const {
  json j = json::object();
  json extra_meta = json::object();
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (it.key() == "metadata") {
      if (it.value().is_object()) extra_meta = it.value();
    } else {
      j[it.key()] = it.value();
    }
  }
  j["architecture"] = architecture;
  j["d_in"] = d_in;
  j["d_sae"] = d_sae;
  j["dtype"] = dtype;
  j["device"] = device;
  j["apply_b_dec_to_input"] = apply_b_dec_to_input;
  j["normalize_activations"] = normalize_activations;

  json meta = extra_meta;
  auto put_meta = [&](const char* key, const json& v) {
    j[key] = v;
    meta[key] = v;
  };
  put_meta("model_name", model_name);
  put_meta("hook_name", hook_name);
  put_meta("hook_head_index", hook_head_index ? json(*hook_head_index) : json(nullptr));
  put_meta("context_size", context_size);
  put_meta("prepend_bos", prepend_bos);
  put_meta("dataset_path", dataset_path);
  put_meta("seqpos_slice", seqpos_slice);
  put_meta("model_from_pretrained_kwargs", model_from_pretrained_kwargs);
  j["hook_layer"] = hook_layer;
  if (is_transcoder()) {
    j["architecture"] = transcoder_file_architecture(architecture, skip_connection);
    j["d_out"] = d_out;
    put_meta("hook_name_out", hook_name_out);
    put_meta("hook_layer_out", hook_layer_out);
    put_meta("hook_head_index_out", nullptr);
  }

  // SAELens 5 requires these; keep what was read, else its defaults.
  json kwargs = j.contains("activation_fn_kwargs") && j["activation_fn_kwargs"].is_object()
                    ? j["activation_fn_kwargs"]
                    : json::object();
  const bool k_sparse = find_architecture(architecture, "SAE config").k_sparse;
  if (k_sparse) {
    kwargs["k"] = k;
    j["k"] = k;
  } else {
    kwargs.erase("k");
  }
  j["activation_fn_kwargs"] = kwargs;
  j["activation_fn_str"] = k_sparse ? "topk" : activation_fn;
  if (!j.contains("finetuning_scaling_factor")) j["finetuning_scaling_factor"] = false;
  if (!j.contains("dataset_trust_remote_code")) j["dataset_trust_remote_code"] = true;
  if (!j.contains("sae_lens_training_version")) j["sae_lens_training_version"] = nullptr;
  if (!j.contains("neuronpedia_id")) j["neuronpedia_id"] = nullptr;
  j["metadata"] = meta;
  return j;
}

}  // namespace saelab
