// A bounds-checked view of FlatBuffers tables, the encoding of Arrow IPC metadata (schema, record
// batch headers, file footer). Only what Arrow's Schema.fbs / Message.fbs / File.fbs use is read:
// tables, scalars, strings, vectors of tables and of structs, unions. Every offset is checked
// against the buffer, so corrupt metadata is a FlatBufferError, never a read out of bounds.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace saelab::fb {

struct FlatBufferError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Table {
 public:
  Table() = default;
  // The root table of a buffer.
  static Table root(const uint8_t* buf, size_t size);

  bool valid() const { return buf_ != nullptr; }
  bool has(int field) const { return field_pos(field) != 0; }
  template <typename T>
  T scalar(int field, T dflt) const {
    const size_t p = field_pos(field);
    if (!p) return dflt;
    check(p, sizeof(T));
    T v;
    std::memcpy(&v, buf_ + p, sizeof(T));
    return v;
  }
  Table table(int field) const;  // an invalid Table when absent
  std::string string(int field) const;
  // A vector: element count and the position of its first element.
  size_t vector(int field, size_t& first, size_t elem_size) const;
  Table vector_table(size_t first, size_t i) const;  // element i of a vector of tables
  const uint8_t* at(size_t pos, size_t n) const {
    check(pos, n);
    return buf_ + pos;
  }

 private:
  Table(const uint8_t* buf, size_t size, size_t pos);
  size_t field_pos(int field) const;  // 0 when absent
  void check(size_t pos, size_t n) const {
    if (pos > size_ || n > size_ - pos) throw FlatBufferError("offset outside the metadata");
  }
  size_t deref(size_t pos) const;  // follows a uoffset stored at pos

  const uint8_t* buf_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;     // the table
  size_t vt_ = 0;      // its vtable
  size_t vt_len_ = 0;  // vtable size in bytes
};

}  // namespace saelab::fb
