// Corrupt Parquet and Arrow files: truncated, with bytes flipped, with lengths and offsets
// overwritten by huge values. Every one must read through or stop with one saelab::Error line
// naming the file, never crash, hang or allocate without bound (the codecs and decoders cap every
// declared size by the data there).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "hf_fixtures.h"
#include "saelab/core/error.h"
#include "saelab/data/arrow_ipc.h"
#include "saelab/data/parquet.h"

namespace {
using saelab::test::TempDir;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Reads every row of every column of `path`; returns the number of errors (each checked).
int read_all(const std::string& path, const std::string& name, bool arrow, int& ok) {
  int errors = 0;
  for (const char* col : {"input_ids", "tokens", "text"}) {
    try {
      auto r = arrow ? saelab::open_arrow(path, col) : saelab::open_parquet(path, col);
      saelab::ColumnRow row;
      while (r->next(row)) {
      }
      ++ok;
    } catch (const saelab::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(name), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      ++errors;
    }
  }
  return errors;
}

TEST(TableMutation, CorruptParquetAndArrowAreOneLineErrors) {
  const auto& fx = saelab::test::hf_fixtures();
  SAELAB_NEED_HF_FIXTURES(fx);
  TempDir d;
  uint64_t state = 12345;
  auto rnd = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int errors = 0, ok = 0, cases = 0;
  for (const char* src :
       {"rs_snappy_v1_dict.parquet", "rs_zstd_v2_plain.parquet", "rs_gzip_v1_plain.parquet",
        "rs_brotli_v2_dict.parquet", "hy_delta.parquet", "data.arrow", "data_file.arrow"}) {
    const std::string orig = slurp(fx / src);
    const bool arrow = std::string(src).find(".arrow") != std::string::npos;
    const std::string name = std::string("m_") + src;
    const std::string path = d / name;
    auto run = [&](const std::string& bytes) {
      saelab::test::write_text(path, bytes);
      errors += read_all(path, name, arrow, ok);
      ++cases;
    };
    // Truncations, and a middle cut that keeps the trailing magic and footer.
    for (size_t k = 0; k < 24; ++k) run(orig.substr(0, orig.size() * k / 24));
    for (size_t k = 1; k < 12; ++k) {
      const size_t at = orig.size() * k / 12, n = 1 + rnd() % 64;
      run(orig.substr(0, at) + orig.substr(std::min(orig.size(), at + n)));
    }
    // Byte flips, half of them in the last quarter (footer / schema / last batch headers).
    for (int k = 0; k < 150; ++k) {
      std::string b = orig;
      const size_t tail = b.size() / 4;
      const size_t at = k % 2 ? b.size() - 1 - rnd() % tail : rnd() % b.size();
      b[at] = char(uint8_t(b[at]) ^ uint8_t(1 + rnd() % 255));
      run(b);
    }
    // Lengths, offsets and counts overwritten with huge or negative values.
    for (int k = 0; k < 120; ++k) {
      std::string b = orig;
      static const uint32_t kHuge[] = {0x7fffffffu, 0xffffffffu, 0x80000000u, 0x00ffffffu,
                                       0x40000000u};
      const uint32_t v = kHuge[rnd() % 5];
      const size_t at = rnd() % (b.size() - 4);
      std::memcpy(&b[at], &v, 4);
      run(b);
    }
    // A varint made huge: 0xff bytes run in a Thrift / FlatBuffer region near the end.
    for (int k = 0; k < 30; ++k) {
      std::string b = orig;
      const size_t at = b.size() - 8 - rnd() % std::min<size_t>(b.size() - 8, 400);
      for (size_t i = 0; i < 5 && at + i < b.size(); ++i) b[at + i] = char(0xff);
      run(b);
    }
  }
  // Both outcomes happen: the mutations reach past the first check.
  EXPECT_GT(errors, cases / 4);
  EXPECT_GT(ok, 10);
  std::printf("[ mutation ] %d corrupt files: %d column reads failed cleanly, %d read through\n",
              cases, errors, ok);
}

}  // namespace
