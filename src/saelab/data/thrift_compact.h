// A bounds-checked reader for the Thrift compact protocol, the encoding of Parquet's file footer
// and page headers. It reads field headers and scalar values and skips anything it does not need;
// every length is checked against the bytes left, and nesting is limited, so a corrupt footer is
// an error (ThriftError, turned into a one-line saelab::Error by the caller) and never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace saelab {

struct ThriftError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ThriftReader {
 public:
  // Compact-protocol type codes.
  enum Type : uint8_t {
    kStop = 0,
    kTrue = 1,
    kFalse = 2,
    kByte = 3,
    kI16 = 4,
    kI32 = 5,
    kI64 = 6,
    kDouble = 7,
    kBinary = 8,
    kList = 9,
    kSet = 10,
    kMap = 11,
    kStruct = 12
  };

  ThriftReader(const uint8_t* data, size_t size) : p_(data), begin_(data), end_(data + size) {}

  // A struct is read as: begin_struct(); while (next_field(id, type)) { ... read or skip ... }
  // end_struct() is implied by next_field returning false (the STOP byte).
  void begin_struct();
  bool next_field(int16_t& id, uint8_t& type);

  int64_t read_int();  // i8 / i16 / i32 / i64 (zigzag varint; a byte for kByte)
  int32_t read_i32(uint8_t type);
  bool read_bool(uint8_t type) const { return type == kTrue; }
  std::string read_string(size_t max_len = 1u << 20);
  // A list header: element count (checked against the bytes left) and element type.
  size_t read_list_header(uint8_t& elem_type);
  void skip(uint8_t type, int depth = 0);

  size_t consumed() const { return size_t(p_ - begin_); }

 private:
  uint64_t varint();
  uint8_t byte();
  void need(size_t n) const {
    if (size_t(end_ - p_) < n) throw ThriftError("truncated Thrift data");
  }

  const uint8_t* p_;
  const uint8_t* begin_;
  const uint8_t* end_;
  // Field-id deltas are relative to the previous field of the same struct.
  int16_t last_id_[64] = {};
  int depth_ = -1;
};

}  // namespace saelab
