// SentencePiece tokenizer.model: (1) models whose protobuf bytes this test writes by hand from
// sentencepiece_model.proto, with the expected ids worked out in the comments; (2) models trained
// by Debian's python3-sentencepiece (an independent writer and encoder), compared id for id.
#include <gtest/gtest.h>

#include <cstring>

#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "test_util.h"

using saelab::json;
using ids_t = std::vector<int64_t>;

namespace {

// --- a protocol-buffer writer, straight from the wire-format spec ---
std::string varint(uint64_t v) {
  std::string s;
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    s += static_cast<char>(b);
  } while (v);
  return s;
}
std::string key(int field, int wire) { return varint(static_cast<uint64_t>(field) << 3 | wire); }
std::string bytes_field(int f, const std::string& payload) {
  return key(f, 2) + varint(payload.size()) + payload;
}
std::string int_field(int f, int64_t v) { return key(f, 0) + varint(static_cast<uint64_t>(v)); }
std::string float_field(int f, float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  std::string s = key(f, 5);
  for (int k = 0; k < 4; ++k) s += static_cast<char>((u >> (8 * k)) & 0xFF);
  return s;
}

enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, BYTE = 6 };
struct P {
  std::string text;
  float score;
  int type;
};

// ModelProto {1: pieces, 2: trainer_spec, 3: normalizer_spec}.
std::string model_proto(const std::vector<P>& pieces, int model_type, bool byte_fallback) {
  std::string out;
  for (const auto& p : pieces)
    out += bytes_field(1, bytes_field(1, p.text) + float_field(2, p.score) + int_field(3, p.type));
  std::string trainer = int_field(3, model_type) +
                        int_field(4, static_cast<int64_t>(pieces.size())) +
                        int_field(35, byte_fallback) + int_field(40, 0) + int_field(41, 1) +
                        int_field(42, 2) + int_field(43, -1);  // pad_id -1: a 10-byte varint
  std::string normalizer = bytes_field(1, "identity") + int_field(3, 1) + int_field(4, 0);
  return out + bytes_field(2, trainer) + bytes_field(3, normalizer);
}

const std::string kMeta = "\xE2\x96\x81";  // "▁"

std::vector<P> specials() {
  return {{"<unk>", 0, UNKNOWN}, {"<s>", 0, CONTROL}, {"</s>", 0, CONTROL}};
}

// BPE: 0-2 specials, 3 + b = <0xXX>, then the pieces below from id 259.
std::vector<P> bpe_pieces() {
  auto v = specials();
  const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b)
    v.push_back({std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0, BYTE});
  for (P p : std::vector<P>{{kMeta, -10, NORMAL},
                            {"h", -11, NORMAL},
                            {"e", -12, NORMAL},
                            {"l", -13, NORMAL},
                            {"o", -14, NORMAL},
                            {"ll", -1, NORMAL},
                            {kMeta + "h", -2, NORMAL},
                            {"llo", -3, NORMAL},
                            {kMeta + "he", -4, NORMAL},
                            {kMeta + "hello", -5, NORMAL},
                            {"a", -15, NORMAL},
                            {"b", -16, NORMAL},
                            {"c", -17, NORMAL},
                            {"bc", -7, NORMAL},
                            {"ab", -6, NORMAL}})
    v.push_back(p);
  return v;
}
int64_t id_of(const std::vector<P>& ps, const std::string& t) {
  for (size_t i = 0; i < ps.size(); ++i)
    if (ps[i].text == t) return static_cast<int64_t>(i);
  throw std::runtime_error("no piece " + t);
}

std::unique_ptr<saelab::Tokenizer> load_model(const saelab::test::TempDir& dir,
                                              const std::string& bytes) {
  saelab::test::write_text(dir / "tokenizer.model", bytes);
  return saelab::load_tokenizer(dir.path());
}

TEST(SentencePieceModel, HandWrittenBpeMergesByScore) {
  saelab::test::TempDir dir;
  auto ps = bpe_pieces();
  auto tok = load_model(dir, model_proto(ps, 2, true));
  EXPECT_EQ(tok->kind(), "sentencepiece-bpe");
  EXPECT_EQ(tok->vocab_size(), static_cast<int64_t>(ps.size()));
  // "hello" -> "▁hello" (dummy prefix). Best scores first: ll (-1), ▁h (-2), llo (-3), ▁he (-4),
  // ▁hello (-5).
  EXPECT_EQ(tok->encode("hello"), (ids_t{id_of(ps, kMeta + "hello")}));
  // "▁abc": ab (-6) beats bc (-7) although bc comes first in the piece list; ▁ stays alone.
  EXPECT_EQ(tok->encode("abc"), (ids_t{id_of(ps, kMeta), id_of(ps, "ab"), id_of(ps, "c")}));
  // é is no piece: byte fallback to C3 A9 (ids 3 + byte).
  ids_t want{id_of(ps, kMeta + "hello"), id_of(ps, kMeta + "h"), 3 + 0xC3, 3 + 0xA9};
  EXPECT_EQ(tok->encode("hello h\xC3\xA9"), want);
  EXPECT_EQ(tok->decode(want), "hello h\xC3\xA9");  // dummy prefix removed again
  EXPECT_EQ(tok->bos_token_id(), 1);
  EXPECT_EQ(tok->eos_token_id(), 2);
  EXPECT_EQ(tok->unk_token_id(), 0);
  EXPECT_FALSE(tok->pad_token_id().has_value());  // pad_id -1
  EXPECT_EQ(saelab::to_tokens(*tok, "hello", true), (ids_t{1, id_of(ps, kMeta + "hello")}));
  EXPECT_EQ(saelab::to_tokens(*tok, "hello", false), (ids_t{id_of(ps, kMeta + "hello")}));
  EXPECT_EQ(tok->decode({1, id_of(ps, kMeta + "hello"), 2}),
            "hello");  // control pieces are dropped
}

TEST(SentencePieceModel, HandWrittenUnigramViterbi) {
  auto ps = specials();
  for (P p : std::vector<P>{{kMeta + "ab", -5, NORMAL},
                            {kMeta + "a", -1, NORMAL},
                            {"b", -1, NORMAL},
                            {kMeta, -3, NORMAL},
                            {"a", -3, NORMAL},
                            {"c", -2, NORMAL}})
    ps.push_back(p);
  saelab::test::TempDir dir;
  auto tok = load_model(dir, model_proto(ps, 1, false));
  EXPECT_EQ(tok->kind(), "sentencepiece-unigram");
  // "▁ab": ▁a + b = -2 beats ▁ab = -5 and ▁ + a + b = -7.
  EXPECT_EQ(tok->encode("ab"), (ids_t{id_of(ps, kMeta + "a"), id_of(ps, "b")}));
  // "▁abc" = ▁a b c (-4); "▁xx": x has no piece -> <unk> (0), the run of two fused into one.
  EXPECT_EQ(tok->encode("abc"), (ids_t{id_of(ps, kMeta + "a"), id_of(ps, "b"), id_of(ps, "c")}));
  EXPECT_EQ(tok->encode("xx"), (ids_t{id_of(ps, kMeta), 0}));
  EXPECT_EQ(tok->decode({id_of(ps, kMeta + "a"), 0}), "a \xE2\x81\x87 ");  // unk surface " ⁇ "
}

TEST(SentencePieceModel, BrokenAndUnsupportedFiles) {
  saelab::test::TempDir dir;
  auto good = model_proto(bpe_pieces(), 2, true);
  auto err = [&](const std::string& bytes) -> std::string {
    try {
      load_model(dir, bytes);
    } catch (const saelab::Error& e) {
      return e.what();
    }
    return "(no saelab::Error)";
  };
  auto msg = err(good.substr(0, good.size() - 5));
  EXPECT_NE(msg.find("tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  msg = err(model_proto(bpe_pieces(), 3, true));  // WORD model
  EXPECT_NE(msg.find("model_type 3"), std::string::npos) << msg;
  msg = err("this is not a protobuf at all");
  EXPECT_NE(msg.find("tokenizer.model"), std::string::npos) << msg;
}

// --- against python3-sentencepiece ---

std::vector<std::string> corpus() {
  return {"hello world",
          "the quick brown fox jumps over the lazy dog",
          "Hello World",
          "  leading and   inner   spaces  ",
          "café naïve Zürich",
          "привет мир",
          "unseen: 日本語 😀 Ω ẞ",
          "tabs\tand\nnewlines\r\n",
          "<ud>x and a<ud>b in words",
          "numbers 12345 and punctuation!?",
          "",
          " ",
          "a",
          "goodbye,everyone;tonight..."};
}

TEST(SentencePieceModel, MatchesPythonSentencePiece) {
  if (!saelab::test::python_has("sentencepiece"))
    GTEST_SKIP() << "python3-sentencepiece is not installed (make setup installs it)";
  saelab::test::TempDir dir;
  saelab::test::write_text(dir / "corpus.json", json(corpus()).dump());
  const std::string script = R"PY(
import io, json, random, sys, sentencepiece as spm
d = sys.argv[1]
random.seed(0)
words = ("the quick brown fox jumps over the lazy dog while hello world says goodbye to everyone "
         "in the village tonight café naïve Zürich привет мир numbers 123 45").split()
lines = [" ".join(random.choice(words) for _ in range(random.randint(3, 12))) for _ in range(400)]
corpus = json.load(open(d + "/corpus.json", encoding="utf-8"))
out = {}
for name, kw in {
    "bpe": dict(model_type="bpe", byte_fallback=True, vocab_size=400),
    "unigram": dict(model_type="unigram", byte_fallback=True, vocab_size=400, remove_extra_whitespaces=False),
    "bpe_unk": dict(model_type="bpe", byte_fallback=False, vocab_size=150),
    "unigram_unk": dict(model_type="unigram", byte_fallback=False, vocab_size=150, add_dummy_prefix=False),
}.items():
    f = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=f, minloglevel=2,
        normalization_rule_name="identity", character_coverage=1.0, hard_vocab_limit=False,
        user_defined_symbols=["<ud>"], **kw)
    import os
    os.makedirs(d + "/" + name)
    open(d + "/" + name + "/tokenizer.model", "wb").write(f.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=f.getvalue())
    ids = [sp.encode(s) for s in corpus]
    out[name] = {"ids": ids, "decoded": [sp.decode(i) for i in ids], "size": sp.get_piece_size(),
                 "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id()}
json.dump(out, open(d + "/expected.json", "w", encoding="utf-8"))
)PY";
  saelab::test::write_text(dir / "train.py", script);
  auto r = saelab::test::run_command("/usr/bin/python3 " + dir / "train.py" + " " + dir.path());
  ASSERT_EQ(r.rc, 0) << r.err;
  json expected = saelab::read_json_file(dir / "expected.json");
  auto texts = corpus();
  for (const char* name : {"bpe", "unigram", "bpe_unk", "unigram_unk"}) {
    auto tok = saelab::load_tokenizer(dir / name);
    const json& e = expected[name];
    EXPECT_EQ(tok->vocab_size(), e["size"].get<int64_t>()) << name;
    EXPECT_EQ(tok->bos_token_id(), e["bos"].get<int64_t>()) << name;
    EXPECT_EQ(tok->eos_token_id(), e["eos"].get<int64_t>()) << name;
    EXPECT_EQ(tok->unk_token_id(), e["unk"].get<int64_t>()) << name;
    size_t total = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      auto want = e["ids"][i].get<ids_t>();
      EXPECT_EQ(tok->encode(texts[i]), want)
          << name << " entry " << i << ": " << json(texts[i]).dump();
      EXPECT_EQ(tok->decode(want), e["decoded"][i].get<std::string>()) << name << " entry " << i;
      total += want.size();
    }
    EXPECT_GT(total, 100u) << name;
  }
}

}  // namespace
