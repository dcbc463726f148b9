// Streaming line reader over plain, gzip and Zstandard files (compressed_lines.h).
#include "saelab/data/compressed_lines.h"

// CMake sets SAELAB_HAVE_<CODEC> to say which codec libraries it links; a build without it (the
// fuzz build) uses each codec whose header is installed.
#ifndef SAELAB_HAVE_ZSTD
#define SAELAB_HAVE_ZSTD __has_include(<zstd.h>)
#endif
#ifndef SAELAB_HAVE_ZLIB
#define SAELAB_HAVE_ZLIB __has_include(<zlib.h>)
#endif

#if SAELAB_HAVE_ZLIB
#include <zlib.h>
#endif
#if SAELAB_HAVE_ZSTD
#include <zstd.h>
#endif

#include <cerrno>
#include <cstring>

#include "saelab/core/error.h"

namespace saelab {

namespace {
constexpr size_t kChunk = 1 << 16;

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  for (size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - n + i])) != suffix[i]) return false;
  return true;
}
}  // namespace

bool is_compressed_name(const std::string& p) {
  return ends_with(p, ".gz") || ends_with(p, ".zst");
}

struct LineReader::Stream {
  enum Kind { kPlain, kGzip, kZstd } kind = kPlain;
#if SAELAB_HAVE_ZLIB
  z_stream z{};
  bool z_init = false;
  bool gz_member_done = false;
#endif
#if SAELAB_HAVE_ZSTD
  ZSTD_DStream* zs = nullptr;
  ZSTD_inBuffer zin{nullptr, 0, 0};
  size_t zstd_last = 0;  // the last ZSTD_decompressStream hint: 0 after a complete frame
#endif
  ~Stream() {
#if SAELAB_HAVE_ZLIB
    if (z_init) inflateEnd(&z);
#endif
#if SAELAB_HAVE_ZSTD
    if (zs) ZSTD_freeDStream(zs);
#endif
  }
};

LineReader::LineReader(std::string path) : path_(std::move(path)), z_(new Stream) {
  f_ = std::fopen(path_.c_str(), "rb");
  if (!f_) fail("{}: cannot open ({})", path_, std::strerror(errno));
  in_.resize(kChunk);
  if (ends_with(path_, ".gz")) {
    z_->kind = Stream::kGzip;
#if SAELAB_HAVE_ZLIB
    if (inflateInit2(&z_->z, 15 + 32) != Z_OK) fail("{}: zlib initialisation failed", path_);
    z_->z_init = true;
#else
    fail("{}: gzip data, but this saelab was built without zlib", path_);
#endif
  } else if (ends_with(path_, ".zst")) {
    z_->kind = Stream::kZstd;
#if SAELAB_HAVE_ZSTD
    z_->zs = ZSTD_createDStream();
    if (!z_->zs) fail("{}: Zstandard initialisation failed", path_);
    // Window sizes beyond 128 MiB (zstd --long) are refused rather than allocated.
    ZSTD_DCtx_setParameter(z_->zs, ZSTD_d_windowLogMax, 27);
#else
    fail("{}: Zstandard data, but this saelab was built without libzstd", path_);
#endif
  }
}

LineReader::~LineReader() {
  if (f_) std::fclose(f_);
}

bool LineReader::fill() {
  if (eof_) return false;
  Stream& s = *z_;
  if (s.kind == Stream::kPlain) {
    const size_t n = std::fread(in_.data(), 1, in_.size(), f_);
    if (n == 0) {
      eof_ = true;
      return false;
    }
    buf_.append(in_.data(), n);
    return true;
  }
  std::vector<char> out(kChunk);
#if SAELAB_HAVE_ZLIB
  if (s.kind == Stream::kGzip) {
    while (true) {
      if (s.z.avail_in == 0) {
        const size_t n = std::fread(in_.data(), 1, in_.size(), f_);
        if (n == 0) {
          eof_ = true;
          // A stream that stops inside a member is truncated.
          if (!s.gz_member_done) fail("{}: truncated gzip data", path_);
          return false;
        }
        s.z.next_in = reinterpret_cast<Bytef*>(in_.data());
        s.z.avail_in = uInt(n);
      }
      if (s.gz_member_done) {  // another member follows: start it afresh
        inflateReset(&s.z);
        s.gz_member_done = false;
      }
      s.z.next_out = reinterpret_cast<Bytef*>(out.data());
      s.z.avail_out = uInt(out.size());
      const int rc = inflate(&s.z, Z_NO_FLUSH);
      if (rc == Z_STREAM_END)
        s.gz_member_done = true;
      else if (rc != Z_OK && rc != Z_BUF_ERROR)
        fail("{}: corrupt gzip data ({})", path_, s.z.msg ? s.z.msg : "invalid");
      const size_t got = out.size() - s.z.avail_out;
      if (got) {
        buf_.append(out.data(), got);
        return true;
      }
    }
  }
#endif
#if SAELAB_HAVE_ZSTD
  while (true) {
    if (s.zin.pos == s.zin.size) {
      const size_t n = std::fread(in_.data(), 1, in_.size(), f_);
      if (n == 0) {
        eof_ = true;
        if (s.zstd_last != 0) fail("{}: truncated Zstandard data", path_);
        return false;
      }
      s.zin = {in_.data(), n, 0};
    }
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    const size_t rc = ZSTD_decompressStream(s.zs, &o, &s.zin);
    if (ZSTD_isError(rc)) fail("{}: corrupt Zstandard data ({})", path_, ZSTD_getErrorName(rc));
    s.zstd_last = rc;
    if (o.pos) {
      buf_.append(out.data(), o.pos);
      return true;
    }
  }
#endif
  return false;
}

bool LineReader::getline(std::string& line) {
  while (true) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      line.assign(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
    // Keep only the unfinished line before reading on.
    buf_.erase(0, pos_);
    pos_ = 0;
    if (!fill()) {
      if (buf_.empty()) return false;
      line.swap(buf_);
      buf_.clear();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
  }
}

}  // namespace saelab
