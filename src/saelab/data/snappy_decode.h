// A Snappy block decoder (the raw format Parquet pages use), written for the reader's hot path:
// Debian's libsnappy copies each short literal and match through an out-of-line memmove, which on
// pretokenized int64 pages (two significant bytes in eight) costs more than the rest of the
// decoding together. Every length and offset is checked against the input and output.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace saelab {

// The uncompressed length a Snappy block declares, or false when its header is corrupt.
bool snappy_declared_length(const uint8_t* src, size_t n, size_t& len);

// Decodes the block into `out` (resized to its declared length); false on corrupt data.
bool snappy_decode(const uint8_t* src, size_t n, std::vector<uint8_t>& out);

}  // namespace saelab
