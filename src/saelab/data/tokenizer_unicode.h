// UTF-8 and byte-level helpers shared by the tokenizers: splitting text into characters,
// validating it, lossy decoding of byte strings, GPT-2's byte <-> unicode map, and the PCRE2
// regex that pre-tokenizes text.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace saelab::tok {

// Byte offset of the first byte that does not start a valid UTF-8 sequence, or nullopt.
std::optional<size_t> utf8_invalid_at(std::string_view s);
// Throws saelab::Error "<what>: not valid UTF-8 at byte N" when s is not valid UTF-8.
void require_utf8(std::string_view s, const std::string& what);
// Length in bytes of the (valid) UTF-8 character that starts with this byte.
size_t utf8_len(unsigned char lead);
// The characters of a valid UTF-8 string, each as its own string.
std::vector<std::string> utf8_chars(std::string_view s);
std::string utf8_encode(uint32_t codepoint);
// Bytes -> valid UTF-8: each maximal invalid subsequence becomes U+FFFD (as Python's
// errors='replace', JS TextDecoder and Rust from_utf8_lossy do).
std::string utf8_lossy(std::string_view bytes);

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to U+0100..
// (space -> "Ġ"). Entries are UTF-8 strings.
const std::array<std::string, 256>& byte_to_unicode();
// The inverse for one code point; nullopt when the code point is not in the map.
std::optional<uint8_t> unicode_to_byte(uint32_t codepoint);
// Decodes the code point at s[i] (valid UTF-8), setting len to its length in bytes.
uint32_t utf8_decode(std::string_view s, size_t i, size_t* len);

// "<0x0A>" -> 10; nullopt for anything else. And the reverse.
std::optional<uint8_t> parse_byte_token(std::string_view token);
std::string byte_token(uint8_t b);

// GPT-2's pre-tokenizer pattern.
extern const char* const kGpt2Pattern;

// A compiled PCRE2 pattern (UTF, Unicode properties) that splits text into pieces.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  // The pieces in order; text between matches is kept as pieces too (HF "Isolated" behaviour),
  // so concatenating the pieces gives the text back.
  std::vector<std::string_view> split(std::string_view text) const;
  bool contains_match(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*, kept opaque so this header does not need pcre2.h
};

}  // namespace saelab::tok
