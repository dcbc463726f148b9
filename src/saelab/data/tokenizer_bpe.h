// BPE tokenizers in the Hugging Face `tokenizers` model: a vocabulary, ranked merges and a
// pipeline of added-token splitting -> normalizer -> pre-tokenizers -> BPE -> decoder. One class
// serves GPT-2-style byte-level BPE (GPT-2, GPT-NeoX/Pythia, Llama-3, Qwen2) and
// SentencePiece-style BPE with "▁" and byte fallback (Gemma, Llama-2 tokenizer.json).
// BpeSpec is filled by the loaders in tokenizer_json.cpp.
#pragma once
#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "saelab/data/tokenizer.h"
#include "saelab/data/tokenizer_unicode.h"

namespace saelab::tok {

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false;
  bool lstrip = false;  // swallow whitespace before the token
  bool rstrip = false;  // swallow whitespace after it
};

// Normalizer and pre-tokenizer steps (HF names), applied in order to each piece of text between
// added tokens.
struct TextStep {
  enum Kind {
    kPrepend,     // normalizer Prepend(text): text before a non-empty segment
    kReplace,     // normalizer Replace(from, to), literal strings
    kSplitRegex,  // pre_tokenizer Split(Regex, behavior Isolated)
    kByteLevel,   // pre_tokenizer ByteLevel: [add_prefix_space] [GPT-2 regex split] byte map
    kMetaspace,   // pre_tokenizer Metaspace: ' ' -> replacement, prepend_scheme, [split]
    kRequireNfc,  // normalizer NFC: text it would change (regex a) is refused, not mis-tokenized
  } kind;
  std::string a, b;       // Prepend text / Replace from,to / regex / Metaspace replacement
  bool flag = false;      // ByteLevel add_prefix_space / Metaspace split
  bool use_regex = true;  // ByteLevel use_regex
  std::string prepend_scheme = "always";  // Metaspace: always | first | never
  std::shared_ptr<RegexSplitter> regex;
};

// Decoder steps (HF names), applied in order to the list of token strings.
struct DecodeStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string a, b;         // Replace from,to / Strip content / Metaspace replacement
  int start = 0, stop = 0;  // Strip
  bool prepend = false;     // Metaspace: the first token's leading space was added by encoding
};

struct BpeSpec {
  std::string where;  // the file(s), for messages
  std::string kind = "bpe";
  std::vector<std::string> vocab;  // id -> token ("" where no token has that id)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;
  std::vector<TextStep> steps;
  std::vector<DecodeStep> decoder;
  bool byte_fallback = false;
  bool ignore_merges = false;
  bool fuse_unk = false;
  std::string unk_token;  // "" when none
};

// Splits text at literal occurrences of added tokens (longest match first). Each part is either
// text (id < 0) or one added token (its id); lstrip/rstrip swallow neighbouring whitespace.
struct Segment {
  std::string_view text;
  int64_t id = -1;
  size_t offset = 0;  // where the part starts in the text
};
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  std::vector<Segment> split(std::string_view text) const;

 private:
  std::vector<AddedToken> tokens_;                     // longest first
  std::array<std::vector<uint32_t>, 256> by_first_{};  // candidates by their first byte
};

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeSpec spec);
  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string id_to_token(int64_t id) const override;
  std::optional<int64_t> token_to_id(const std::string& token) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string kind() const override { return spec_.kind; }

 private:
  void encode_segment(std::string_view text, bool at_start, std::vector<int64_t>& out) const;
  void encode_word(const std::string& word, std::vector<int64_t>& out) const;

  BpeSpec spec_;
  std::vector<std::string> vocab_;  // vocab plus added tokens
  std::unordered_map<std::string, int64_t> ids_;
  std::unordered_map<std::string, int> ranks_;  // a + '\xff' + b -> rank
  AddedTokenMatcher added_;
  std::optional<int64_t> unk_id_;
  std::vector<int64_t> byte_ids_;  // <0xXX> ids when byte_fallback (-1 if absent)
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

// Loaders (tokenizer_json.cpp). Hugging Face tokenizer.json with model.type BPE:
BpeSpec bpe_spec_from_tokenizer_json(const std::string& path);
// GPT-2's pair of files: vocab.json + merges.txt, or the original encoder.json + vocab.bpe.
// Tokens listed in `special` (e.g. "<|endoftext|>") that are in the vocabulary are split out of
// the text as added tokens.
BpeSpec bpe_spec_from_vocab_merges(const std::string& vocab_path, const std::string& merges_path,
                                   const std::vector<std::string>& special);

// Runs a decoder pipeline on token strings (the tokens of ids, in order).
std::string run_decoder(std::vector<std::string> tokens, const std::vector<DecodeStep>& steps);

}  // namespace saelab::tok
