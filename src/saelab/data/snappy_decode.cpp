// Snappy block decoding (snappy_decode.h), after the format description in google/snappy's
// format_description.txt: a varint length, then literal and copy elements, each led by a tag byte.
#include "saelab/data/snappy_decode.h"

#include <cstring>

namespace saelab {

namespace {

// Bytes past the end of the output that fixed-size copies may write before the final resize.
constexpr size_t kSlack = 16;

bool read_varint32(const uint8_t*& p, const uint8_t* end, uint32_t& v) {
  v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (p >= end) return false;
    const uint8_t b = *p++;
    v |= uint32_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

}  // namespace

bool snappy_declared_length(const uint8_t* src, size_t n, size_t& len) {
  uint32_t v;
  const uint8_t* p = src;
  if (!read_varint32(p, src + n, v)) return false;
  len = v;
  return true;
}

bool snappy_decode(const uint8_t* src, size_t n, std::vector<uint8_t>& out) {
  const uint8_t* ip = src;
  const uint8_t* const iend = src + n;
  uint32_t total;
  if (!read_varint32(ip, iend, total)) return false;
  out.resize(size_t(total) + kSlack);
  uint8_t* const base = out.data();
  uint8_t* op = base;
  uint8_t* const oend = base + total;
  while (ip < iend) {
    const uint8_t tag = *ip++;
    const int type = tag & 3;
    if (tag == 0) {  // a one-byte literal, the commonest element of pretokenized int64 pages
      if (ip >= iend || op >= oend) return false;
      *op++ = *ip++;
      continue;
    }
    if (type == 0) {  // literal
      size_t len = tag >> 2;
      if (len >= 60) {
        const size_t bytes = len - 59;
        if (size_t(iend - ip) < bytes) return false;
        len = 0;
        for (size_t k = 0; k < bytes; ++k) len |= size_t(ip[k]) << (8 * k);
        ip += bytes;
      }
      ++len;
      if (size_t(iend - ip) < len || size_t(oend - op) < len) return false;
      if (len <= 16 && size_t(iend - ip) >= 16) {
        std::memcpy(op, ip, 16);  // within the output's slack
      } else {
        std::memcpy(op, ip, len);
      }
      op += len;
      ip += len;
      continue;
    }
    size_t len, offset;
    if (type == 1) {
      if (ip >= iend) return false;
      len = 4 + ((tag >> 2) & 7);
      offset = (size_t(tag >> 5) << 8) | *ip++;
    } else if (type == 2) {
      if (iend - ip < 2) return false;
      len = 1 + (tag >> 2);
      offset = size_t(ip[0]) | size_t(ip[1]) << 8;
      ip += 2;
    } else {
      if (iend - ip < 4) return false;
      len = 1 + (tag >> 2);
      offset = size_t(ip[0]) | size_t(ip[1]) << 8 | size_t(ip[2]) << 16 | size_t(ip[3]) << 24;
      ip += 4;
    }
    if (offset == 0 || offset > size_t(op - base) || size_t(oend - op) < len) return false;
    const uint8_t* from = op - offset;
    if (offset >= 16) {
      // Eight bytes at a time: each chunk reads only bytes already written. Up to 7 bytes past
      // the copy land in the slack and are overwritten by what follows.
      for (size_t k = 0; k < len; k += 8) std::memcpy(op + k, from + k, 8);
    } else {
      // A short repeating pattern, or a source written a few bytes ago: byte by byte.
      for (size_t k = 0; k < len; ++k) op[k] = from[k];
    }
    op += len;
  }
  if (op != oend) return false;
  out.resize(total);
  return true;
}

}  // namespace saelab
