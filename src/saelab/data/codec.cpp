// Block decompression (codec.h) over the Debian codec libraries.
#include "saelab/data/codec.h"

// CMake sets SAELAB_HAVE_<CODEC> to say which codec libraries it links; a build without it (the
// fuzz build) uses each codec whose header is installed.
#ifndef SAELAB_HAVE_ZSTD
#define SAELAB_HAVE_ZSTD __has_include(<zstd.h>)
#endif
#ifndef SAELAB_HAVE_ZLIB
#define SAELAB_HAVE_ZLIB __has_include(<zlib.h>)
#endif
#ifndef SAELAB_HAVE_BROTLI
#define SAELAB_HAVE_BROTLI __has_include(<brotli/decode.h>)
#endif
#ifndef SAELAB_HAVE_LZ4
#define SAELAB_HAVE_LZ4 __has_include(<lz4frame.h>)
#endif

#include <algorithm>
#if SAELAB_HAVE_BROTLI
#include <brotli/decode.h>
#endif
#if SAELAB_HAVE_LZ4
#include <lz4.h>
#include <lz4frame.h>
#endif
#if SAELAB_HAVE_ZLIB
#include <zlib.h>
#endif
#if SAELAB_HAVE_ZSTD
#include <zstd.h>
#endif

#include "saelab/core/error.h"
#include "saelab/data/snappy_decode.h"

namespace saelab {

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::kNone:
      return "uncompressed";
    case Codec::kSnappy:
      return "Snappy";
    case Codec::kGzip:
      return "gzip";
    case Codec::kZstd:
      return "Zstandard";
    case Codec::kBrotli:
      return "Brotli";
    case Codec::kLz4Raw:
      return "LZ4";
    case Codec::kLz4Frame:
      return "LZ4 frame";
  }
  return "?";
}

size_t max_decompressed_size(Codec c, size_t n) {
  // Per-codec expansion limits: a Snappy copy tag of 3 bytes yields at most 64 bytes, deflate at
  // most 1032:1, an LZ4 sequence 255:1. Zstandard (without a content size) and Brotli can encode
  // long runs in a few bytes; they are decoded as streams instead, so a lying size costs nothing.
  constexpr size_t kAbsolute = size_t(1) << 31;
  size_t r;
  switch (c) {
    case Codec::kNone:
      return n;
    case Codec::kSnappy:
      r = 24;
      break;
    case Codec::kGzip:
      r = 1040;
      break;
    case Codec::kLz4Raw:
    case Codec::kLz4Frame:
      r = 256;
      break;
    default:
      return kAbsolute;  // Zstandard and Brotli: decoded as streams, memory follows real output
  }
  const size_t cap = n > kAbsolute / r ? kAbsolute : n * r + 4096;
  return cap < kAbsolute ? cap : kAbsolute;
}

void decompress(Codec c, const uint8_t* src, size_t n, size_t expected, std::vector<uint8_t>& out,
                const std::string& where) {
  const char* name = codec_name(c);
  if (expected > max_decompressed_size(c, n))
    fail(
        "{}: declares {} bytes after {} decompression of {} bytes, more than the codec can produce",
        where, expected, name, n);
  auto short_output = [&](size_t got) {
    if (got != expected)
      fail("{}: {} data decompressed to {} bytes, the header declares {}", where, name, got,
           expected);
  };
  switch (c) {
    case Codec::kNone:
      short_output(n);
      out.resize(expected);
      if (n) std::copy(src, src + n, out.data());
      return;
    case Codec::kSnappy: {
      size_t len = 0;
      if (!snappy_declared_length(src, n, len)) fail("{}: corrupt Snappy data", where);
      short_output(len);
      if (!snappy_decode(src, n, out)) fail("{}: corrupt Snappy data", where);
      return;
    }
    case Codec::kGzip: {
#if SAELAB_HAVE_ZLIB
      // windowBits 15 + 32: gzip or zlib headers, detected; concatenated gzip members are read on.
      out.resize(expected);
      z_stream z{};
      if (inflateInit2(&z, 15 + 32) != Z_OK) fail("{}: zlib initialisation failed", where);
      z.next_in = const_cast<Bytef*>(src);
      z.avail_in = uInt(n);
      z.next_out = out.data();
      z.avail_out = uInt(expected);
      int rc = Z_OK;
      while (true) {
        rc = inflate(&z, Z_FINISH);
        if (rc == Z_STREAM_END && z.avail_in > 0 && z.avail_out > 0) {
          inflateReset(&z);
          continue;
        }
        break;
      }
      const size_t got = expected - z.avail_out;
      inflateEnd(&z);
      if (rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && got == expected && z.avail_in == 0))
        fail("{}: corrupt gzip data ({})", where, z.msg ? z.msg : "truncated or invalid");
      short_output(got);
      return;
    }
#else
      fail("{}: {} data, but this saelab was built without zlib (run scripts/setup.sh and rebuild)",
           where, name);
    }
#endif
    case Codec::kZstd: {
#if SAELAB_HAVE_ZSTD
      const unsigned long long fcs = ZSTD_getFrameContentSize(src, n);
      if (fcs == ZSTD_CONTENTSIZE_ERROR)
        fail("{}: corrupt Zstandard data (bad frame header)", where);
      if (fcs != ZSTD_CONTENTSIZE_UNKNOWN) {
        short_output(size_t(fcs));
        out.resize(expected);
        const size_t got = ZSTD_decompress(out.data(), expected, src, n);
        if (ZSTD_isError(got))
          fail("{}: corrupt Zstandard data ({})", where, ZSTD_getErrorName(got));
        short_output(got);
        return;
      }
      // No size in the frame: decode as a stream so memory follows the real output.
      out.clear();
      ZSTD_DStream* z = ZSTD_createDStream();
      ZSTD_inBuffer in{src, n, 0};
      size_t rc = 1;
      while (in.pos < in.size || rc != 0) {
        const size_t have = out.size();
        if (have >= expected && rc != 0) {
          out.resize(have + 1);  // room to detect output beyond the declared size
        } else {
          out.resize(std::min(expected, std::max<size_t>(have * 2, 1 << 16)));
        }
        ZSTD_outBuffer o{out.data(), out.size(), have};
        rc = ZSTD_decompressStream(z, &o, &in);
        out.resize(o.pos);
        if (ZSTD_isError(rc) || o.pos > expected || (o.pos == have && in.pos == in.size)) break;
      }
      ZSTD_freeDStream(z);
      if (ZSTD_isError(rc)) fail("{}: corrupt Zstandard data ({})", where, ZSTD_getErrorName(rc));
      short_output(out.size());
      return;
#else
      fail(
          "{}: {} data, but this saelab was built without libzstd (run scripts/setup.sh and "
          "rebuild)",
          where, name);
#endif
    }
    case Codec::kBrotli: {
#if SAELAB_HAVE_BROTLI
      // Brotli declares no size: decode as a stream so memory follows the real output.
      out.clear();
      BrotliDecoderState* b = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
      if (!b) fail("{}: Brotli initialisation failed", where);
      size_t avail_in = n;
      const uint8_t* next_in = src;
      BrotliDecoderResult r = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
      while (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT && out.size() <= expected) {
        const size_t have = out.size();
        out.resize(have >= expected ? have + 1
                                    : std::min(expected, std::max<size_t>(have * 2, 1 << 16)));
        size_t avail_out = out.size() - have;
        uint8_t* next_out = out.data() + have;
        r = BrotliDecoderDecompressStream(b, &avail_in, &next_in, &avail_out, &next_out, nullptr);
        out.resize(out.size() - avail_out);
      }
      BrotliDecoderDestroyInstance(b);
      if (r != BROTLI_DECODER_RESULT_SUCCESS && out.size() <= expected)
        fail("{}: corrupt or truncated Brotli data", where);
      short_output(out.size());
      return;
#else
      fail(
          "{}: {} data, but this saelab was built without libbrotli (run scripts/setup.sh and "
          "rebuild)",
          where, name);
#endif
    }
    case Codec::kLz4Raw: {
#if SAELAB_HAVE_LZ4
      if (n > size_t(INT32_MAX) || expected > size_t(INT32_MAX))
        fail("{}: an LZ4 block over 2 GiB", where);
      out.resize(expected);
      const int got =
          LZ4_decompress_safe(reinterpret_cast<const char*>(src),
                              reinterpret_cast<char*>(out.data()), int(n), int(expected));
      if (got < 0) fail("{}: corrupt LZ4 data", where);
      short_output(size_t(got));
      return;
    }
#else
      fail(
          "{}: {} data, but this saelab was built without liblz4 (run scripts/setup.sh and "
          "rebuild)",
          where, name);
    }
#endif
    case Codec::kLz4Frame: {
#if SAELAB_HAVE_LZ4
      out.resize(expected);
      LZ4F_dctx* ctx = nullptr;
      if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION)))
        fail("{}: LZ4 initialisation failed", where);
      size_t in_pos = 0, out_pos = 0, rc = 1;
      while (rc != 0 && in_pos < n) {
        size_t in_n = n - in_pos, out_n = expected - out_pos;
        rc = LZ4F_decompress(ctx, out.data() + out_pos, &out_n, src + in_pos, &in_n, nullptr);
        if (LZ4F_isError(rc)) break;
        in_pos += in_n;
        out_pos += out_n;
        if (in_n == 0 && out_n == 0) break;
      }
      LZ4F_freeDecompressionContext(ctx);
      if (LZ4F_isError(rc)) fail("{}: corrupt LZ4 frame data ({})", where, LZ4F_getErrorName(rc));
      short_output(out_pos);
      return;
    }
#else
      fail(
          "{}: {} data, but this saelab was built without liblz4 (run scripts/setup.sh and "
          "rebuild)",
          where, name);
    }
#endif
  }
}

}  // namespace saelab
