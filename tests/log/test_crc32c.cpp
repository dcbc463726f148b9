// CRC32C against published check values (RFC 3720 appendix B.4, the CRC catalogue's "check") and a
// bit-at-a-time reference written here from the polynomial.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "saelab/log/crc32c.h"

using namespace saelab;

namespace {
uint32_t crc32c_bitwise(const std::vector<uint8_t>& bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
}  // namespace

TEST(Crc32c, KnownCheckValues) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(check.data(), check.size()), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) inc[i] = uint8_t(i), dec[i] = uint8_t(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), dec.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, MatchesBitwiseReferenceAndContinues) {
  std::mt19937 rng(7);
  for (size_t n : {1u, 7u, 64u, 1000u}) {
    std::vector<uint8_t> bytes(n);
    for (auto& b : bytes) b = uint8_t(rng());
    EXPECT_EQ(crc32c(bytes.data(), n), crc32c_bitwise(bytes)) << n;
    // Continuing a CRC over a split buffer gives the CRC of the whole.
    uint32_t part = crc32c(bytes.data(), n / 2);
    EXPECT_EQ(crc32c(bytes.data() + n / 2, n - n / 2, part), crc32c_bitwise(bytes)) << n;
  }
}

TEST(Crc32c, MaskIsTensorFlowsRotateAndAdd) {
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x12345678u}) {
    uint32_t expected = ((c >> 15) | (c << 17)) + 0xa282ead8u;
    EXPECT_EQ(mask_crc32c(c), expected);
    EXPECT_EQ(unmask_crc32c(mask_crc32c(c)), c);
  }
}
