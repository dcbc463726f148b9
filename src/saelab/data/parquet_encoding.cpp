// Parquet value and level encodings (parquet_encoding.h).
#include "saelab/data/parquet_encoding.h"

#include <cstring>
#include <utility>

namespace saelab::parquet {

namespace {

uint64_t read_varint(const uint8_t*& p, const uint8_t* end) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (p >= end) throw DecodeError("truncated varint");
    const uint8_t b = *p++;
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw DecodeError("a varint longer than 10 bytes");
}

int64_t zigzag(uint64_t z) { return int64_t((z >> 1) ^ (~(z & 1) + 1)); }

// 8 values of W bits from W bytes, least significant bit first; W is a constant so the
// compiler turns this into a few shifts and masks.
template <int W, typename T>
void unpack8(const uint8_t* p, T* out) {
  uint8_t buf[W + 9] = {};  // the group's W bytes, zero-padded so every 8-byte load stays inside
  std::memcpy(buf, p, W);
  constexpr uint64_t mask = W == 64 ? ~uint64_t(0) : (uint64_t(1) << W) - 1;
  for (int i = 0; i < 8; ++i) {
    const int bit = i * W, byte = bit >> 3, shift = bit & 7;
    uint64_t v;
    std::memcpy(&v, buf + byte, 8);
    v >>= shift;
    if (W + shift > 64) v |= uint64_t(buf[byte + 8]) << (64 - shift);
    out[i] = T(v & mask);
  }
}

template <typename T, int... Ws>
void unpack_groups(int w, const uint8_t* p, size_t groups, T* out,
                   std::integer_sequence<int, Ws...>) {
  using Fn = void (*)(const uint8_t*, T*);
  static constexpr Fn table[] = {&unpack8<Ws + 1, T>...};
  const Fn f = table[w - 1];
  for (size_t g = 0; g < groups; ++g) f(p + g * size_t(w), out + 8 * g);
}

// `count` values of `w` bits (0..64), least significant bit first, from p (which holds at least
// ceil(count * w / 8) bytes, checked by the caller).
template <typename T>
void unpack(const uint8_t* p, size_t avail, int w, size_t count, T* out) {
  if (w == 0) {
    for (size_t i = 0; i < count; ++i) out[i] = 0;
    return;
  }
  // Byte-aligned widths (dictionary indices of 8, 16 or 32 bits) are plain little-endian loads.
  if ((w == 8 || w == 16 || w == 32) && count * size_t(w / 8) <= avail) {
    if (w == 8) {
      for (size_t i = 0; i < count; ++i) out[i] = T(p[i]);
    } else if (w == 16) {
      for (size_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = T(v);
      }
    } else {
      for (size_t i = 0; i < count; ++i) {
        uint32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = T(v);
      }
    }
    return;
  }
  // Whole groups of 8 values in unrolled code, the rest (a cut last group) bit by bit.
  size_t groups = count / 8;
  if (groups > avail / size_t(w)) groups = avail / size_t(w);
  unpack_groups<T>(w, p, groups, out, std::make_integer_sequence<int, 64>{});
  for (size_t i = groups * 8; i < count; ++i) {
    const size_t bit = i * size_t(w);
    uint64_t v = 0;
    for (int k = 0; k < w; ++k) {
      const size_t b = bit + size_t(k);
      v |= uint64_t((p[b >> 3] >> (b & 7)) & 1) << k;
    }
    out[i] = T(v);
  }
}

template <typename T>
size_t rle_hybrid(const uint8_t* p, size_t n, int w, size_t count, T* out, RleStats* st) {
  if (w < 0 || w > 32) throw DecodeError("a bit width of " + std::to_string(w));
  if (sizeof(T) < 4 && w > int(8 * sizeof(T)))
    throw DecodeError("a level bit width of " + std::to_string(w));
  const uint8_t* q = p;
  const uint8_t* end = p + n;
  size_t done = 0;
  const size_t vbytes = size_t((w + 7) / 8);
  while (done < count) {
    if (q >= end)
      throw DecodeError("RLE data ends after " + std::to_string(done) + " of " +
                        std::to_string(count) + " values");
    const uint64_t h = read_varint(q, end);
    if (h & 1) {
      const uint64_t groups = h >> 1;
      if (groups > (uint64_t(1) << 40)) throw DecodeError("a bit-packed run too long");
      const size_t run = size_t(groups) * 8;
      const size_t take = run < count - done ? run : count - done;
      const size_t need = (take * size_t(w) + 7) / 8;
      const size_t have = size_t(end - q);
      if (need > have) throw DecodeError("a bit-packed run longer than its data");
      unpack(q, have, w, take, out + done);
      if (st) {
        uint32_t mx = st->max;
        size_t eq = 0;
        for (size_t k = 0; k < take; ++k) {
          const uint32_t v = out[done + k];
          mx = v > mx ? v : mx;
          eq += v == st->target;
        }
        st->max = mx;
        st->equal += eq;
      }
      done += take;
      const size_t full = size_t(groups) * size_t(w);  // bytes of the whole run
      q += full < have ? full : have;
    } else {
      const uint64_t run = h >> 1;
      if (vbytes > size_t(end - q)) throw DecodeError("an RLE run without its value");
      uint32_t v = 0;
      for (size_t k = 0; k < vbytes; ++k) v |= uint32_t(q[k]) << (8 * k);
      q += vbytes;
      if (w < 32 && (v >> w)) throw DecodeError("an RLE value wider than its bit width");
      const size_t take = run < count - done ? size_t(run) : count - done;
      for (size_t k = 0; k < take; ++k) out[done + k] = T(v);
      if (st) {
        st->max = v > st->max ? v : st->max;
        st->equal += v == st->target ? take : 0;
      }
      done += take;
    }
  }
  return size_t(q - p);
}

}  // namespace

int bit_width_of(uint32_t v) {
  int w = 0;
  while (v) {
    ++w;
    v >>= 1;
  }
  return w;
}

size_t decode_rle_hybrid(const uint8_t* p, size_t n, int w, size_t count, uint32_t* out,
                         RleStats* stats) {
  return rle_hybrid(p, n, w, count, out, stats);
}
size_t decode_rle_hybrid(const uint8_t* p, size_t n, int w, size_t count, uint16_t* out,
                         RleStats* stats) {
  return rle_hybrid(p, n, w, count, out, stats);
}

size_t decode_delta_binary(const uint8_t* p, size_t n, size_t count, int64_t* out) {
  const uint8_t* q = p;
  const uint8_t* end = p + n;
  const uint64_t block = read_varint(q, end);
  const uint64_t minis = read_varint(q, end);
  const uint64_t total = read_varint(q, end);
  uint64_t last = uint64_t(zigzag(read_varint(q, end)));
  if (block == 0 || block % 128 != 0 || block > (1u << 20) || minis == 0 || block % minis != 0 ||
      (block / minis) % 32 != 0)
    throw DecodeError("a DELTA_BINARY_PACKED header with block size " + std::to_string(block) +
                      " and " + std::to_string(minis) + " miniblocks");
  if (total != count)
    throw DecodeError("DELTA_BINARY_PACKED declares " + std::to_string(total) + " values, " +
                      std::to_string(count) + " expected");
  if (count == 0) return size_t(q - p);
  const size_t per_mini = size_t(block / minis);
  out[0] = int64_t(last);
  size_t done = 1;
  std::vector<int64_t> buf(per_mini);
  while (done < count) {
    const uint64_t min_delta = uint64_t(zigzag(read_varint(q, end)));
    if (size_t(end - q) < minis) throw DecodeError("DELTA_BINARY_PACKED bit widths truncated");
    const uint8_t* widths = q;
    q += minis;
    for (size_t m = 0; m < minis && done < count; ++m) {
      const int w = widths[m];
      if (w > 64) throw DecodeError("a DELTA_BINARY_PACKED bit width of " + std::to_string(w));
      const size_t bytes = per_mini * size_t(w) / 8;
      const size_t take = per_mini < count - done ? per_mini : count - done;
      const size_t have = size_t(end - q);
      // The last miniblock may be cut short after its last value by some writers.
      const size_t need = (take * size_t(w) + 7) / 8;
      if (need > have) throw DecodeError("DELTA_BINARY_PACKED data truncated");
      unpack(q, have, w, take, buf.data());
      for (size_t k = 0; k < take; ++k) {
        last += min_delta + uint64_t(buf[k]);  // wraps as the format specifies
        out[done + k] = int64_t(last);
      }
      done += take;
      q += bytes < have ? bytes : have;
    }
  }
  return size_t(q - p);
}

void decode_plain_byte_arrays(const uint8_t* p, size_t n, size_t count,
                              std::vector<std::string_view>& out) {
  out.clear();
  if (count > n / 4) throw DecodeError("more byte arrays declared than the data holds");
  out.reserve(count);
  size_t pos = 0;
  for (size_t i = 0; i < count; ++i) {
    if (n - pos < 4) throw DecodeError("PLAIN byte array data truncated");
    uint32_t len;
    std::memcpy(&len, p + pos, 4);
    pos += 4;
    if (len > n - pos) throw DecodeError("a PLAIN byte array longer than its page");
    out.emplace_back(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
  }
}

void decode_delta_length_byte_arrays(const uint8_t* p, size_t n, size_t count,
                                     std::vector<std::string_view>& out) {
  std::vector<int64_t> lens(count);
  size_t pos = decode_delta_binary(p, n, count, lens.data());
  out.clear();
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (lens[i] < 0 || uint64_t(lens[i]) > n - pos)
      throw DecodeError("a DELTA_LENGTH_BYTE_ARRAY length of " + std::to_string(lens[i]));
    out.emplace_back(reinterpret_cast<const char*>(p + pos), size_t(lens[i]));
    pos += size_t(lens[i]);
  }
}

void decode_delta_byte_arrays(const uint8_t* p, size_t n, size_t count, std::string& storage,
                              std::vector<std::string_view>& out) {
  std::vector<int64_t> prefix(count);
  const size_t used = decode_delta_binary(p, n, count, prefix.data());
  std::vector<std::string_view> suffix;
  decode_delta_length_byte_arrays(p + used, n - used, count, suffix);
  // Each value is a prefix of the previous one plus its suffix: size the storage first, bounded
  // so that a lying file cannot make it grow quadratically.
  size_t total = 0, prev = 0;
  for (size_t i = 0; i < count; ++i) {
    if (prefix[i] < 0 || size_t(prefix[i]) > prev)
      throw DecodeError("a DELTA_BYTE_ARRAY prefix longer than the previous value");
    prev = size_t(prefix[i]) + suffix[i].size();
    total += prev;
    if (total > (size_t(1) << 30)) throw DecodeError("DELTA_BYTE_ARRAY values over 1 GiB");
  }
  storage.resize(total);
  out.clear();
  out.reserve(count);
  size_t pos = 0;
  const char* prev_p = storage.data();
  for (size_t i = 0; i < count; ++i) {
    char* dst = storage.data() + pos;
    std::memmove(dst, prev_p, size_t(prefix[i]));
    std::memcpy(dst + prefix[i], suffix[i].data(), suffix[i].size());
    const size_t len = size_t(prefix[i]) + suffix[i].size();
    out.emplace_back(dst, len);
    prev_p = dst;
    pos += len;
  }
}

}  // namespace saelab::parquet
