// Parsing and strict validation of the safetensors header, without torch, so the
// fuzzer (fuzz/fuzz_safetensors.cpp) can drive exactly the code that guards every file we open.
#include "saelab/core/safetensors_format.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "saelab/core/error.h"

namespace saelab {
namespace {

constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;  // the reference library's limit
// A valid header nests 3 deep ({name: {shape: [..]}}); anything much deeper is hostile.
constexpr int kMaxDepth = 8;

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::BOOL, "BOOL", 1}, {StDtype::U8, "U8", 1},           {StDtype::I8, "I8", 1},
    {StDtype::I16, "I16", 2},   {StDtype::U16, "U16", 2},         {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2}, {StDtype::I32, "I32", 4},         {StDtype::U32, "U32", 4},
    {StDtype::F32, "F32", 4},   {StDtype::F64, "F64", 8},         {StDtype::I64, "I64", 8},
    {StDtype::U64, "U64", 8},   {StDtype::F8_E4M3, "F8_E4M3", 1}, {StDtype::F8_E5M2, "F8_E5M2", 1},
};

const DtypeInfo& info(StDtype d) {
  for (const auto& i : kDtypes)
    if (i.dtype == d) return i;
  fail("safetensors: invalid dtype enum value {}", static_cast<int>(d));
}

// Reads a non-negative JSON integer; floats, negatives and huge values are rejected.
bool as_u64(const nlohmann::json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

std::string short_dump(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

TensorEntry parse_entry(const std::string& name, const nlohmann::json& j, const std::string& what) {
  if (!j.is_object())
    fail("{}: safetensors header: tensor '{}' must be an object, got {}", what, name,
         short_dump(j));
  TensorEntry e;
  e.name = name;
  for (const auto& [k, v] : j.items()) {
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      fail("{}: safetensors header: tensor '{}' has unknown field '{}'", what, name, k);
  }
  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string())
    fail("{}: safetensors header: tensor '{}' needs a string 'dtype'", what, name);
  if (!parse_st_dtype(dt->get_ref<const std::string&>(), &e.dtype))
    fail("{}: safetensors header: tensor '{}' has unknown dtype '{}'", what, name,
         dt->get_ref<const std::string&>());

  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array())
    fail("{}: safetensors header: tensor '{}' needs an array 'shape'", what, name);
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    uint64_t v;
    if (!as_u64(d, &v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("{}: safetensors header: tensor '{}' shape must hold non-negative integers, got {}",
           what, name, short_dump(*sh));
    e.shape.push_back(static_cast<int64_t>(v));
    if (v != 0 && numel > std::numeric_limits<uint64_t>::max() / v)
      fail("{}: safetensors header: tensor '{}' shape {} overflows", what, name, short_dump(*sh));
    numel *= v;
  }
  size_t item = st_dtype_size(e.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / item)
    fail("{}: safetensors header: tensor '{}' shape {} overflows", what, name, short_dump(*sh));
  uint64_t nbytes = numel * item;

  auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &e.begin) ||
      !as_u64((*off)[1], &e.end))
    fail("{}: safetensors header: tensor '{}' data_offsets must be [begin, end] integers, got {}",
         what, name, off == j.end() ? std::string("nothing") : short_dump(*off));
  if (e.begin > e.end)
    fail("{}: safetensors header: tensor '{}' data_offsets [{}, {}] end before begin", what, name,
         e.begin, e.end);
  if (e.end - e.begin != nbytes)
    fail(
        "{}: safetensors header: tensor '{}' has {} bytes in data_offsets [{}, {}] but dtype {} "
        "x shape {} needs {}",
        what, name, e.end - e.begin, e.begin, e.end, st_dtype_name(e.dtype), short_dump(*sh),
        nbytes);
  return e;
}

}  // namespace

const char* st_dtype_name(StDtype d) { return info(d).name; }
size_t st_dtype_size(StDtype d) { return info(d).size; }

bool parse_st_dtype(std::string_view name, StDtype* out) {
  for (const auto& i : kDtypes) {
    if (name == i.name) {
      *out = i.dtype;
      return true;
    }
  }
  return false;
}

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 8)
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", what, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  // Checked before anything is allocated, so a hostile length cannot exhaust memory.
  if (n > kMaxHeader) fail("{}: safetensors header length {} exceeds the 100 MB limit", what, n);
  if (n > size - 8)
    fail("{}: safetensors header length {} runs beyond the end of the file ({} bytes)", what, n,
         size);
  if (n < 2) fail("{}: safetensors header length {} is too short for a JSON object", what, n);

  const char* begin = reinterpret_cast<const char*>(data + 8);
  const char* end = begin + n;
  std::set<std::string> seen;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (depth > kMaxDepth) fail("{}: safetensors header nests deeper than {}", what, kMaxDepth);
    if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second) fail("{}: safetensors header names '{}' twice", what, k);
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, end, cb, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: safetensors header is not valid JSON ({})", what, e.what());
  }
  if (!j.is_object())
    fail("{}: safetensors header must be a JSON object, got {}", what, j.type_name());

  SafetensorsHeader h;
  h.data_start = 8 + n;
  for (const auto& [k, v] : j.items()) {
    if (k == "__metadata__") {
      if (!v.is_object())
        fail("{}: safetensors __metadata__ must be an object of strings, got {}", what,
             v.type_name());
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          fail("{}: safetensors __metadata__ '{}' must be a string, got {}", what, mk,
               mv.type_name());
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_entry(k, v, what));
  }

  // Tensors must tile the data buffer exactly: no gap, no overlap, nothing after the last one.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  const uint64_t data_size = size - h.data_start;
  uint64_t cursor = 0;
  for (const auto& e : h.tensors) {
    if (e.end > data_size)
      fail(
          "{}: safetensors tensor '{}' data_offsets [{}, {}] out of range: the data buffer has {} "
          "bytes",
          what, e.name, e.begin, e.end, data_size);
    if (e.begin < cursor)
      fail(
          "{}: safetensors tensor '{}' data_offsets [{}, {}] overlap the previous tensor (ends at "
          "{})",
          what, e.name, e.begin, e.end, cursor);
    if (e.begin > cursor)
      fail("{}: safetensors tensor '{}' data_offsets [{}, {}] leave a gap after offset {}", what,
           e.name, e.begin, e.end, cursor);
    cursor = e.end;
  }
  if (cursor != data_size)
    fail(
        "{}: safetensors file has {} trailing bytes after the last tensor (data ends at {}, "
        "buffer is {} bytes)",
        what, data_size - cursor, cursor, data_size);
  return h;
}

}  // namespace saelab
