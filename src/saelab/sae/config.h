// SaeConfig: the fields of SAELens's cfg.json. Reads both the flat v5 layout and
// v6's layout with model/hook/dataset fields under "metadata"; unknown fields are kept and written
// back so a round trip through saelab loses nothing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

struct SaeConfig {
  // "standard" | "gated" | "topk" | "jumprelu" (an inference architecture of sae/registry.h).
  // batchtopk and matryoshka_batchtopk are stored as "jumprelu".
  std::string architecture = "standard";
  // standard only: "relu" or "tanh-relu" (SAELens 5's activation_fn_str: f = tanh(ReLU(z))).
  std::string activation_fn = "relu";
  int64_t d_in = 0;
  int64_t d_sae = 0;
  std::string dtype = "float32";
  std::string device = "cpu";
  bool apply_b_dec_to_input = true;
  // "none" | "expected_average_only_in" | "constant_norm_rescale" | "layer_norm"
  std::string normalize_activations = "none";
  int64_t k = 0;  // topk only (activation_fn_kwargs.k in v5, k in v6)

  // Transcoders (SAELens's TranscoderConfig): the decoder writes d_out values for the output hook
  // hook_name_out instead of reconstructing its input; d_out = 0 is an SAE. skip_connection adds
  // W_skip [d_out, d_in] (output = decode(f) + x W_skipᵀ). `architecture` stays the activation
  // family (standard, topk, jumprelu); cfg.json spells the pair as SAELens does: "transcoder",
  // "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder" ("topk_transcoder" and
  // "topk_skip_transcoder" are saelab's own: SAELens has no topk transcoder class).
  int64_t d_out = 0;
  bool skip_connection = false;
  std::string hook_name_out;
  int64_t hook_layer_out = 0;
  bool is_transcoder() const { return d_out > 0; }
  int64_t out_dim() const { return d_out > 0 ? d_out : d_in; }  // width of decode's output

  // Where the SAE was trained (v6: under "metadata").
  std::string model_name;
  std::string hook_name;
  int64_t hook_layer = 0;
  std::optional<int64_t> hook_head_index;
  int64_t context_size = 128;
  bool prepend_bos = true;
  std::string dataset_path;
  json seqpos_slice = json::array({nullptr});
  json model_from_pretrained_kwargs = json::object();

  json extra = json::object();  // any other field, preserved

  // `where` names the file in error messages. Missing d_in/d_sae is an error; a missing
  // architecture means "standard" in a pre-6 (flat) cfg.json, as in SAELens, and is an error in a
  // v6 one. See config.cpp for the layout saelab writes.
  static SaeConfig from_json(const json& j, const std::string& where);
  json to_json() const;
};

}  // namespace saelab
