// Hugging Face datasets as they sit on disk: Parquet (written by arrow-rs through parquet-wasm and
// by hyparquet-writer: every codec, page v1 and v2, dictionary on and off, delta encodings, null
// rows, several row groups), Arrow IPC files and streams (apache-arrow), JSON Lines compressed
// with gzip (node's zlib) and Zstandard (the zstd tool). Each is compared, window by window, with
// the JSON Lines version of the same data that the same node script wrote
// (tests/data/fixtures_js/make_fixtures.mjs).
#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>

#include "hf_fixtures.h"
#include "saelab/core/error.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"

#if SAELAB_TEST_HAVE_SNAPPY
#include <snappy.h>
#endif

namespace {
namespace fs = std::filesystem;
using saelab::test::run_command;
using saelab::test::shell_quote;
using saelab::test::TempDir;
using Windows = std::vector<std::vector<int64_t>>;

// One id per UTF-8 byte (1..256), BOS 0: enough to compare how text documents are packed.
class ByteTokenizer : public saelab::Tokenizer {
 public:
  ByteTokenizer() { special_.bos = 0; }
  std::vector<int64_t> encode(const std::string& t) const override {
    std::vector<int64_t> ids;
    for (unsigned char c : t) ids.push_back(int64_t(c) + 1);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (auto i : ids) s += char(i - 1);
    return s;
  }
  std::string id_to_token(int64_t id) const override { return std::string(1, char(id - 1)); }
  std::optional<int64_t> token_to_id(const std::string&) const override { return std::nullopt; }
  int64_t vocab_size() const override { return 257; }
  std::string kind() const override { return "bytes"; }
};

class HfFormats : public ::testing::Test {
 protected:
  void SetUp() override { SAELAB_NEED_HF_FIXTURES(fx()); }
  static const saelab::test::HfFixtures& fx() { return saelab::test::hf_fixtures(); }
  static std::string f(const std::string& name) { return fx() / name; }
};

Windows windows(const std::string& path, int64_t ctx, const std::string& column = "",
                bool text = false) {
  saelab::TokenSourceOptions o;
  o.dataset_path = path;
  o.context_size = ctx;
  o.dataset_column = column;
  o.prepend_bos = text;
  if (text) {
    o.tokenizer = std::make_shared<ByteTokenizer>();
    o.bos_id = 0;
    o.separator_id = 10;
  }
  auto s = saelab::open_token_source(o);
  Windows out;
  std::vector<int64_t> w;
  while (s->next(w)) out.push_back(w);
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const saelab::Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> files_with(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ext) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(HfFormats, ParquetFromEveryWriterCodecAndPageVersionEqualsJsonl) {
  const Windows ids = windows(f("ids.jsonl"), 8);
  const Windows toks = windows(f("tokens.jsonl"), 8);
  const Windows text = windows(f("text.jsonl"), 16, "", true);
  ASSERT_EQ(ids.size(), 53u - 8u);  // 53 rows, every 7th from row 3 null (skipped)
  ASSERT_EQ(toks.size(), 53u);
  ASSERT_GT(text.size(), 20u);
  int n = 0;
  for (const auto& p : files_with(fx().dir, ".parquet")) {
    const std::string name = fs::path(p).filename().string();
    if (name.rfind("big_", 0) == 0 || name == "scalar.parquet") continue;
    SCOPED_TRACE(name);
    EXPECT_EQ(windows(p, 8), ids);  // SAELens's default column choice: input_ids
    EXPECT_EQ(windows(p, 16, "text", true), text);
    if (name.rfind("rs_", 0) == 0) EXPECT_EQ(windows(p, 8, "tokens"), toks);
    ++n;
  }
  EXPECT_EQ(n, 6 * 2 * 2 + 2);  // 6 codecs x v1/v2 x dictionary on/off, and 2 hyparquet files
}

TEST_F(HfFormats, ArrowFilesAndStreamsEqualJsonl) {
  for (const char* name : {"data.arrow", "data_file.arrow", "data_large.arrow"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(windows(f(name), 8), windows(f("ids.jsonl"), 8));
    EXPECT_EQ(windows(f(name), 8, "tokens"), windows(f("tokens.jsonl"), 8));
    EXPECT_EQ(windows(f(name), 16, "text", true), windows(f("text.jsonl"), 16, "", true));
  }
}

TEST_F(HfFormats, CompressedArrowBodiesAreDecodedAndSizeChecked) {
  if (!fs::exists(f("data_zstd.arrow"))) GTEST_SKIP() << "the zstd tool is missing";
  // Each buffer is Zstandard-decoded, and the decoded size is held against the declared one:
  // apache-arrow's writer declares the compressed size (one byte short here), which is refused.
  const std::string e = error_of([&] { windows(f("data_zstd.arrow"), 8); });
  EXPECT_NE(e.find("data_zstd.arrow: column 'input_ids': Zstandard data decompressed to"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("the header declares"), std::string::npos) << e;
}

TEST_F(HfFormats, GzipAndZstdJsonlEqualPlain) {
  // ids.jsonl.gz is two gzip members; the .zst is two Zstandard frames, as `cat` makes them.
  EXPECT_EQ(windows(f("ids.jsonl.gz"), 8), windows(f("ids.jsonl"), 8));
  EXPECT_EQ(windows(f("text.jsonl.gz"), 16, "", true), windows(f("text.jsonl"), 16, "", true));
  const auto r = run_command("(cd " + shell_quote(fx().dir) +
                             " && head -n 20 ids.jsonl | zstd -q -c > ids.jsonl.zst && tail -n +21 "
                             "ids.jsonl | zstd -q -c >> ids.jsonl.zst)");
  if (r.rc != 0) GTEST_SKIP() << "the zstd tool is missing (scripts/setup.sh installs it)";
  EXPECT_EQ(windows(f("ids.jsonl.zst"), 8), windows(f("ids.jsonl"), 8));
  // A truncated compressed file is an error naming it, not a short dataset.
  TempDir d;
  std::ifstream in(f("ids.jsonl.gz"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  saelab::test::write_text(d / "cut.jsonl.gz", bytes.substr(0, bytes.size() - 30));
  const std::string e = error_of([&] { windows(d / "cut.jsonl.gz", 8); });
  EXPECT_NE(e.find("cut.jsonl.gz"), std::string::npos) << e;
  EXPECT_NE(e.find("gzip"), std::string::npos) << e;
}

TEST_F(HfFormats, ColumnChoiceAndUnsupportedColumnsAreNamed) {
  // dataset_column picks another column; one that is absent is named with the columns there.
  std::string e = error_of([&] { windows(f("rs_snappy_v1_dict.parquet"), 8, "ids"); });
  EXPECT_NE(e.find("rs_snappy_v1_dict.parquet"), std::string::npos) << e;
  EXPECT_NE(e.find("'ids'"), std::string::npos) << e;
  EXPECT_NE(e.find("input_ids, tokens, text"), std::string::npos) << e;
  e = error_of([&] { windows(f("scalar.parquet"), 1); });
  EXPECT_NE(e.find("scalar.parquet: column 'input_ids'"), std::string::npos) << e;
  EXPECT_NE(e.find("scalar INT32"), std::string::npos) << e;
  e = error_of([&] { windows(f("data.arrow"), 1000); });
  EXPECT_NE(e.find("fewer than context_size"), std::string::npos) << e;
}

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// A pretokenized dataset of rows of 512 int64 ids, Snappy-compressed, with and without a
// dictionary: every id is read (count and sum computed by the writing script), and the rate is
// printed in tokens per second of this thread's CPU time. Beside it, the same ids decoded by
// Google's libsnappy alone (compressed by it in 1 MiB blocks, as Parquet's pages are): the hosts
// this runs on differ by 2x in speed from day to day, and that figure tells the host apart from
// the reader.
TEST_F(HfFormats, PretokenizedParquetSpeed) {
  TempDir d;
  const auto big = saelab::test::hf_big_fixtures(d.path(), 8192);
  ASSERT_TRUE(big.error.empty()) << big.error;
  auto f = [&](const std::string& name) { return d / name; };
  std::ifstream sum_in(f("big.sum"));
  int64_t want_n = 0, want_sum = 0;
  sum_in >> want_n >> want_sum;
  ASSERT_EQ(want_n, 8192 * 512);
  std::vector<int64_t> all;  // every id read, in order, for the libsnappy figure
  for (const char* name : {"big_dict.parquet", "big_plain.parquet"}) {
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      const double t0 = thread_seconds();
      saelab::TokenSourceOptions o;
      o.dataset_path = f(name);
      o.context_size = 512;
      o.prepend_bos = false;
      auto s = saelab::open_token_source(o);
      std::vector<int64_t> w;
      int64_t n = 0, sum = 0;
      while (s->next(w)) {
        n += int64_t(w.size());
        for (int64_t v : w) sum += v;
        if (rep == 0 && all.size() < size_t(want_n)) all.insert(all.end(), w.begin(), w.end());
      }
      best = std::min(best, thread_seconds() - t0);
      ASSERT_EQ(n, want_n) << name;
      ASSERT_EQ(sum, want_sum) << name;
    }
    std::printf("[ speed    ] %s: %.1f M tokens/s per core (CPU time, best of 7)\n", name,
                double(want_n) / best / 1e6);
  }
#if SAELAB_TEST_HAVE_SNAPPY
  const size_t block = size_t(1) << 17;  // ids per 1 MiB block
  std::vector<std::string> blocks;
  for (size_t i = 0; i < all.size(); i += block) {
    std::string c;
    snappy::Compress(reinterpret_cast<const char*>(all.data() + i),
                     8 * std::min(block, all.size() - i), &c);
    blocks.push_back(std::move(c));
  }
  std::vector<char> out(8 * block);
  double best = 1e9;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = thread_seconds();
    for (const auto& c : blocks) ASSERT_TRUE(snappy::RawUncompress(c.data(), c.size(), out.data()));
    best = std::min(best, thread_seconds() - t0);
  }
  std::printf("[ speed    ] the same ids, libsnappy's decoding alone: %.1f M tokens/s per core\n",
              double(all.size()) / best / 1e6);
#endif
}

}  // namespace
