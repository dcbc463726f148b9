// Token sources: pretokenized jsonl / .npy / .bin (fixtures written by numpy, an independent
// writer), folders, the Hugging Face cache layout, SAELens's packing of documents, and errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "saelab/core/error.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"
#include "test_util.h"

namespace {
using saelab::test::run_python;
using saelab::test::shell_quote;
using saelab::test::TempDir;
using saelab::test::write_text;
namespace fs = std::filesystem;

std::vector<std::vector<int64_t>> all_windows(saelab::TokenSource& s) {
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> w;
  while (s.next(w)) out.push_back(w);
  return out;
}

std::unique_ptr<saelab::TokenSource> open_src(const std::string& path, int64_t ctx) {
  saelab::TokenSourceOptions o;
  o.dataset_path = path;
  o.context_size = ctx;
  o.prepend_bos = false;
  return saelab::open_token_source(o);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const saelab::Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenSource, JsonlInputIdsAndTokensColumns) {
  TempDir d;
  write_text(d / "a.jsonl",
             "{\"input_ids\": [1, 2, 3, 4, 5]}\n\n{\"tokens\": [6, 7, 8, 9, 10, 11]}\n");
  auto s = open_src(d / "a.jsonl", 4);
  auto w = all_windows(*s);
  // SAELens uses the first context_size ids of each pretokenized row.
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(w[1], (std::vector<int64_t>{6, 7, 8, 9}));
  s->restart();
  EXPECT_EQ(all_windows(*s), w);
  std::string e = error_of([&] { all_windows(*open_src(d / "a.jsonl", 6)); });
  EXPECT_NE(e.find("a.jsonl"), std::string::npos) << e;
  EXPECT_NE(e.find("fewer than context_size"), std::string::npos) << e;
  write_text(d / "b.jsonl", "{\"ids\": [1]}\n");
  e = error_of([&] { all_windows(*open_src(d / "b.jsonl", 1)); });
  EXPECT_NE(e.find("b.jsonl:1"), std::string::npos) << e;
}

TEST(TokenSource, NpyAndBinFromNumpy) {
  TempDir d;
  run_python(
      "import numpy as np, json\n"
      "a = (np.arange(24).reshape(4, 6) * 7 % 50)\n"
      "np.save(" +
      shell_quote(d / "i32.npy") +
      ", a.astype(np.int32))\n"
      "np.save(" +
      shell_quote(d / "u16.npy") +
      ", a.astype(np.uint16))\n"
      "np.save(" +
      shell_quote(d / "flat.npy") +
      ", a.reshape(-1).astype(np.int64))\n"
      "(a.reshape(-1) + 60000).astype(np.uint16).tofile(" +
      shell_quote(d / "t.bin") +
      ")\n"
      "json.dump({'dtype': 'uint16', 'row_length': 6}, open(" +
      shell_quote(d / "t.bin.json") +
      ", 'w'))\n"
      "(a.reshape(-1) + 100000).astype(np.uint32).tofile(" +
      shell_quote(d / "u.bin") +
      ")\n"
      "json.dump({'dtype': 'uint32'}, open(" +
      shell_quote(d / "u.bin.json") + ", 'w'))\n");
  std::vector<std::vector<int64_t>> rows(4);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c) rows[size_t(r)].push_back((r * 6 + c) * 7 % 50);
  for (const char* f : {"i32.npy", "u16.npy"}) {
    auto w = all_windows(*open_src(d / f, 5));
    ASSERT_EQ(w.size(), 4u) << f;
    for (int r = 0; r < 4; ++r)
      EXPECT_EQ(w[size_t(r)],
                std::vector<int64_t>(rows[size_t(r)].begin(), rows[size_t(r)].begin() + 5))
          << f;
  }
  auto flat = all_windows(*open_src(d / "flat.npy", 8));  // a 1-D stream is cut into windows
  ASSERT_EQ(flat.size(), 3u);
  EXPECT_EQ(flat[1][0], rows[1][2]);
  auto bin = all_windows(*open_src(d / "t.bin", 6));
  ASSERT_EQ(bin.size(), 4u);
  EXPECT_EQ(bin[3][5], rows[3][5] + 60000);
  auto ubin = all_windows(*open_src(d / "u.bin", 12));  // no row_length: windows of context_size
  ASSERT_EQ(ubin.size(), 2u);
  EXPECT_EQ(ubin[1][11], rows[3][5] + 100000);
  fs::remove(d / "t.bin.json");
  std::string e = error_of([&] { all_windows(*open_src(d / "t.bin", 6)); });
  EXPECT_NE(e.find("t.bin.json"), std::string::npos) << e;
}

TEST(TokenSource, FolderAndHuggingFaceCache) {
  TempDir d;
  fs::create_directories(d / "ds/sub");
  write_text(d / "ds/b.jsonl", "{\"input_ids\": [3, 3]}\n");
  write_text(d / "ds/a.jsonl", "{\"input_ids\": [1, 1]}\n{\"input_ids\": [2, 2]}\n");
  write_text(d / "ds/sub/c.jsonl", "{\"input_ids\": [4, 4]}\n");
  write_text(d / "ds/README.md", "not data\n");
  auto w = all_windows(*open_src(d / "ds", 2));
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0][0], 1);
  EXPECT_EQ(w[1][0], 2);
  EXPECT_EQ(w[2][0], 3);
  EXPECT_EQ(w[3][0], 4);

  const std::string snap = d / "hub/datasets--someorg--tiny/snapshots/abc123";
  fs::create_directories(snap + "/data");
  fs::create_directories(d / "hub/datasets--someorg--tiny/refs");
  write_text(d / "hub/datasets--someorg--tiny/refs/main", "abc123");
  write_text(snap + "/data/train.jsonl", "{\"tokens\": [9, 8, 7]}\n");
  fs::create_directories(d / "hub/datasets--someorg--pq/snapshots/r1/data");
  write_text(d / "hub/datasets--someorg--pq/snapshots/r1/data/train-0.parquet", "PAR1");
  const char* old = std::getenv("HF_HUB_CACHE");
  std::string saved = old ? old : "";
  setenv("HF_HUB_CACHE", (d / "hub").c_str(), 1);
  auto hw = all_windows(*open_src("someorg/tiny", 3));
  ASSERT_EQ(hw.size(), 1u);
  EXPECT_EQ(hw[0], (std::vector<int64_t>{9, 8, 7}));
  std::string e = error_of([&] { open_src("someorg/pq", 3); });
  EXPECT_NE(e.find("train-0.parquet: not a Parquet file"), std::string::npos) << e;
  e = error_of([&] { open_src("someorg/missing", 3); });
  EXPECT_NE(e.find("someorg/missing"), std::string::npos) << e;
  EXPECT_NE(e.find("huggingface-cli download --repo-type dataset"), std::string::npos) << e;
  if (old)
    setenv("HF_HUB_CACHE", saved.c_str(), 1);
  else
    unsetenv("HF_HUB_CACHE");
}

TEST(SequencePacker, ConcatenatesWithBosAndSeparator) {
  // Worked by hand from SAELens's concat_and_batch_sequences: every window starts with BOS (9),
  // documents are separated by the separator (8) unless the window holds no document yet, tails
  // continue in the next window, and the last partial window is dropped.
  saelab::SequencePacker p(5, int64_t(9), int64_t(8), false);
  std::vector<std::vector<int64_t>> out;
  p.add({1, 2, 3}, out);
  p.add({4, 5, 6, 7, 10}, out);
  p.add({11}, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::vector<int64_t>{9, 1, 2, 3, 8}));
  EXPECT_EQ(out[1], (std::vector<int64_t>{9, 4, 5, 6, 7}));
  p.add({12, 13}, out);  // window now 9 10 8 11 -> +8 full
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2], (std::vector<int64_t>{9, 10, 8, 11, 8}));

  saelab::SequencePacker q(3, std::nullopt, std::nullopt, false);
  out.clear();
  q.add({1, 2}, out);
  q.add({3, 4}, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (std::vector<int64_t>{1, 2, 3}));
}

TEST(SequencePacker, DisableConcatDropsTails) {
  saelab::SequencePacker p(3, int64_t(9), int64_t(8), true);
  std::vector<std::vector<int64_t>> out;
  p.add({1, 2, 3, 4}, out);
  p.add({5}, out);
  p.add({9, 6, 7}, out);  // already starts with BOS: not doubled
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::vector<int64_t>{9, 1, 2}));
  EXPECT_EQ(out[1], (std::vector<int64_t>{9, 6, 7}));
}

TEST(TokenSource, RawTextIsTokenizedAndPacked) {
  TempDir d;
  // A byte-level BPE over a-z with no merges: each letter is its own token.
  std::string vocab = "{";
  for (int i = 0; i < 26; ++i)
    vocab += "\"" + std::string(1, char('a' + i)) + "\": " + std::to_string(i) + ", ";
  vocab += "\"\\u0120\": 26, \"<|endoftext|>\": 27}";
  fs::create_directories(d / "tok");
  write_text(d / "tok/vocab.json", vocab);
  write_text(d / "tok/merges.txt", "#version: 0.2\n");
  std::shared_ptr<const saelab::Tokenizer> tok = saelab::load_tokenizer(d / "tok");
  ASSERT_EQ(tok->encode("ab"), (std::vector<int64_t>{0, 1}));
  write_text(d / "docs.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"ba\"}\n{\"text\": \"abab\"}\n");
  write_text(d / "docs.txt", "ab\n\nba\nabab\n");
  saelab::TokenSourceOptions o;
  o.context_size = 4;
  o.prepend_bos = true;
  o.bos_id = 27;
  o.separator_id = 27;
  o.tokenizer = tok;
  // By hand: [BOS a b SEP] [BOS b a SEP] [BOS a b a] and a partial [BOS b] that is dropped.
  const std::vector<std::vector<int64_t>> expect = {{27, 0, 1, 27}, {27, 1, 0, 27}, {27, 0, 1, 0}};
  for (const char* f : {"docs.jsonl", "docs.txt"}) {
    o.dataset_path = d / f;
    auto s = saelab::open_token_source(o);
    EXPECT_EQ(all_windows(*s), expect) << f;
  }
  o.disable_concat_sequences = true;
  auto s = saelab::open_token_source(o);
  EXPECT_EQ(all_windows(*s), (std::vector<std::vector<int64_t>>{{27, 0, 1, 0}}))
      << "only abab fills a window";
  o.tokenizer = nullptr;
  s = saelab::open_token_source(o);
  std::string e = error_of([&] { all_windows(*s); });
  EXPECT_NE(e.find("tokenizer"), std::string::npos) << e;
}

TEST(TokenSource, SeparatorResolution) {
  EXPECT_TRUE(saelab::resolve_separator_token("bos", 1, 2, std::nullopt) ==
              std::optional<int64_t>(1));
  EXPECT_TRUE(saelab::resolve_separator_token("eos", 1, 2, std::nullopt) ==
              std::optional<int64_t>(2));
  EXPECT_TRUE(saelab::resolve_separator_token(5, 1, 2, std::nullopt) == std::optional<int64_t>(5));
  EXPECT_FALSE(saelab::resolve_separator_token(nullptr, 1, 2, std::nullopt).has_value());
  EXPECT_THROW(saelab::resolve_separator_token("sep", 1, 2, std::nullopt), saelab::Error);
  EXPECT_THROW(saelab::resolve_separator_token("foo", 1, 2, std::nullopt), saelab::Error);
}

TEST(TokenSource, BadPaths) {
  TempDir d;
  write_text(d / "x.parquet", "PAR1");
  std::string e = error_of([&] { open_src(d / "x.parquet", 3); });
  EXPECT_NE(e.find("x.parquet"), std::string::npos) << e;
  EXPECT_NE(e.find("not a Parquet file"), std::string::npos) << e;
  fs::create_directories(d / "empty");
  e = error_of([&] { open_src(d / "empty", 3); });
  EXPECT_NE(e.find("no token files"), std::string::npos) << e;
  e = error_of([&] { open_src(d / "nope.jsonl", 3); });
  EXPECT_NE(e.find("nope.jsonl"), std::string::npos) << e;
}

}  // namespace
