// tokenizer.json loading: SentencePiece-style BPE with byte fallback (Gemma, Llama-2 layouts),
// byte-level BPE with a Split regex (Llama-3 layout), BOS handling as TransformerLens does it, and
// the errors for missing or unsupported tokenizer files. The small tokenizer.json files are
// written here by hand and every expected id is worked out in the comments.
#include <gtest/gtest.h>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "test_util.h"

using saelab::json;
using ids_t = std::vector<int64_t>;

namespace {

const std::string kMeta = "\xE2\x96\x81";  // "▁"

// Vocabulary: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 + b = <0xXX> for every byte b, then these.
const std::vector<std::string> kPieces = {"h",
                                          "e",
                                          "l",
                                          "o",
                                          "w",
                                          "r",
                                          "d",
                                          kMeta,
                                          "ll",
                                          kMeta + "h",
                                          kMeta + "he",
                                          "llo",
                                          kMeta + "hello",
                                          kMeta + "w",
                                          "or",
                                          kMeta + "wor",
                                          "ld",
                                          kMeta + "world"};
int64_t piece(const std::string& p) {
  for (size_t i = 0; i < kPieces.size(); ++i)
    if (kPieces[i] == p) return 260 + static_cast<int64_t>(i);
  throw std::runtime_error("no piece " + p);
}
int64_t byte_id(unsigned char b) { return 4 + b; }

json sp_style_tokenizer_json(bool llama_layout, bool byte_fallback, bool pair_merges) {
  json vocab = json::object();
  vocab["<pad>"] = 0;
  vocab["<eos>"] = 1;
  vocab["<bos>"] = 2;
  vocab["<unk>"] = 3;
  const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) vocab[std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">"] = 4 + b;
  for (size_t i = 0; i < kPieces.size(); ++i) vocab[kPieces[i]] = 260 + i;
  // Ranks 0..9.
  std::vector<std::pair<std::string, std::string>> merges = {
      {kMeta, "h"}, {"l", "l"}, {kMeta + "h", "e"},  {"ll", "o"}, {kMeta + "he", "llo"},
      {kMeta, "w"}, {"o", "r"}, {kMeta + "w", "or"}, {"l", "d"},  {kMeta + "wor", "ld"}};
  json jm = json::array();
  for (const auto& [a, b] : merges) {
    if (pair_merges)
      jm.push_back({a, b});
    else
      jm.push_back(a + " " + b);
  }
  json added = json::array();
  const char* names[] = {"<pad>", "<eos>", "<bos>", "<unk>"};
  for (int i = 0; i < 4; ++i)
    added.push_back({{"id", i},
                     {"content", names[i]},
                     {"special", true},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"single_word", false}});
  json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}};
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}};
  json dec_replace = {{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}};
  if (llama_layout) {
    j["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", kMeta}}, replace})}};
    j["decoder"] = {
        {"type", "Sequence"},
        {"decoders",
         json::array({dec_replace,
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  } else {
    j["normalizer"] = replace;
    j["decoder"] = {
        {"type", "Sequence"},
        {"decoders", json::array({dec_replace, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
  }
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", byte_fallback},
                {"vocab", vocab},
                {"merges", jm}};
  return j;
}

std::unique_ptr<saelab::Tokenizer> load_json(const saelab::test::TempDir& dir, const json& j) {
  saelab::write_json_atomic(dir / "tokenizer.json", j);
  return saelab::load_tokenizer(dir.path());
}

TEST(TokenizerJson, GemmaLayoutBpeWithByteFallback) {
  saelab::test::TempDir dir;
  auto tok = load_json(dir, sp_style_tokenizer_json(false, true, false));
  EXPECT_EQ(tok->kind(), "bpe-byte-fallback");
  EXPECT_EQ(tok->vocab_size(), 260 + static_cast<int64_t>(kPieces.size()));
  // "hello world" -> "hello▁world": h e [l l]=1 -> [ll o]=3 gives h e llo; ▁ w o r l d merges by
  // ranks 5, 6, 7, 8, 9 into ▁world. No ▁ before "hello": Gemma prepends nothing.
  EXPECT_EQ(tok->encode("hello world"),
            (ids_t{piece("h"), piece("e"), piece("llo"), piece(kMeta + "world")}));
  // é is not in the vocabulary: its UTF-8 bytes C3 A9; '!' likewise falls back to byte 0x21.
  ids_t want{piece("h"), byte_id(0xC3), byte_id(0xA9), byte_id('!')};
  EXPECT_EQ(tok->encode("h\xC3\xA9!"), want);
  EXPECT_EQ(tok->decode(want), "h\xC3\xA9!");
  EXPECT_EQ(tok->decode(tok->encode("hello world")), "hello world");
  // A lone continuation byte cannot be decoded: one U+FFFD per byte token.
  EXPECT_EQ(tok->decode({piece("h"), byte_id(0xA9)}), "h\xEF\xBF\xBD");
  // Special tokens written in the text are split out before normalization.
  EXPECT_EQ(tok->encode("<bos>hello<eos>"), (ids_t{2, piece("h"), piece("e"), piece("llo"), 1}));
  // Two spaces: ▁▁w -> ▁ then ▁w (rank 5) + o r -> or (6) -> ▁wor (7).
  EXPECT_EQ(tok->encode("  wor"), (ids_t{piece(kMeta), piece(kMeta + "wor")}));
}

TEST(TokenizerJson, PairFormMergesGiveTheSameIds) {
  saelab::test::TempDir a, b;
  auto t1 = load_json(a, sp_style_tokenizer_json(false, true, false));
  auto t2 = load_json(b, sp_style_tokenizer_json(false, true, true));
  for (const std::string s : {"hello world", "  well, hold ol' world", "h\xC3\xA9llo"})
    EXPECT_EQ(t1->encode(s), t2->encode(s)) << s;
}

TEST(TokenizerJson, LlamaLayoutPrependsAndStrips) {
  saelab::test::TempDir dir;
  auto tok = load_json(dir, sp_style_tokenizer_json(true, true, false));
  // Prepend("▁") + Replace: "▁hello▁world"; ▁ h (0), l l (1), ▁h e (2), ll o (3), ▁he llo (4).
  EXPECT_EQ(tok->encode("hello world"), (ids_t{piece(kMeta + "hello"), piece(kMeta + "world")}));
  // The Strip decoder removes the one leading space the Prepend normalizer added.
  EXPECT_EQ(tok->decode({piece(kMeta + "hello"), piece(kMeta + "world")}), "hello world");
}

TEST(TokenizerJson, UnknownWithoutByteFallbackFusesUnk) {
  saelab::test::TempDir dir;
  auto tok = load_json(dir, sp_style_tokenizer_json(false, false, false));
  // Without byte fallback é and ü are <unk> (3); fuse_unk makes the run one <unk>.
  EXPECT_EQ(tok->encode("h\xC3\xA9\xC3\xBC"
                        "h"),
            (ids_t{piece("h"), 3, piece("h")}));
  EXPECT_EQ(tok->unk_token_id(), 3);
}

TEST(TokenizerJson, PrependBosLikeTransformerLens) {
  saelab::test::TempDir dir;
  auto tok = load_json(dir, sp_style_tokenizer_json(false, true, false));
  // The post_processor starts with <bos>: the HF tokenizer adds BOS itself (id 2, as Gemma's).
  EXPECT_EQ(tok->bos_token_id(), 2);
  EXPECT_TRUE(tok->adds_bos_by_default());
  ids_t body{piece("h"), piece("e"), piece("llo")};
  EXPECT_EQ(tok->encode("hello"), body);
  // prepend_bos=True: exactly one BOS, never doubled; False: none (TL removes the HF one).
  EXPECT_EQ(saelab::to_tokens(*tok, "hello", true),
            (ids_t{2, piece("h"), piece("e"), piece("llo")}));
  EXPECT_EQ(saelab::to_tokens(*tok, "hello", false), body);
}

TEST(TokenizerJson, ConfigFilesNameSpecialTokens) {
  saelab::test::TempDir dir;
  saelab::write_json_atomic(dir / "tokenizer_config.json",
                            {{"bos_token", {{"content", "<bos>"}, {"lstrip", false}}},
                             {"eos_token", "<eos>"},
                             {"pad_token", "<pad>"},
                             {"add_bos_token", true}});
  auto tok = load_json(dir, sp_style_tokenizer_json(false, true, false));
  EXPECT_EQ(tok->bos_token_id(), 2);
  EXPECT_EQ(tok->eos_token_id(), 1);
  EXPECT_EQ(tok->pad_token_id(), 0);
  saelab::write_json_atomic(dir / "tokenizer_config.json", {{"bos_token", "<nope>"}});
  try {
    saelab::load_tokenizer(dir.path());
    FAIL() << "expected saelab::Error";
  } catch (const saelab::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bos_token '<nope>'"), std::string::npos) << e.what();
  }
}

// GPT-2's bytes_to_unicode, written out again here so the test does not use saelab's table.
std::string byte_char(int b) {
  bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80)
    s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

json byte_level_json(bool llama3_split, bool ignore_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;  // id = byte value
  vocab["34"] = 256;
  vocab[byte_char(' ') + "hi"] = 257;  // "Ġhi": reachable only with ignore_merges
  vocab["<|begin_of_text|>"] = 258;
  json j;
  j["added_tokens"] =
      json::array({{{"id", 258}, {"content", "<|begin_of_text|>"}, {"special", true}}});
  j["normalizer"] = nullptr;
  json bl = {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", !llama3_split}};
  if (llama3_split) {
    json split = {
        {"type", "Split"},
        {"pattern",
         {{"Regex",
           R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
        {"behavior", "Isolated"},
        {"invert", false}};
    j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({split, bl})}};
  } else {
    j["pre_tokenizer"] = bl;
  }
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", json::array({"3 4"})},
                {"ignore_merges", ignore_merges},
                {"byte_fallback", false}};
  return j;
}

TEST(TokenizerJson, ByteLevelUsesTheFilesSplitPattern) {
  saelab::test::TempDir a, b;
  auto gpt2 = load_json(a, byte_level_json(false, false));
  auto llama3 = load_json(b, byte_level_json(true, false));
  EXPECT_EQ(gpt2->kind(), "bpe-byte-level");
  // GPT-2's regex keeps "12345" whole, so the merge "3 4" applies: 1 2 34 5.
  EXPECT_EQ(gpt2->encode("12345"), (ids_t{'1', '2', 256, '5'}));
  // Llama-3's \p{N}{1,3} splits it into 123 | 45 and the merge cannot apply.
  EXPECT_EQ(llama3->encode("12345"), (ids_t{'1', '2', '3', '4', '5'}));
  // Bytes of é (C3 A9) and a space are single-byte tokens; decode inverts.
  EXPECT_EQ(llama3->encode("\xC3\xA9 x"), (ids_t{0xC3, 0xA9, ' ', 'x'}));
  EXPECT_EQ(llama3->decode({0xC3, 0xA9, ' ', 'x'}), "\xC3\xA9 x");
  EXPECT_EQ(llama3->encode("<|begin_of_text|>hi"), (ids_t{258, 'h', 'i'}));
  EXPECT_EQ(llama3->decode({258, 'h', 'i'}), "<|begin_of_text|>hi");
  EXPECT_FALSE(llama3->bos_token_id().has_value());  // no config names one
  EXPECT_THROW(saelab::to_tokens(*llama3, "hi", true), saelab::Error);
}

TEST(TokenizerJson, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  saelab::test::TempDir a, b;
  auto plain = load_json(a, byte_level_json(false, false));
  auto ignore = load_json(b, byte_level_json(false, true));
  EXPECT_EQ(plain->encode(" hi"), (ids_t{' ', 'h', 'i'}));
  EXPECT_EQ(ignore->encode(" hi"), (ids_t{257}));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const saelab::Error& e) {
    return e.what();
  }
  return "(no saelab::Error)";
}

TEST(TokenizerErrors, EmptyFolderNamesFolderAndFiles) {
  saelab::test::TempDir dir;
  auto msg = error_of([&] { saelab::load_tokenizer(dir.path()); });
  EXPECT_NE(msg.find(dir.path()), std::string::npos) << msg;
  for (const char* f :
       {"tokenizer.json", "vocab.json + merges.txt", "encoder.json + vocab.bpe", "tokenizer.model"})
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  auto missing = error_of([&] { saelab::load_tokenizer(dir / "nope"); });
  EXPECT_NE(missing.find(dir / "nope"), std::string::npos) << missing;
  // vocab.json without merges.txt is not a tokenizer either.
  saelab::test::write_text(dir / "vocab.json", "{}");
  EXPECT_NE(error_of([&] { saelab::load_tokenizer(dir.path()); }).find("no tokenizer found"),
            std::string::npos);
}

TEST(TokenizerErrors, UnsupportedAndBrokenFiles) {
  saelab::test::TempDir dir;
  json j = sp_style_tokenizer_json(false, true, false);
  j["model"]["type"] = "WordPiece";
  auto msg = error_of([&] { load_json(dir, j); });
  EXPECT_NE(msg.find("model.type 'WordPiece'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir / "tokenizer.json"), std::string::npos) << msg;

  j = sp_style_tokenizer_json(false, true, false);
  j["model"]["merges"].push_back("zz q");
  msg = error_of([&] { load_json(dir, j); });
  EXPECT_NE(msg.find("merge 10 'zz q'"), std::string::npos) << msg;

  j = sp_style_tokenizer_json(false, true, false);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  msg = error_of([&] { load_json(dir, j); });
  EXPECT_NE(msg.find("pre_tokenizer type 'Whitespace'"), std::string::npos) << msg;

  saelab::test::write_text(dir / "tokenizer.json", "{not json");
  msg = error_of([&] { saelab::load_tokenizer(dir.path()); });
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;

  saelab::test::TempDir d2;
  auto tok = load_json(d2, sp_style_tokenizer_json(false, true, false));
  msg = error_of([&] { tok->decode({99999}); });
  EXPECT_NE(msg.find("token id 99999"), std::string::npos) << msg;
}

// Pretokenized data needs no tokenizer, so a model folder without one is fine; but a tokenizer file
// that is there and broken is reported as itself, not later as "no tokenizer was loaded".
TEST(TokenizerErrors, IfPresentIsNullOnlyWhenThereIsNoTokenizerFile) {
  saelab::test::TempDir dir;
  EXPECT_EQ(saelab::load_tokenizer_if_present(dir.path()), nullptr);
  saelab::test::write_text(dir / "vocab.json", "{}");  // half of a vocab + merges pair
  EXPECT_EQ(saelab::load_tokenizer_if_present(dir.path()), nullptr);
  saelab::test::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  auto msg = error_of([&] { saelab::load_tokenizer_if_present(dir.path()); });
  EXPECT_NE(msg.find(dir / "tokenizer.json"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  saelab::test::TempDir good;
  load_json(good, sp_style_tokenizer_json(false, true, false));
  EXPECT_NE(saelab::load_tokenizer_if_present(good.path()), nullptr);
}

}  // namespace
