// Reads Hugging Face tokenizer.json (model.type BPE) and GPT-2's vocab.json + merges.txt /
// encoder.json + vocab.bpe into a BpeSpec. Components saelab does not implement are refused with
// an error naming them, rather than tokenizing differently from Hugging Face.
#include <fstream>
#include <sstream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer_bpe.h"

namespace saelab::tok {

// Characters that NFC could change: combining marks, Hangul jamo, and the singletons that NFC
// maps to other characters (Ohm, Angstrom, CJK compatibility ideographs, ...).
static const char* kNotNfcSafe =
    R"([\p{M}\x{1100}-\x{11FF}\x{0340}\x{0341}\x{0343}\x{0344}\x{0374}\x{037E}\x{0387})"
    R"(\x{1F71}-\x{1FFD}\x{2000}\x{2001}\x{2126}\x{212A}\x{212B}\x{2329}\x{232A})"
    R"(\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}])";

static std::string regex_quote(const std::string& s) {
  std::string out = "\\Q";
  size_t pos = 0, at;
  while ((at = s.find("\\E", pos)) != std::string::npos) {  // \E inside \Q..\E must be split
    out += s.substr(pos, at - pos) + "\\E\\\\E\\Q";
    pos = at + 2;
  }
  return out + s.substr(pos) + "\\E";
}

static std::string pattern_of(const json& p, const std::string& where) {
  if (p.contains("Regex")) return get_field<std::string>(p, "Regex", where);
  if (p.contains("String")) return regex_quote(get_field<std::string>(p, "String", where));
  fail("{}: pattern {} is neither {{\"Regex\": ...}} nor {{\"String\": ...}}", where, p.dump());
}

static std::string literal_of(const json& p, const std::string& where) {
  if (p.contains("String")) return get_field<std::string>(p, "String", where);
  fail("{}: Replace pattern {} is not a {{\"String\": ...}} (regex Replace is not supported)",
       where, p.dump());
}

static std::string prepend_scheme(const json& j, const std::string& where) {
  if (j.contains("prepend_scheme")) {
    auto s = get_field<std::string>(j, "prepend_scheme", where);
    if (s != "always" && s != "first" && s != "never")
      fail("{}: Metaspace prepend_scheme '{}': expected always, first or never", where, s);
    return s;
  }
  return get_field_or<bool>(j, "add_prefix_space", true, where) ? "always" : "never";
}

static void add_normalizer(const json& n, const std::string& where, std::vector<TextStep>& steps) {
  if (n.is_null()) return;
  auto type = get_field<std::string>(n, "type", where + " normalizer");
  if (type == "Sequence") {
    for (const auto& m : get_field<json>(n, "normalizers", where)) add_normalizer(m, where, steps);
  } else if (type == "Prepend") {
    steps.push_back({TextStep::kPrepend, get_field<std::string>(n, "prepend", where), ""});
  } else if (type == "Replace") {
    steps.push_back({TextStep::kReplace, literal_of(get_field<json>(n, "pattern", where), where),
                     get_field<std::string>(n, "content", where)});
  } else if (type == "NFC") {
    TextStep st{TextStep::kRequireNfc, kNotNfcSafe, ""};
    st.regex = std::make_shared<RegexSplitter>(kNotNfcSafe);
    steps.push_back(st);
  } else {
    fail("{}: normalizer type '{}' is not supported (supported: Sequence, Prepend, Replace, NFC)",
         where, type);
  }
}

static void add_pre_tokenizer(const json& p, const std::string& where,
                              std::vector<TextStep>& steps) {
  if (p.is_null()) return;
  auto type = get_field<std::string>(p, "type", where + " pre_tokenizer");
  if (type == "Sequence") {
    for (const auto& q : get_field<json>(p, "pretokenizers", where))
      add_pre_tokenizer(q, where, steps);
  } else if (type == "ByteLevel") {
    TextStep st{TextStep::kByteLevel, kGpt2Pattern, ""};
    st.flag = get_field_or<bool>(p, "add_prefix_space", false, where);
    st.use_regex = get_field_or<bool>(p, "use_regex", true, where);
    if (st.use_regex) st.regex = std::make_shared<RegexSplitter>(kGpt2Pattern);
    steps.push_back(st);
  } else if (type == "Split") {
    auto behavior = get_field<std::string>(p, "behavior", where);
    if (behavior != "Isolated" || get_field_or<bool>(p, "invert", false, where))
      fail("{}: Split pre_tokenizer with behavior '{}'{} is not supported (only Isolated)", where,
           behavior, get_field_or<bool>(p, "invert", false, where) ? " and invert" : "");
    TextStep st{TextStep::kSplitRegex, pattern_of(get_field<json>(p, "pattern", where), where), ""};
    st.regex = std::make_shared<RegexSplitter>(st.a);
    steps.push_back(st);
  } else if (type == "Metaspace") {
    TextStep st{TextStep::kMetaspace, get_field_or<std::string>(p, "replacement", "\u2581", where),
                ""};
    st.prepend_scheme = prepend_scheme(p, where);
    st.flag = get_field_or<bool>(p, "split", true, where);
    steps.push_back(st);
  } else {
    fail(
        "{}: pre_tokenizer type '{}' is not supported (supported: Sequence, ByteLevel, Split, "
        "Metaspace)",
        where, type);
  }
}

static void add_decoder(const json& d, const std::string& where, std::vector<DecodeStep>& steps) {
  if (d.is_null()) return;
  auto type = get_field<std::string>(d, "type", where + " decoder");
  if (type == "Sequence") {
    for (const auto& e : get_field<json>(d, "decoders", where)) add_decoder(e, where, steps);
  } else if (type == "ByteLevel") {
    steps.push_back({DecodeStep::kByteLevel});
  } else if (type == "Replace") {
    DecodeStep st{DecodeStep::kReplace};
    st.a = literal_of(get_field<json>(d, "pattern", where), where);
    st.b = get_field<std::string>(d, "content", where);
    steps.push_back(st);
  } else if (type == "ByteFallback") {
    steps.push_back({DecodeStep::kByteFallback});
  } else if (type == "Fuse") {
    steps.push_back({DecodeStep::kFuse});
  } else if (type == "Strip") {
    DecodeStep st{DecodeStep::kStrip};
    st.a = get_field<std::string>(d, "content", where);
    st.start = get_field_or<int>(d, "start", 0, where);
    st.stop = get_field_or<int>(d, "stop", 0, where);
    steps.push_back(st);
  } else if (type == "Metaspace") {
    DecodeStep st{DecodeStep::kMetaspace};
    st.a = get_field_or<std::string>(d, "replacement", "\u2581", where);
    st.prepend = prepend_scheme(d, where) != "never";
    steps.push_back(st);
  } else {
    fail(
        "{}: decoder type '{}' is not supported (supported: Sequence, ByteLevel, Replace, "
        "ByteFallback, Fuse, Strip, Metaspace)",
        where, type);
  }
}

BpeSpec bpe_spec_from_tokenizer_json(const std::string& path) {
  json j = read_json_file(path);
  BpeSpec spec;
  spec.where = path;
  const json model = get_field<json>(j, "model", path);
  auto type = get_field_or<std::string>(model, "type", "BPE", path + " model");
  if (type != "BPE")
    fail(
        "{}: model.type '{}' is not supported (supported: BPE; for a SentencePiece Unigram "
        "model use its tokenizer.model)",
        path, type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!get_field_or<std::string>(model, key, "", path + " model").empty())
      fail("{}: model.{} is not supported", path, key);
  if (get_field_or<double>(model, "dropout", 0.0, path + " model") != 0.0)
    fail("{}: model.dropout is set; BPE dropout is for training, expected null", path);
  spec.byte_fallback = get_field_or<bool>(model, "byte_fallback", false, path);
  spec.ignore_merges = get_field_or<bool>(model, "ignore_merges", false, path);
  spec.fuse_unk = get_field_or<bool>(model, "fuse_unk", false, path);
  spec.unk_token = get_field_or<std::string>(model, "unk_token", "", path);

  const json vocab = get_field<json>(model, "vocab", path + " model");
  if (!vocab.is_object()) fail("{}: model.vocab: expected an object token -> id", path);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail("{}: model.vocab['{}']: expected a non-negative integer id, got {}", path, it.key(),
           it.value().dump());
    auto id = it.value().get<int64_t>();
    if (static_cast<size_t>(id) >= spec.vocab.size()) spec.vocab.resize(id + 1);
    spec.vocab[id] = it.key();
  }
  for (const auto& m : get_field<json>(model, "merges", path + " model")) {
    if (m.is_string()) {
      auto s = m.get<std::string>();
      auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail("{}: merge '{}': expected two tokens separated by one space", path, s);
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail("{}: merge {}: expected \"a b\" or [\"a\", \"b\"]", path, m.dump());
    }
  }
  for (const auto& a : get_field_or<json>(j, "added_tokens", json::array(), path)) {
    AddedToken t;
    t.content = get_field<std::string>(a, "content", path + " added_tokens");
    t.id = get_field<int64_t>(a, "id", path + " added_tokens");
    t.special = get_field_or<bool>(a, "special", false, path);
    t.lstrip = get_field_or<bool>(a, "lstrip", false, path);
    t.rstrip = get_field_or<bool>(a, "rstrip", false, path);
    spec.added.push_back(t);
  }
  add_normalizer(get_field_or<json>(j, "normalizer", json(), path), path, spec.steps);
  add_pre_tokenizer(get_field_or<json>(j, "pre_tokenizer", json(), path), path, spec.steps);
  add_decoder(get_field_or<json>(j, "decoder", json(), path), path, spec.decoder);
  bool byte_level = false;
  for (const auto& st : spec.steps) byte_level = byte_level || st.kind == TextStep::kByteLevel;
  spec.kind = byte_level ? "bpe-byte-level" : spec.byte_fallback ? "bpe-byte-fallback" : "bpe";
  return spec;
}

BpeSpec bpe_spec_from_vocab_merges(const std::string& vocab_path, const std::string& merges_path,
                                   const std::vector<std::string>& special) {
  BpeSpec spec;
  spec.where = vocab_path + " + " + merges_path;
  spec.kind = "gpt2-bpe";
  json vocab = read_json_file(vocab_path);
  if (!vocab.is_object()) fail("{}: expected an object token -> id", vocab_path);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail("{}: '{}': expected a non-negative integer id, got {}", vocab_path, it.key(),
           it.value().dump());
    auto id = it.value().get<int64_t>();
    if (static_cast<size_t>(id) >= spec.vocab.size()) spec.vocab.resize(id + 1);
    spec.vocab[id] = it.key();
  }
  std::istringstream in(read_file(merges_path));
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
    auto sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
      fail("{}:{}: expected two tokens separated by one space, got '{}'", merges_path, lineno,
           line);
    spec.merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  for (const auto& s : special) {
    for (size_t id = 0; id < spec.vocab.size(); ++id)
      if (spec.vocab[id] == s) spec.added.push_back({s, static_cast<int64_t>(id), true});
  }
  TextStep st{TextStep::kByteLevel, kGpt2Pattern, ""};
  st.regex = std::make_shared<RegexSplitter>(kGpt2Pattern);
  spec.steps.push_back(st);
  spec.decoder.push_back({DecodeStep::kByteLevel});
  return spec;
}

}  // namespace saelab::tok
