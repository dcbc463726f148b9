// Block decompression for Parquet pages and Arrow IPC buffers: Snappy, gzip/zlib, Zstandard,
// Brotli and raw LZ4. The expected output size is declared by the file; it is checked against the
// largest ratio the codec can reach (so a lying header cannot ask for a huge allocation) and
// against what the codec actually produces.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace saelab {

enum class Codec { kNone, kSnappy, kGzip, kZstd, kBrotli, kLz4Raw, kLz4Frame };

const char* codec_name(Codec c);

// Decompresses `src` into `out` (resized to exactly `expected` bytes). On any failure throws
// saelab::Error "<where>: <codec> data ...".
void decompress(Codec c, const uint8_t* src, size_t n, size_t expected, std::vector<uint8_t>& out,
                const std::string& where);

// The largest output `n` compressed bytes can declare: beyond it the header is lying.
size_t max_decompressed_size(Codec c, size_t n);

}  // namespace saelab
