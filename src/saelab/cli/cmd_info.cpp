// `saelab info SAE_DIR`: prints what an SAE directory holds (eval/sae_info.h). `saelab info --model
// M`: a language model's sizes and every hook with its shape, from its config alone.
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/eval/sae_info.h"
#include "saelab/model/hooks.h"
#include "saelab/model/loader.h"

namespace saelab::cli {
namespace {

struct InfoOptions {
  std::string sae_dir;
  std::string model;
  bool json = false;
};

void print_sae_info(const json& j) {
  auto line = [](const std::string& key, const std::string& value) {
    std::cout << key << std::string(key.size() < 24 ? 24 - key.size() : 1, ' ') << value << "\n";
  };
  auto show = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  auto stats = [](const json& s) {
    if (s["min"].is_null()) return std::string("(empty)");
    return fmt::format("min {:.6g}  mean {:.6g}  max {:.6g}  std {:.6g}", s["min"].get<double>(),
                       s["mean"].get<double>(), s["max"].get<double>(), s["std"].get<double>());
  };
  for (const char* key : {"path", "architecture", "d_in", "d_sae", "k", "model_name", "hook_name",
                          "hook_layer", "hook_head_index", "dtype", "apply_b_dec_to_input",
                          "normalize_activations", "num_parameters"})
    if (j.contains(key)) line(key, show(j[key]));
  line("decoder row norms", stats(j["decoder_norms"]));
  line("encoder column norms", stats(j["encoder_norms"]));
  if (j.contains("threshold")) line("threshold", stats(j["threshold"]));
  if (j.contains("feature_density")) {
    const json& d = j["feature_density"];
    line("feature density",
         fmt::format(
             "{} dead, {} dense (>1e-2), {} below 1e-5, {} below 1e-6, {} healthy (1e-5..1e-3), "
             "mean log10 {:.3f}",
             d["dead_features"].get<int64_t>(), d["dense_features"].get<int64_t>(),
             d["below_1e-5"].get<int64_t>(), d["below_1e-6"].get<int64_t>(),
             d["healthy_features"].get<int64_t>(), d["mean_log10_feature_sparsity"].get<double>()));
  } else {
    line("feature density", "(no sparsity.safetensors)");
  }
}

// Language-model branch: the architecture from config.json (no weights read for Hugging Face
// folders) and every hook with its shape for one sequence of one token ([batch=1, pos=1, ...]).
int run_model_info(const InfoOptions& o) {
  const ModelConfig c = load_model_config(o.model);
  json hooks = json::array();
  for (const auto& name : model_hook_names(c))
    hooks.push_back({{"name", name}, {"shape", model_hook_shape(c, name, 1, 1)}});
  json j = {{"model_name", o.model},
            {"family", c.family},
            {"d_model", c.d_model},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_key_value_heads", c.n_key_value_heads},
            {"d_head", c.d_head},
            {"d_mlp", c.d_mlp},
            {"d_vocab", c.d_vocab},
            {"n_ctx", c.n_ctx},
            {"act_fn", c.act_fn},
            {"normalization_type", c.normalization_type},
            {"positional_embedding_type", c.positional_embedding_type},
            {"attn_types", c.attn_types},
            {"window_size", c.window_size},
            {"hooks", hooks}};
  if (o.json) {
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format(
      "model        {}\nfamily       {}\nsizes        d_model {}  n_layers {}  n_heads {} "
      "(kv {})  d_head {}  d_mlp {}  d_vocab {}  n_ctx {}\n"
      "layers       {} norm, {} positions, act {}\n",
      o.model, c.family, c.d_model, c.n_layers, c.n_heads, c.n_key_value_heads, c.d_head, c.d_mlp,
      c.d_vocab, c.n_ctx, c.normalization_type, c.positional_embedding_type,
      c.gated_mlp ? c.act_fn + " (gated)" : c.act_fn);
  std::cout << "hooks (shape for batch 1, 1 token):\n";
  for (auto& h : hooks)
    std::cout << fmt::format("  {:<36} {}\n", h["name"].get<std::string>(), h["shape"].dump());
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<InfoOptions>();
  sub->add_option("SAE_DIR", o->sae_dir,
                  "SAE directory (cfg.json + sae_weights.safetensors, or params.npz)");
  sub->add_option("--model", o->model, "describe a language model instead of an SAE");
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->footer("Examples:\n  saelab info runs/toy/final\n  saelab info runs/toy/final --json");
  return [o] {
    if (!o->model.empty()) {
      if (!o->sae_dir.empty()) fail("info: give either SAE_DIR or --model, not both");
      return run_model_info(*o);
    }
    if (o->sae_dir.empty()) fail("info: expected SAE_DIR (an SAE directory) or --model NAME");
    json j = sae_info(o->sae_dir);
    if (o->json)
      std::cout << j.dump() << "\n";
    else
      print_sae_info(j);
    return 0;
  };
};

}  // namespace
SAELAB_COMMAND("info", "Describe an SAE directory (config, parameters, norms, feature density)",
               setup);
}  // namespace saelab::cli
