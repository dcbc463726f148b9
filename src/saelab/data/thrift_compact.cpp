// The Thrift compact protocol reader (thrift_compact.h).
#include "saelab/data/thrift_compact.h"

namespace saelab {

namespace {
constexpr int kMaxDepth = 48;  // Parquet's metadata nests a few levels; more is corruption.
}

uint8_t ThriftReader::byte() {
  need(1);
  return *p_++;
}

uint64_t ThriftReader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    const uint8_t b = byte();
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  throw ThriftError("a Thrift varint longer than 10 bytes");
}

void ThriftReader::begin_struct() {
  if (++depth_ >= kMaxDepth) throw ThriftError("Thrift structs nested too deeply");
  last_id_[depth_] = 0;
}

bool ThriftReader::next_field(int16_t& id, uint8_t& type) {
  const uint8_t h = byte();
  type = h & 0x0f;
  if (type == kStop) {
    --depth_;
    return false;
  }
  const int delta = h >> 4;
  if (delta)
    id = int16_t(last_id_[depth_] + delta);
  else {
    const uint64_t z = varint();
    id = int16_t((z >> 1) ^ (~(z & 1) + 1));
  }
  last_id_[depth_] = id;
  if (type > kStruct) throw ThriftError("unknown Thrift field type " + std::to_string(type));
  return true;
}

int64_t ThriftReader::read_int() {
  const uint64_t z = varint();
  return int64_t((z >> 1) ^ (~(z & 1) + 1));
}

int32_t ThriftReader::read_i32(uint8_t type) {
  if (type == kByte) return int8_t(byte());
  if (type != kI16 && type != kI32 && type != kI64)
    throw ThriftError("expected an integer field, got Thrift type " + std::to_string(type));
  const int64_t v = read_int();
  if (v < INT32_MIN || v > INT32_MAX) throw ThriftError("an i32 field out of range");
  return int32_t(v);
}

std::string ThriftReader::read_string(size_t max_len) {
  const uint64_t n = varint();
  if (n > max_len) throw ThriftError("a Thrift string of " + std::to_string(n) + " bytes");
  need(size_t(n));
  std::string s(reinterpret_cast<const char*>(p_), size_t(n));
  p_ += n;
  return s;
}

size_t ThriftReader::read_list_header(uint8_t& elem_type) {
  const uint8_t h = byte();
  elem_type = h & 0x0f;
  uint64_t n = h >> 4;
  if (n == 15) n = varint();
  // Every element takes at least one byte, so a count beyond the bytes left is a lie.
  if (n > uint64_t(end_ - p_)) throw ThriftError("a Thrift list longer than its data");
  return size_t(n);
}

void ThriftReader::skip(uint8_t type, int depth) {
  if (depth > kMaxDepth) throw ThriftError("Thrift values nested too deeply");
  switch (type) {
    case kTrue:
    case kFalse:
      return;  // a struct field's bool lives in its header
    case kByte:
      byte();
      return;
    case kI16:
    case kI32:
    case kI64:
      varint();
      return;
    case kDouble:
      need(8);
      p_ += 8;
      return;
    case kBinary: {
      const uint64_t n = varint();
      if (n > uint64_t(end_ - p_)) throw ThriftError("truncated Thrift data");
      p_ += n;
      return;
    }
    case kList:
    case kSet: {
      uint8_t et;
      const size_t n = read_list_header(et);
      for (size_t i = 0; i < n; ++i) {
        if (et == kTrue || et == kFalse)
          byte();  // inside a collection a bool is a whole byte
        else
          skip(et, depth + 1);
      }
      return;
    }
    case kMap: {
      const uint64_t n = varint();
      if (n == 0) return;
      if (n > uint64_t(end_ - p_)) throw ThriftError("a Thrift map longer than its data");
      const uint8_t kv = byte();
      for (uint64_t i = 0; i < n; ++i) {
        for (uint8_t t : {uint8_t(kv >> 4), uint8_t(kv & 0x0f)}) {
          if (t == kTrue || t == kFalse)
            byte();
          else
            skip(t, depth + 1);
        }
      }
      return;
    }
    case kStruct: {
      begin_struct();
      int16_t id;
      uint8_t t;
      while (next_field(id, t)) skip(t, depth + 1);
      return;
    }
    default:
      throw ThriftError("unknown Thrift type " + std::to_string(type));
  }
}

}  // namespace saelab
