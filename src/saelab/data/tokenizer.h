// Tokenizers of the language models saelab runs: GPT-2-style byte-level BPE (tokenizer.json, or
// vocab.json + merges.txt, or GPT-2's original encoder.json + vocab.bpe), SentencePiece-style BPE
// with byte fallback (Gemma / Llama-2 tokenizer.json) and SentencePiece tokenizer.model files.
// encode() never adds BOS/EOS itself; to_tokens() adds BOS the way
// TransformerLens's HookedTransformer.to_tokens(prepend_bos=...) does.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace saelab {

// Special token ids, from the tokenizer file and tokenizer_config.json/special_tokens_map.json.
struct SpecialTokens {
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;
  std::optional<int64_t> unk;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids, splitting out added/special tokens written literally in the text (as Hugging
  // Face tokenizers do). Adds no BOS/EOS. Throws saelab::Error on text that is not valid UTF-8.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Ids -> text; bytes that do not form valid UTF-8 become U+FFFD. Throws on an id out of range.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // The vocabulary entry itself (GPT-2: "Ġthe"; SentencePiece: "▁the"). Throws when out of range.
  virtual std::string id_to_token(int64_t id) const = 0;
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  virtual int64_t vocab_size() const = 0;
  // What the file format is, for messages and `saelab info` ("gpt2-bpe", "sentencepiece-bpe", ...).
  virtual std::string kind() const = 0;

  std::optional<int64_t> bos_token_id() const { return special_.bos; }
  std::optional<int64_t> eos_token_id() const { return special_.eos; }
  std::optional<int64_t> pad_token_id() const { return special_.pad; }
  std::optional<int64_t> unk_token_id() const { return special_.unk; }
  // True when the Hugging Face tokenizer would add BOS on its own (post_processor / add_bos_token):
  // Gemma, Llama. saelab's encode() never does; to_tokens() handles BOS for every tokenizer alike.
  bool adds_bos_by_default() const { return adds_bos_; }

  void set_special_tokens(const SpecialTokens& s) { special_ = s; }
  void set_adds_bos_by_default(bool b) { adds_bos_ = b; }

 protected:
  SpecialTokens special_;
  bool adds_bos_ = false;
};

// Loads the tokenizer of a Hugging Face model folder. Looks, in order, for tokenizer.json,
// vocab.json + merges.txt, encoder.json + vocab.bpe, tokenizer.model; BOS/EOS/PAD come from the
// tokenizer file and are overridden by tokenizer_config.json / special_tokens_map.json when
// present. A folder with none of these is a saelab::Error naming the folder and the files tried.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);
// The same, or nullptr when the folder holds no tokenizer files at all (pretokenized data needs
// none); tokenizer files that are there but unreadable are still an error naming the file.
std::unique_ptr<Tokenizer> load_tokenizer_if_present(const std::string& model_dir);

// TransformerLens's to_tokens for one string: the text's ids, with the BOS id first when
// prepend_bos (GPT-2: <|endoftext|> = 50256). Tokenizers that add BOS themselves in Hugging Face
// (Gemma, Llama) get it exactly once, and not at all when !prepend_bos (TL removes it with
// get_tokens_with_bos_removed). prepend_bos on a tokenizer without a BOS token is an error.
std::vector<int64_t> to_tokens(const Tokenizer& tok, const std::string& text, bool prepend_bos);

// Token strings for display (TL's to_str_tokens): each id decoded on its own.
std::vector<std::string> to_str_tokens(const Tokenizer& tok, const std::vector<int64_t>& ids);

}  // namespace saelab
