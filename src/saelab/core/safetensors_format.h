// The safetensors header format, parsed and validated without torch (fuzzed by fuzz/).
// Layout: u64 LE header length N; N bytes of JSON {name: {dtype, shape, data_offsets},
// "__metadata__"}; then the data buffer, offsets relative to its start, tensors contiguous, no
// gaps, no overlaps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace saelab {

enum class StDtype {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
  F8_E4M3,
  F8_E5M2
};

const char* st_dtype_name(StDtype d);
size_t st_dtype_size(StDtype d);
bool parse_st_dtype(std::string_view name, StDtype* out);

struct TensorEntry {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data buffer
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length
};

// Validates a whole file held in memory (or mapped). `what` names the file in error messages.
// Throws saelab::Error on: file shorter than 8 bytes, header length > 100 MB or beyond the file,
// invalid JSON, unknown dtype, bad shape, size != numel * itemsize, out-of-range, overlapping or
// gapped offsets, trailing bytes.
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

}  // namespace saelab
