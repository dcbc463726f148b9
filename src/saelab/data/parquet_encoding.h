// Parquet's value and level encodings, over bounds-checked byte ranges: the RLE / bit-packed
// hybrid (levels and dictionary indices), DELTA_BINARY_PACKED, and the byte-array encodings
// (PLAIN, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY). Every function throws
// parquet::DecodeError with what was wrong; the caller adds the file and column.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace saelab::parquet {

struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bits needed for values 0..max_value.
int bit_width_of(uint32_t max_value);

// What decode_rle_hybrid saw, gathered while decoding so callers need no second pass: the largest
// value, and how many values equal `target`.
struct RleStats {
  uint32_t target = 0;
  uint32_t max = 0;
  size_t equal = 0;
};

// `count` values of `bit_width` bits (0..32) in the RLE / bit-packed hybrid encoding, without a
// length prefix. Returns the bytes consumed.
size_t decode_rle_hybrid(const uint8_t* p, size_t n, int bit_width, size_t count, uint32_t* out,
                         RleStats* stats = nullptr);
size_t decode_rle_hybrid(const uint8_t* p, size_t n, int bit_width, size_t count, uint16_t* out,
                         RleStats* stats = nullptr);

// DELTA_BINARY_PACKED: exactly `count` values (the header must declare that many); returns the
// bytes consumed.
size_t decode_delta_binary(const uint8_t* p, size_t n, size_t count, int64_t* out);

// Byte arrays as views into `p` (or into `storage` for DELTA_BYTE_ARRAY, whose values are
// rebuilt from prefixes). `count` values.
void decode_plain_byte_arrays(const uint8_t* p, size_t n, size_t count,
                              std::vector<std::string_view>& out);
void decode_delta_length_byte_arrays(const uint8_t* p, size_t n, size_t count,
                                     std::vector<std::string_view>& out);
void decode_delta_byte_arrays(const uint8_t* p, size_t n, size_t count, std::string& storage,
                              std::vector<std::string_view>& out);

}  // namespace saelab::parquet
