// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) and TensorFlow's CRC mask, as used by the
// TFRecord framing of TensorBoard event files.
#pragma once
#include <cstddef>
#include <cstdint>

namespace saelab {

// CRC32C of n bytes, continuing from `crc` (0 to start). crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's mask: ((c >> 15) | (c << 17)) + 0xa282ead8.
uint32_t mask_crc32c(uint32_t crc);
uint32_t unmask_crc32c(uint32_t masked);

}  // namespace saelab
