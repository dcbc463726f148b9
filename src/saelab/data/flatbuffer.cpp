// Bounds-checked FlatBuffers tables (flatbuffer.h).
#include "saelab/data/flatbuffer.h"

namespace saelab::fb {

namespace {
uint32_t u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
}  // namespace

Table Table::root(const uint8_t* buf, size_t size) {
  if (size < 8) throw FlatBufferError("metadata shorter than a FlatBuffer");
  return Table(buf, size, u32(buf));
}

Table::Table(const uint8_t* buf, size_t size, size_t pos) : buf_(buf), size_(size), pos_(pos) {
  check(pos, 4);
  int32_t soff;
  std::memcpy(&soff, buf + pos, 4);
  const int64_t vt = int64_t(pos) - soff;
  if (vt < 0 || uint64_t(vt) > size) throw FlatBufferError("a vtable outside the metadata");
  vt_ = size_t(vt);
  check(vt_, 4);
  uint16_t len, tlen;
  std::memcpy(&len, buf + vt_, 2);
  std::memcpy(&tlen, buf + vt_ + 2, 2);
  if (len < 4 || len % 2) throw FlatBufferError("a malformed vtable");
  check(vt_, len);
  check(pos, tlen);
  vt_len_ = len;
}

size_t Table::field_pos(int field) const {
  const size_t e = 4 + 2 * size_t(field);
  if (!buf_ || e + 2 > vt_len_) return 0;
  uint16_t off;
  std::memcpy(&off, buf_ + vt_ + e, 2);
  return off ? pos_ + off : 0;
}

size_t Table::deref(size_t pos) const {
  check(pos, 4);
  const uint64_t target = uint64_t(pos) + u32(buf_ + pos);
  if (target >= size_) throw FlatBufferError("an offset outside the metadata");
  return size_t(target);
}

Table Table::table(int field) const {
  const size_t p = field_pos(field);
  if (!p) return Table();
  return Table(buf_, size_, deref(p));
}

std::string Table::string(int field) const {
  const size_t p = field_pos(field);
  if (!p) return "";
  const size_t s = deref(p);
  check(s, 4);
  const uint32_t n = u32(buf_ + s);
  check(s + 4, n);
  return std::string(reinterpret_cast<const char*>(buf_ + s + 4), n);
}

size_t Table::vector(int field, size_t& first, size_t elem_size) const {
  const size_t p = field_pos(field);
  first = 0;
  if (!p) return 0;
  const size_t v = deref(p);
  check(v, 4);
  const uint32_t n = u32(buf_ + v);
  if (elem_size && n > (size_ - v - 4) / elem_size)
    throw FlatBufferError("a vector longer than the metadata");
  first = v + 4;
  return n;
}

Table Table::vector_table(size_t first, size_t i) const {
  return Table(buf_, size_, deref(first + 4 * i));
}

}  // namespace saelab::fb
