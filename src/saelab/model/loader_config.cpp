// config.json -> ModelConfig, family by family, following TransformerLens's
// convert_hf_model_config (loading_from_pretrained.py), plus TL's own config format and the
// built-in configs of the TL-native models (attn-only-2l-demo, othello-gpt).
#include <cmath>

#include "saelab/core/error.h"
#include "saelab/model/loader.h"

namespace saelab {
namespace {

const std::vector<std::string>& known_act_fns() {
  static const std::vector<std::string> a = {"gelu_new", "gelu", "gelu_pytorch_tanh", "silu",
                                             "relu"};
  return a;
}

std::string check_act_fn(std::string act, const std::string& where) {
  if (act == "swish") act = "silu";
  if (act == "gelu_fast") act = "gelu_new";  // the same tanh approximation, written differently
  for (auto& a : known_act_fns())
    if (a == act) return act;
  fail(
      "{}: activation '{}' is not supported (expected one of gelu_new, gelu, gelu_pytorch_tanh, "
      "silu, relu)",
      where, act);
}

std::optional<int64_t> opt_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

double rope_theta(const json& c, const std::string& where) {
  if (c.contains("rope_theta") && !c["rope_theta"].is_null())
    return get_field<double>(c, "rope_theta", where);
  if (c.contains("rope_parameters") && c["rope_parameters"].is_object())
    return get_field_or<double>(c["rope_parameters"], "rope_theta", 10000.0, where);
  return 10000.0;
}

// Rope scaling (Llama 3.1+ "llama3", "linear", "dynamic", YaRN) changes the rotary frequencies;
// the runtime implements plain rotary only, so refuse rather than run a different model.
void refuse_rope_scaling(const json& c, const std::string& where) {
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = c.find(key);
    if (it == c.end() || !it->is_object()) continue;
    std::string type = it->value("rope_type", it->value("type", std::string("default")));
    if (type != "default")
      fail("{}: {} of type '{}' is not supported (saelab implements plain rotary embeddings)",
           where, key, type);
  }
}

void fill_bos_eos(ModelConfig& m, const json& c) {
  m.bos_token_id = opt_int(c, "bos_token_id");
  m.eos_token_id = opt_int(c, "eos_token_id");
}

ModelConfig gpt2_config(const json& c, const std::string& w) {
  ModelConfig m;
  m.family = "gpt2";
  m.d_model = get_field<int64_t>(c, "n_embd", w);
  m.n_heads = get_field<int64_t>(c, "n_head", w);
  m.n_key_value_heads = m.n_heads;
  m.d_head = m.d_model / m.n_heads;
  m.d_mlp = get_field_or<int64_t>(c, "n_inner", 4 * m.d_model, w);
  m.n_layers = get_field<int64_t>(c, "n_layer", w);
  m.n_ctx = c.contains("n_ctx") ? get_field<int64_t>(c, "n_ctx", w)
                                : get_field<int64_t>(c, "n_positions", w);
  m.eps = get_field_or<double>(c, "layer_norm_epsilon", 1e-5, w);
  m.d_vocab = get_field<int64_t>(c, "vocab_size", w);
  m.act_fn = check_act_fn(get_field_or<std::string>(c, "activation_function", "gelu_new", w), w);
  if (get_field_or<bool>(c, "scale_attn_by_inverse_layer_idx", false, w))
    fail("{}: scale_attn_by_inverse_layer_idx = true is not supported", w);
  m.normalization_type = "LN";
  m.positional_embedding_type = "standard";
  m.attn_qkv_bias = true;
  m.tie_word_embeddings = get_field_or<bool>(c, "tie_word_embeddings", true, w);
  return m;
}

ModelConfig gpt_neo_config(const json& c, const std::string& w) {
  ModelConfig m;
  m.family = "gpt_neo";
  m.d_model = get_field<int64_t>(c, "hidden_size", w);
  m.n_heads = get_field<int64_t>(c, "num_heads", w);
  m.n_key_value_heads = m.n_heads;
  m.d_head = m.d_model / m.n_heads;
  m.d_mlp = get_field_or<int64_t>(c, "intermediate_size", 4 * m.d_model, w);
  m.n_layers = get_field<int64_t>(c, "num_layers", w);
  m.n_ctx = get_field<int64_t>(c, "max_position_embeddings", w);
  m.eps = get_field_or<double>(c, "layer_norm_epsilon", 1e-5, w);
  m.d_vocab = get_field<int64_t>(c, "vocab_size", w);
  m.act_fn = check_act_fn(get_field_or<std::string>(c, "activation_function", "gelu_new", w), w);
  m.use_attn_scale = false;  // GPT-Neo does not divide scores by sqrt(d_head)
  m.normalization_type = "LN";
  m.positional_embedding_type = "standard";
  m.window_size = get_field_or<int64_t>(c, "window_size", 256, w);
  // HF expands attention_types [[["global","local"], n], ...] into attention_layers; accept either.
  if (c.contains("attention_layers") && c["attention_layers"].is_array()) {
    m.attn_types = get_field<std::vector<std::string>>(c, "attention_layers", w);
  } else if (c.contains("attention_types") && c["attention_types"].is_array()) {
    for (auto& item : c["attention_types"]) {
      if (!item.is_array() || item.size() != 2 || !item[0].is_array() ||
          !item[1].is_number_integer())
        fail("{}: attention_types: expected [[[\"global\", \"local\"], n], ...], got {}", w,
             item.dump());
      for (int64_t r = 0; r < item[1].get<int64_t>(); ++r)
        for (auto& t : item[0]) m.attn_types.push_back(t.get<std::string>());
    }
  } else {
    m.attn_types.assign(m.n_layers, "global");
  }
  if (static_cast<int64_t>(m.attn_types.size()) != m.n_layers)
    fail("{}: attention_layers has {} entries, expected num_layers = {}", w, m.attn_types.size(),
         m.n_layers);
  for (auto& t : m.attn_types)
    if (t != "global" && t != "local")
      fail("{}: attention layer type '{}' (expected 'global' or 'local')", w, t);
  m.tie_word_embeddings = get_field_or<bool>(c, "tie_word_embeddings", true, w);
  return m;
}

// Llama, Mistral, Qwen2 and Gemma-2 share the Llama-style field names.
ModelConfig llama_like_config(const json& c, const std::string& w, const std::string& family) {
  ModelConfig m;
  m.family = family;
  m.d_model = get_field<int64_t>(c, "hidden_size", w);
  m.n_heads = get_field<int64_t>(c, "num_attention_heads", w);
  m.n_key_value_heads = get_field_or<int64_t>(c, "num_key_value_heads", m.n_heads, w);
  m.d_head = get_field_or<int64_t>(c, "head_dim", 0, w);
  if (m.d_head <= 0) m.d_head = m.d_model / m.n_heads;
  if (m.n_heads % m.n_key_value_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", w, m.n_heads,
         m.n_key_value_heads);
  m.d_mlp = get_field<int64_t>(c, "intermediate_size", w);
  m.n_layers = get_field<int64_t>(c, "num_hidden_layers", w);
  m.n_ctx = get_field<int64_t>(c, "max_position_embeddings", w);
  m.eps = get_field_or<double>(c, "rms_norm_eps", 1e-6, w);
  m.d_vocab = get_field<int64_t>(c, "vocab_size", w);
  std::string act = get_field_or<std::string>(c, "hidden_act", "silu", w);
  if (family == "gemma2") act = get_field_or<std::string>(c, "hidden_activation", act, w);
  m.act_fn = check_act_fn(act, w);
  m.gated_mlp = true;
  m.normalization_type = "RMS";
  m.positional_embedding_type = "rotary";
  m.rotary_dim = m.d_head;
  m.rotary_base = rope_theta(c, w);
  refuse_rope_scaling(c, w);
  m.attn_types.assign(m.n_layers, "global");
  m.tie_word_embeddings = get_field_or<bool>(c, "tie_word_embeddings", family == "gemma2", w);
  m.attn_qkv_bias = family == "qwen2" || get_field_or<bool>(c, "attention_bias", false, w);
  if (get_field_or<bool>(c, "mlp_bias", false, w)) fail("{}: mlp_bias = true is not supported", w);
  if (family == "mistral") {
    // TL: every layer local with the sliding window when one is set (Mistral-7B-v0.1: 4096).
    if (auto sw = opt_int(c, "sliding_window"); sw && *sw > 0) {
      m.window_size = *sw;
      m.attn_types.assign(m.n_layers, "local");
    }
  }
  if (family == "qwen2" && get_field_or<bool>(c, "use_sliding_window", false, w))
    fail("{}: use_sliding_window = true is not supported for qwen2", w);
  if (family == "gemma2") {
    m.embedding_scale = std::sqrt(static_cast<double>(m.d_model));
    m.attn_scale = std::sqrt(get_field_or<double>(c, "query_pre_attn_scalar", double(m.d_head), w));
    m.attn_scores_soft_cap = get_field_or<double>(c, "attn_logit_softcapping", 0.0, w);
    m.output_logits_soft_cap = get_field_or<double>(c, "final_logit_softcapping", 0.0, w);
    m.use_normalization_before_and_after = true;
    m.window_size = get_field_or<int64_t>(c, "sliding_window", 4096, w);
    // Hugging Face's Gemma2: even layers (0, 2, ...) use the sliding window; newer configs spell
    // it out in layer_types.
    if (c.contains("layer_types") && c["layer_types"].is_array()) {
      auto lt = get_field<std::vector<std::string>>(c, "layer_types", w);
      if (static_cast<int64_t>(lt.size()) != m.n_layers)
        fail("{}: layer_types has {} entries, expected num_hidden_layers = {}", w, lt.size(),
             m.n_layers);
      for (int64_t l = 0; l < m.n_layers; ++l)
        m.attn_types[l] = lt[l] == "sliding_attention" ? "local" : "global";
    } else {
      for (int64_t l = 0; l < m.n_layers; ++l) m.attn_types[l] = l % 2 == 0 ? "local" : "global";
    }
  }
  return m;
}

}  // namespace

ModelConfig model_config_from_hf(const json& c, const std::string& where) {
  if (!c.is_object()) fail("{}: expected a JSON object", where);
  std::string mt = get_field_or<std::string>(c, "model_type", "", where);
  if (mt.empty() && c.contains("architectures") && c["architectures"].is_array() &&
      !c["architectures"].empty()) {
    const std::string arch = c["architectures"][0].get<std::string>();
    static const std::vector<std::pair<std::string, std::string>> by_arch = {
        {"GPT2LMHeadModel", "gpt2"},       {"GPTNeoForCausalLM", "gpt_neo"},
        {"Gemma2ForCausalLM", "gemma2"},   {"LlamaForCausalLM", "llama"},
        {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"}};
    for (auto& [a, t] : by_arch)
      if (a == arch) mt = t;
    if (mt.empty()) mt = arch;
  }
  if (mt.empty()) fail("{}: missing 'model_type' (and no known 'architectures')", where);
  ModelConfig m;
  if (mt == "gpt2")
    m = gpt2_config(c, where);
  else if (mt == "gpt_neo")
    m = gpt_neo_config(c, where);
  else if (mt == "llama" || mt == "mistral" || mt == "qwen2" || mt == "gemma2")
    m = llama_like_config(c, where, mt);
  else
    fail(
        "{}: model_type '{}' is not supported (supported: gpt2, gpt_neo, gemma2, llama, mistral, "
        "qwen2)",
        where, mt);
  fill_bos_eos(m, c);
  for (auto [v, name] : {std::pair{m.d_model, "d_model"},
                         {m.n_layers, "n_layers"},
                         {m.n_heads, "n_heads"},
                         {m.d_head, "d_head"},
                         {m.d_vocab, "d_vocab"},
                         {m.n_ctx, "n_ctx"}})
    if (v <= 0) fail("{}: {} must be positive, got {}", where, name, v);
  return m;
}

ModelConfig model_config_from_tl(const json& c, const std::string& w) {
  ModelConfig m;
  m.d_model = get_field<int64_t>(c, "d_model", w);
  m.n_layers = get_field<int64_t>(c, "n_layers", w);
  m.n_heads = get_field<int64_t>(c, "n_heads", w);
  m.d_head = get_field_or<int64_t>(c, "d_head", m.d_model / std::max<int64_t>(1, m.n_heads), w);
  m.n_key_value_heads = get_field_or<int64_t>(c, "n_key_value_heads", m.n_heads, w);
  m.n_ctx = get_field<int64_t>(c, "n_ctx", w);
  m.d_vocab = get_field<int64_t>(c, "d_vocab", w);
  const bool attn_only = get_field_or<bool>(c, "attn_only", false, w);
  m.d_mlp = attn_only ? 0 : get_field_or<int64_t>(c, "d_mlp", 4 * m.d_model, w);
  m.act_fn =
      attn_only ? "gelu" : check_act_fn(get_field_or<std::string>(c, "act_fn", "gelu", w), w);
  std::string norm = get_field_or<std::string>(c, "normalization", "", w);
  if (norm.empty()) norm = get_field_or<std::string>(c, "normalization_type", "", w);
  if (norm == "LN" || norm == "LNPre")
    m.normalization_type = "LN";  // LNPre: weights folded away; complete_tl_weights fills w=1, b=0
  else if (norm == "RMS" || norm == "RMSPre")
    m.normalization_type = "RMS";
  else if (norm.empty() || norm == "none" || norm == "None")
    m.normalization_type = "none";
  else
    fail("{}: normalization '{}' is not supported (expected LN, LNPre, RMS, RMSPre or null)", w,
         norm);
  m.eps = get_field_or<double>(c, "eps", 1e-5, w);
  bool shortformer = get_field_or<bool>(c, "shortformer_pos", false, w);
  std::string pos = get_field_or<std::string>(c, "positional_embedding_type",
                                              shortformer ? "shortformer" : "standard", w);
  if (pos != "standard" && pos != "shortformer")
    fail("{}: positional_embedding_type '{}' is not supported for TL-native models", w, pos);
  m.positional_embedding_type = pos;
  m.family = (attn_only || pos == "shortformer") ? "attn_only_shortformer" : "othello_mingpt";
  m.attn_types.assign(m.n_layers, "global");
  m.attn_qkv_bias = true;
  return m;
}

ModelConfig tl_native_config(const std::string& name) {
  if (name == "NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr" || name == "attn-only-2l-demo") {
    // TransformerLens's attn-only models: 512 x 2, 8 heads of 64, no MLP, no LayerNorm, shortformer
    // positions, the NeoX tokenizer (vocab 50277).
    return model_config_from_tl(json{{"d_model", 512},
                                     {"n_layers", 2},
                                     {"n_heads", 8},
                                     {"d_head", 64},
                                     {"n_ctx", 2048},
                                     {"d_vocab", 50277},
                                     {"attn_only", true},
                                     {"normalization", nullptr},
                                     {"shortformer_pos", true}},
                                "attn-only-2l-demo (built-in config)");
  }
  if (name == "Baidicoot/Othello-GPT-Transformer-Lens" || name == "othello-gpt") {
    return model_config_from_tl(json{{"d_model", 512},
                                     {"n_layers", 8},
                                     {"n_heads", 8},
                                     {"d_head", 64},
                                     {"d_mlp", 2048},
                                     {"n_ctx", 59},
                                     {"d_vocab", 61},
                                     {"act_fn", "gelu"},
                                     {"normalization_type", "LN"}},
                                "othello-gpt (built-in config)");
  }
  fail(
      "{}: no built-in TransformerLens config (known: attn-only-2l-demo, othello-gpt); put a "
      "config.json next to the .pth",
      name);
}

}  // namespace saelab
