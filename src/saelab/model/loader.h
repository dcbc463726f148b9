// Loading a language model from disk into the runtime: resolve the name (hf_cache.h), read the
// architecture from config.json (or TransformerLens's config for TL-native .pth models), read the
// weights (model.safetensors, a sharded model.safetensors.index.json, pytorch_model.bin, or a .pth
// state dict), upcast to float32 and convert Hugging Face names to the canonical TransformerLens
// state-dict names that Transformer consumes (convert_<family>.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/model/model_config.h"

namespace saelab {

class Transformer;

using StateDict = std::map<std::string, at::Tensor>;

struct LoadedModel {
  ModelConfig cfg;
  std::unique_ptr<Transformer> model;
  std::string dir;  // folder of the model's files (tokenizer files live here for HF models)
  LoadedModel();
  LoadedModel(LoadedModel&&) noexcept;
  LoadedModel& operator=(LoadedModel&&) noexcept;
  ~LoadedModel();
};

// Loads `model_name`: a path (HF folder or .pth), a Hugging Face repo id, or a TL alias.
// from_pretrained_kwargs (SAELens's model_from_pretrained_kwargs) may set "n_ctx" (int) to
// override the context length, and "first_n_layers" (int) to keep only the first layers.
// Unknown keys are an error naming them.
LoadedModel load_model(const std::string& model_name,
                       const json& from_pretrained_kwargs = json::object());

// The steps of load_model, exposed for tests and `saelab info`.
struct LoadedWeights {
  ModelConfig cfg;
  StateDict weights;  // canonical TL names, float32, CPU
  std::string dir;
};
LoadedWeights load_model_weights(const std::string& model_name,
                                 const json& from_pretrained_kwargs = json::object());

// Only the architecture (no weights read, except for a TL-native .pth without config.json, whose
// vocabulary and context come from the tensors): for `saelab info --model`.
ModelConfig load_model_config(const std::string& model_name,
                              const json& from_pretrained_kwargs = json::object());

// config.json of a Hugging Face model -> ModelConfig (family from model_type / architectures).
// `where` names the file in errors. Unsupported model types are an error naming the supported ones.
ModelConfig model_config_from_hf(const json& config, const std::string& where);
// TransformerLens's own config.json format (NeelNanda / Baidicoot repos: d_model, n_layers, ...).
ModelConfig model_config_from_tl(const json& config, const std::string& where);
// TL's built-in config of a TL-native alias ("attn-only-2l-demo", "othello-gpt" or their repo ids);
// throws when there is none.
ModelConfig tl_native_config(const std::string& official_name);

// Every tensor of a Hugging Face model folder (single or sharded safetensors, pytorch_model.bin),
// in the stored names, upcast to float32 when floating point.
StateDict read_hf_weights(const std::string& dir);
// Hugging Face names -> canonical TL names for cfg.family; missing tensors are an error naming
// `where` and the tensor.
StateDict convert_hf_weights(const ModelConfig& cfg, const StateDict& hf, const std::string& where);
// A TL-native state dict checked against cfg: biases and (for LN models folded to LNPre) norm
// weights filled in, shapes checked.
StateDict complete_tl_weights(const ModelConfig& cfg, StateDict sd, const std::string& where);

}  // namespace saelab
