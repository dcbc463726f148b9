// The Snappy block decoder against Google's libsnappy as the writer: every buffer it compresses
// decodes to the same bytes, and every cut or corrupted block is refused without a crash.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "saelab/data/snappy_decode.h"

#if SAELAB_TEST_HAVE_SNAPPY
#include <snappy.h>
#endif

namespace {

#if SAELAB_TEST_HAVE_SNAPPY
std::vector<std::string> corpus() {
  std::mt19937_64 g(11);
  std::vector<std::string> c = {"",
                                "a",
                                std::string(15, 'x'),
                                std::string(16, 'y'),
                                std::string(17, 'z'),
                                std::string(100000, '\0')};
  // Pretokenized int64 pages: uniform ids (long-offset copies), a small vocabulary (short ones).
  for (uint64_t vocab : {50257ull, 7ull}) {
    std::vector<int64_t> ids(20000);
    for (auto& v : ids) v = int64_t(g() % vocab);
    c.emplace_back(reinterpret_cast<const char*>(ids.data()), ids.size() * 8);
  }
  // Repeating patterns of every period under 20 (overlapping copies with offsets 1-19).
  for (int period = 1; period < 20; ++period) {
    std::string s;
    for (int i = 0; i < 3000; ++i) s += char('a' + (i % period) * 7 % 26);
    c.push_back(s);
  }
  // Incompressible bytes (literals longer than 60, lengths in 1-3 extra bytes) and text.
  std::string rnd(300000, '\0');
  for (auto& ch : rnd) ch = char(g());
  c.push_back(rnd);
  std::string text;
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat, ", "and ", "then ", "slept. "};
  for (int i = 0; i < 40000; ++i) text += words[g() % 9];
  c.push_back(text);
  return c;
}
#endif

TEST(SnappyDecode, EqualsWhatLibsnappyCompressed) {
#if !SAELAB_TEST_HAVE_SNAPPY
  GTEST_SKIP() << "libsnappy-dev is missing (scripts/setup.sh installs it)";
#else
  for (const std::string& raw : corpus()) {
    std::string z;
    snappy::Compress(raw.data(), raw.size(), &z);
    std::vector<uint8_t> out;
    ASSERT_TRUE(saelab::snappy_decode(reinterpret_cast<const uint8_t*>(z.data()), z.size(), out))
        << raw.size() << " bytes";
    ASSERT_EQ(std::string(out.begin(), out.end()), raw) << raw.size() << " bytes";
    size_t declared = 0;
    ASSERT_TRUE(saelab::snappy_declared_length(reinterpret_cast<const uint8_t*>(z.data()), z.size(),
                                               declared));
    EXPECT_EQ(declared, raw.size());
  }
#endif
}

TEST(SnappyDecode, CutOrCorruptBlocksAreRefused) {
#if !SAELAB_TEST_HAVE_SNAPPY
  GTEST_SKIP() << "libsnappy-dev is missing (scripts/setup.sh installs it)";
#else
  std::mt19937_64 g(3);
  for (const std::string& raw : corpus()) {
    if (raw.size() < 2) continue;
    std::string z;
    snappy::Compress(raw.data(), raw.size(), &z);
    std::vector<uint8_t> out;
    // Every cut short of the whole block loses output bytes: refused.
    for (size_t cut : {size_t(1), z.size() / 2, z.size() - 1}) {
      EXPECT_FALSE(saelab::snappy_decode(reinterpret_cast<const uint8_t*>(z.data()), cut, out))
          << raw.size() << " bytes cut to " << cut;
    }
    // Flipped bytes: either refused, or decoded to the declared length (libsnappy agrees on
    // which); never a crash or a write past the output (run under ASan by scripts/fuzz.sh).
    for (int k = 0; k < 50; ++k) {
      std::string bad = z;
      bad[1 + g() % (bad.size() - 1)] ^= char(1 + g() % 255);
      const bool ours =
          saelab::snappy_decode(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), out);
      std::string theirs;
      const bool lib = snappy::Uncompress(bad.data(), bad.size(), &theirs);
      ASSERT_EQ(ours, lib) << raw.size() << " bytes, flip " << k;
      if (ours) EXPECT_EQ(std::string(out.begin(), out.end()), theirs);
    }
  }
#endif
}

}  // namespace
