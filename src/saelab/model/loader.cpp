// load_model: name -> files -> ModelConfig + canonical float32 weights -> Transformer.
#include "saelab/model/loader.h"

#include <fmt/ranges.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/core/torch_pickle.h"
#include "saelab/model/hf_cache.h"
#include "saelab/model/loader_internal.h"
#include "saelab/model/transformer.h"

namespace fs = std::filesystem;

namespace saelab {

LoadedModel::LoadedModel() = default;
LoadedModel::LoadedModel(LoadedModel&&) noexcept = default;
LoadedModel& LoadedModel::operator=(LoadedModel&&) noexcept = default;
LoadedModel::~LoadedModel() = default;

namespace {

// Floating-point tensors (bf16, f16, f64) become float32 on the CPU; integer buffers stay.
void upcast_into(StateDict& out, std::map<std::string, at::Tensor>&& in) {
  for (auto& [k, v] : in) out[k] = v.is_floating_point() ? v.to(at::kFloat).contiguous() : v;
}

// A sharded checkpoint: {"weight_map": {tensor: shard file}}; each shard read once.
StateDict read_sharded(const std::string& index_path, bool safetensors) {
  const json idx = read_json_file(index_path);
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    fail("{}: expected a 'weight_map' object (tensor name -> shard file)", index_path);
  std::set<std::string> shards;
  for (auto& [name, file] : idx["weight_map"].items()) {
    if (!file.is_string())
      fail("{}: weight_map['{}'] should be a file name, got {}", index_path, name, file.dump());
    shards.insert(file.get<std::string>());
  }
  const fs::path dir = fs::path(index_path).parent_path();
  StateDict out;
  for (auto& s : shards) {
    const std::string p = (dir / s).string();
    if (!fs::exists(p)) fail("{}: shard '{}' is missing (expected {})", index_path, s, p);
    upcast_into(out, safetensors ? load_safetensors(p) : load_torch_state_dict(p));
  }
  for (auto& [name, file] : idx["weight_map"].items())
    if (!out.count(name))
      fail("{}: tensor '{}' is not in its shard '{}'", index_path, name, file.get<std::string>());
  return out;
}

void apply_kwargs(ModelConfig& cfg, const json& kw) {
  if (kw.is_null()) return;
  if (!kw.is_object())
    fail("model_from_pretrained_kwargs: expected a JSON object, got {}", kw.dump());
  // Keys of TL's from_pretrained that change nothing on saelab's CPU float32 path.
  static const std::set<std::string> inert = {
      "device",         "n_devices",           "dtype",   "torch_dtype", "trust_remote_code",
      "move_to_device", "default_prepend_bos", "revision"};
  for (auto& [k, v] : kw.items()) {
    if (k == "n_ctx") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0)
        fail("model_from_pretrained_kwargs: n_ctx should be a positive integer, got {}", v.dump());
      cfg.n_ctx = v.get<int64_t>();
    } else if (k == "first_n_layers") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > cfg.n_layers)
        fail("model_from_pretrained_kwargs: first_n_layers should be in 1..{}, got {}",
             cfg.n_layers, v.dump());
      cfg.n_layers = v.get<int64_t>();
      cfg.attn_types.resize(cfg.n_layers);
    } else if (k == "center_writing_weights" || k == "center_unembed" || k == "fold_ln" ||
               k == "fold_value_biases" || k == "refactor_factored_attn_matrices") {
      if (!v.is_boolean())
        fail("model_from_pretrained_kwargs: {} should be true or false, got {}", k, v.dump());
      if (v.get<bool>())
        fail(
            "model_from_pretrained_kwargs: {} = true is not supported (saelab loads raw weights, "
            "as "
            "SAELens's from_pretrained_no_processing)",
            k);
    } else if (!inert.count(k)) {
      fail(
          "model_from_pretrained_kwargs: unknown key '{}' (known: n_ctx, first_n_layers, "
          "center_writing_weights, fold_ln, center_unembed, dtype, device)",
          k);
    }
  }
}

// Drops blocks past n_layers and positions past n_ctx (first_n_layers / n_ctx overrides).
void trim_to_config(const ModelConfig& cfg, StateDict& sd, const std::string& where) {
  for (auto it = sd.begin(); it != sd.end();) {
    const std::string& k = it->first;
    if (k.rfind("blocks.", 0) == 0 && std::stoll(k.substr(7)) >= cfg.n_layers)
      it = sd.erase(it);
    else
      ++it;
  }
  auto pos = sd.find("pos_embed.W_pos");
  if (pos != sd.end()) {
    if (pos->second.size(0) < cfg.n_ctx)
      fail("{}: n_ctx {} is longer than the {} learned positions", where, cfg.n_ctx,
           pos->second.size(0));
    pos->second = pos->second.slice(0, 0, cfg.n_ctx).contiguous();
  }
}

}  // namespace

StateDict read_hf_weights(const std::string& dir) {
  const fs::path d(dir);
  StateDict out;
  if (fs::exists(d / "model.safetensors")) {
    upcast_into(out, load_safetensors((d / "model.safetensors").string()));
  } else if (fs::exists(d / "model.safetensors.index.json")) {
    out = read_sharded((d / "model.safetensors.index.json").string(), true);
  } else if (fs::exists(d / "pytorch_model.bin")) {
    upcast_into(out, load_torch_state_dict((d / "pytorch_model.bin").string()));
  } else if (fs::exists(d / "pytorch_model.bin.index.json")) {
    out = read_sharded((d / "pytorch_model.bin.index.json").string(), false);
  } else {
    fail(
        "{}: no weights found (expected model.safetensors, model.safetensors.index.json or "
        "pytorch_model.bin)",
        dir);
  }
  return out;
}

StateDict complete_tl_weights(const ModelConfig& cfg, StateDict in, const std::string& where) {
  StateDict sd;
  auto take = [&](const std::string& name, std::vector<int64_t> shape, bool required,
                  const std::string& alt = "") -> bool {
    auto it = in.find(name);
    if (it == in.end() && !alt.empty()) it = in.find(alt);
    if (it == in.end()) {
      if (required) fail("{}: missing tensor '{}'", where, name);
      return false;
    }
    if (it->second.sizes().vec() != shape)
      fail("{}: tensor '{}' has shape [{}], expected [{}]", where, name,
           fmt::join(it->second.sizes().vec(), ", "), fmt::join(shape, ", "));
    sd[name] = it->second.to(at::kFloat).contiguous();
    return true;
  };
  const int64_t D = cfg.d_model, H = cfg.n_heads, K = cfg.n_key_value_heads, Dh = cfg.d_head,
                M = cfg.d_mlp;
  // TL models saved with LNPre (folded) normalisation carry no weights: w = 1, b = 0 is the same.
  auto norm = [&](const std::string& prefix) {
    if (cfg.normalization_type == "none") return;
    if (!take(prefix + ".w", {D}, false)) sd[prefix + ".w"] = torch::ones({D}, torch::kFloat);
    if (cfg.normalization_type == "LN" && !take(prefix + ".b", {D}, false))
      sd[prefix + ".b"] = torch::zeros({D}, torch::kFloat);
  };
  take("embed.W_E", {cfg.d_vocab, D}, true);
  if (cfg.positional_embedding_type == "standard" || cfg.positional_embedding_type == "shortformer")
    take("pos_embed.W_pos", {cfg.n_ctx, D}, true);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    norm(b + "ln1");
    take(b + "attn.W_Q", {H, D, Dh}, true);
    take(b + "attn.W_K", {K, D, Dh}, true, b + "attn._W_K");
    take(b + "attn.W_V", {K, D, Dh}, true, b + "attn._W_V");
    take(b + "attn.W_O", {H, Dh, D}, true);
    take(b + "attn.b_Q", {H, Dh}, false);
    take(b + "attn.b_K", {K, Dh}, false, b + "attn._b_K");
    take(b + "attn.b_V", {K, Dh}, false, b + "attn._b_V");
    take(b + "attn.b_O", {D}, false);
    if (M > 0) {
      norm(b + "ln2");
      take(b + "mlp.W_in", {D, M}, true);
      take(b + "mlp.b_in", {M}, false);
      if (cfg.gated_mlp) take(b + "mlp.W_gate", {D, M}, true);
      take(b + "mlp.W_out", {M, D}, true);
      take(b + "mlp.b_out", {D}, false);
    }
  }
  norm("ln_final");
  take("unembed.W_U", {D, cfg.d_vocab}, true);
  take("unembed.b_U", {cfg.d_vocab}, false);
  detail::add_zero_biases(cfg, sd);
  return sd;
}

LoadedWeights load_model_weights(const std::string& model_name, const json& kwargs) {
  const ModelLocation loc = resolve_model_location(model_name);
  LoadedWeights out;
  out.dir = loc.dir;
  const std::string config_path = (fs::path(loc.dir) / "config.json").string();
  if (!loc.pth_file.empty()) {
    // TL-native: config.json in TL's format next to the .pth, else TL's config for the alias.
    StateDict raw;
    upcast_into(raw, load_torch_state_dict(loc.pth_file));
    const bool has_cfg = fs::exists(config_path);
    if (has_cfg) {
      out.cfg = model_config_from_tl(read_json_file(config_path), config_path);
    } else {
      std::string official = loc.repo_id;
      if (official.empty()) official = tl_official_model_name(model_name).value_or(model_name);
      if (official == model_name) {
        // A bare .pth path: recognise the two TL-native models by their file shapes.
        auto e = raw.find("embed.W_E");
        if (e != raw.end() && e->second.dim() == 2 && e->second.size(0) == 61)
          official = "othello-gpt";
        else if (!raw.count("blocks.0.mlp.W_in"))
          official = "attn-only-2l-demo";
        else
          fail(
              "{}: no config.json next to it and not a known TL-native model; write a config.json "
              "in TransformerLens's format (d_model, n_layers, n_heads, d_head, d_mlp, n_ctx, "
              "d_vocab, "
              "act_fn, normalization_type)",
              loc.pth_file);
      }
      out.cfg = tl_native_config(official);
      // The built-in config fixes the architecture; the vocabulary and context come from the file.
      if (auto e = raw.find("embed.W_E"); e != raw.end() && e->second.dim() == 2)
        out.cfg.d_vocab = e->second.size(0);
      if (auto p = raw.find("pos_embed.W_pos"); p != raw.end() && p->second.dim() == 2)
        out.cfg.n_ctx = p->second.size(0);
    }
    out.cfg.model_name = model_name;
    out.weights = complete_tl_weights(out.cfg, std::move(raw), loc.pth_file);
  } else {
    if (!fs::exists(config_path))
      fail("{}: missing config.json (expected a Hugging Face model folder)", loc.dir);
    out.cfg = model_config_from_hf(read_json_file(config_path), config_path);
    out.cfg.model_name = model_name;
    // TL trims TinyStories' learned positions to the 512 it was trained on.
    if (loc.repo_id.rfind("roneneldan/TinyStories", 0) == 0)
      out.cfg.n_ctx = std::min<int64_t>(out.cfg.n_ctx, 512);
    StateDict hf = read_hf_weights(loc.dir);
    out.weights = convert_hf_weights(out.cfg, hf, loc.dir);
  }
  apply_kwargs(out.cfg, kwargs);
  trim_to_config(out.cfg, out.weights, loc.dir);
  return out;
}

ModelConfig load_model_config(const std::string& model_name, const json& kwargs) {
  const ModelLocation loc = resolve_model_location(model_name);
  const std::string config_path = (fs::path(loc.dir) / "config.json").string();
  if (!loc.pth_file.empty() && !fs::exists(config_path))
    return load_model_weights(model_name, kwargs).cfg;
  if (!fs::exists(config_path))
    fail("{}: missing config.json (expected a Hugging Face model folder)", loc.dir);
  const json c = read_json_file(config_path);
  ModelConfig cfg = loc.pth_file.empty() ? model_config_from_hf(c, config_path)
                                         : model_config_from_tl(c, config_path);
  cfg.model_name = model_name;
  if (loc.pth_file.empty() && loc.repo_id.rfind("roneneldan/TinyStories", 0) == 0)
    cfg.n_ctx = std::min<int64_t>(cfg.n_ctx, 512);
  apply_kwargs(cfg, kwargs);
  return cfg;
}

LoadedModel load_model(const std::string& model_name, const json& kwargs) {
  LoadedWeights w = load_model_weights(model_name, kwargs);
  LoadedModel m;
  m.cfg = w.cfg;
  m.dir = w.dir;
  m.model = std::make_unique<Transformer>(w.cfg, std::move(w.weights));
  return m;
}

}  // namespace saelab
