// load_tokenizer: finds the tokenizer files of a Hugging Face model folder and the special tokens
// of its configs; to_tokens: TransformerLens's BOS handling (tokenizer.h).
#include "saelab/data/tokenizer.h"

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer_bpe.h"
#include "saelab/data/tokenizer_sentencepiece.h"

namespace saelab {
namespace {
namespace fs = std::filesystem;

// "bos_token": "<s>" or {"content": "<s>", ...}; "" when absent or null.
std::string token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

struct Configs {
  json tokenizer_config = json::object();
  json special_tokens_map = json::object();
  std::string dir;

  std::string special(const char* key) const {
    auto s = token_text(tokenizer_config, key);
    return s.empty() ? token_text(special_tokens_map, key) : s;
  }
};

Configs read_configs(const std::string& dir) {
  Configs c;
  c.dir = dir;
  for (auto [name, target] : {std::pair{"tokenizer_config.json", &c.tokenizer_config},
                              std::pair{"special_tokens_map.json", &c.special_tokens_map}}) {
    auto path = dir + "/" + name;
    if (!path_exists(path)) continue;
    *target = read_json_file(path);
    if (!target->is_object()) fail("{}: expected a JSON object", path);
  }
  return c;
}

// Special tokens a GPT-2-style vocab.json + merges.txt folder splits out of text.
std::vector<std::string> special_strings(const Configs& c) {
  std::vector<std::string> out{"<|endoftext|>"};
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"})
    if (auto s = c.special(key); !s.empty()) out.push_back(s);
  auto dec = c.tokenizer_config.find("added_tokens_decoder");
  if (dec != c.tokenizer_config.end() && dec->is_object())
    for (const auto& [id, t] : dec->items())
      if (t.is_object() && t.contains("content") && t["content"].is_string())
        out.push_back(t["content"].get<std::string>());
  return out;
}

// BOS id from a tokenizer.json post_processor that starts the single-sequence template with a
// special token (Gemma, Llama): the HF tokenizer adds it by itself.
std::optional<int64_t> post_processor_bos(const json& pp, const Tokenizer& tok) {
  if (!pp.is_object()) return std::nullopt;
  auto type = pp.value("type", "");
  if (type == "Sequence" && pp.contains("processors")) {
    for (const auto& p : pp["processors"])
      if (auto id = post_processor_bos(p, tok)) return id;
    return std::nullopt;
  }
  if (type != "TemplateProcessing" || !pp.contains("single") || !pp["single"].is_array() ||
      pp["single"].empty())
    return std::nullopt;
  const auto& first = pp["single"][0];
  if (!first.contains("SpecialToken")) return std::nullopt;
  auto name = first["SpecialToken"].value("id", "");
  return tok.token_to_id(name);
}

void apply_specials(Tokenizer& tok, const Configs& c, SpecialTokens s, const std::string& what) {
  auto resolve = [&](const char* key, std::optional<int64_t>& slot) {
    auto text = c.special(key);
    if (text.empty()) return;
    auto id = tok.token_to_id(text);
    if (!id) fail("{}: {} '{}' is not in the vocabulary of {}", c.dir, key, text, what);
    slot = id;
  };
  resolve("bos_token", s.bos);
  resolve("eos_token", s.eos);
  resolve("pad_token", s.pad);
  resolve("unk_token", s.unk);
  tok.set_special_tokens(s);
  auto add_bos = c.tokenizer_config.find("add_bos_token");
  if (add_bos != c.tokenizer_config.end() && add_bos->is_boolean())
    tok.set_adds_bos_by_default(add_bos->get<bool>());
}

// GPT-2 / NeoX defaults when no config names them: <|endoftext|> is BOS, EOS and UNK.
SpecialTokens endoftext_defaults(const Tokenizer& tok) {
  SpecialTokens s;
  if (auto id = tok.token_to_id("<|endoftext|>")) s.bos = s.eos = s.unk = id;
  return s;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  std::string dir = model_dir;
  if (fs::is_regular_file(model_dir)) dir = fs::path(model_dir).parent_path().string();
  if (dir.empty()) dir = ".";
  auto has = [&](const char* name) { return fs::is_regular_file(dir + "/" + name); };
  auto file_named = [&](const char* name) {
    return fs::is_regular_file(model_dir) ? fs::path(model_dir).filename() == name : has(name);
  };
  if (!fs::is_directory(dir))
    fail(
        "{}: not a folder (expected a Hugging Face model folder with tokenizer.json, vocab.json + "
        "merges.txt, encoder.json + vocab.bpe or tokenizer.model)",
        model_dir);
  Configs cfg = read_configs(dir);
  std::unique_ptr<Tokenizer> tok;
  if (file_named("tokenizer.json")) {
    auto path = dir + "/tokenizer.json";
    tok = std::make_unique<tok::BpeTokenizer>(tok::bpe_spec_from_tokenizer_json(path));
    SpecialTokens s = endoftext_defaults(*tok);
    json j = read_json_file(path);
    if (auto bos = post_processor_bos(j.value("post_processor", json()), *tok)) {
      s.bos = bos;
      tok->set_adds_bos_by_default(true);
    }
    if (auto unk = j["model"].value("unk_token", json()); unk.is_string())
      s.unk = tok->token_to_id(unk.get<std::string>());
    apply_specials(*tok, cfg, s, path);
  } else if (!fs::is_regular_file(model_dir) && ((has("vocab.json") && has("merges.txt")) ||
                                                 (has("encoder.json") && has("vocab.bpe")))) {
    bool hf = has("vocab.json") && has("merges.txt");
    auto vocab = dir + (hf ? "/vocab.json" : "/encoder.json");
    auto merges = dir + (hf ? "/merges.txt" : "/vocab.bpe");
    tok = std::make_unique<tok::BpeTokenizer>(
        tok::bpe_spec_from_vocab_merges(vocab, merges, special_strings(cfg)));
    apply_specials(*tok, cfg, endoftext_defaults(*tok), vocab);
  } else if (file_named("tokenizer.model")) {
    auto path = dir + "/tokenizer.model";
    tok = tok::load_sentencepiece_file(path);
    SpecialTokens s{tok->bos_token_id(), tok->eos_token_id(), tok->pad_token_id(),
                    tok->unk_token_id()};
    apply_specials(*tok, cfg, s, path);
  } else {
    fail(
        "{}: no tokenizer found: looked for tokenizer.json, vocab.json + merges.txt, encoder.json "
        "+ vocab.bpe, tokenizer.model",
        model_dir);
  }
  return tok;
}

std::unique_ptr<Tokenizer> load_tokenizer_if_present(const std::string& model_dir) {
  std::string dir = model_dir;
  if (fs::is_regular_file(model_dir)) dir = fs::path(model_dir).parent_path().string();
  if (dir.empty()) dir = ".";
  auto has = [&](const char* name) { return fs::is_regular_file(dir + "/" + name); };
  const bool present = has("tokenizer.json") || has("tokenizer.model") ||
                       (has("vocab.json") && has("merges.txt")) ||
                       (has("encoder.json") && has("vocab.bpe"));
  return present ? load_tokenizer(model_dir) : nullptr;
}

std::vector<int64_t> to_tokens(const Tokenizer& tok, const std::string& text, bool prepend_bos) {
  std::vector<int64_t> ids;
  if (prepend_bos) {
    auto bos = tok.bos_token_id();
    if (!bos)
      fail("prepend_bos: this {} tokenizer has no BOS token (set prepend_bos = false)", tok.kind());
    ids.push_back(*bos);
  }
  auto body = tok.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<std::string> to_str_tokens(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) out.push_back(tok.decode({id}));
  return out;
}

}  // namespace saelab
