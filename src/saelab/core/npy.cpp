// NumPy .npy (format versions 1-3) and .npz readers. The header is a Python dict literal, parsed by
// a small parser that accepts only what numpy writes: {'descr': str, 'fortran_order': bool,
// 'shape': tuple of ints}.
#include "saelab/core/npy.h"

#include <fmt/ranges.h>  // fmt::join (in format.h before fmt 11)
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/zip.h"

namespace saelab {
namespace {

struct PyValue {
  enum Kind { Str, Bool, Int, Tuple, None } kind = None;
  std::string str;
  bool boolean = false;
  int64_t integer = 0;
  std::vector<int64_t> ints;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& what) : s_(s), what_(what) {}

  std::map<std::string, PyValue> dict() {
    std::map<std::string, PyValue> out;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      std::string key = string();
      expect(':');
      out[key] = value();
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      break;
    }
    return out;
  }

 private:
  char peek() { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  [[noreturn]] void bad(const std::string& expected) {
    fail("{}: .npy header: expected {} at offset {} of '{}'", what_, expected, i_,
         s_.substr(0, 200));
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("'") + c + "'");
    ++i_;
  }
  std::string string() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') bad("a quoted string");
    ++i_;
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') bad("a string without escapes");
      ++i_;
    }
    if (i_ >= s_.size()) bad("the end of a string");
    return s_.substr(start, i_++ - start);
  }
  int64_t integer() {
    skip_ws();
    size_t start = i_;
    uint64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - 9) / 10)
        bad("a smaller integer");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (i_ == start) bad("a non-negative integer");
    if (peek() == 'L') ++i_;  // Python 2 longs
    return static_cast<int64_t>(v);
  }
  PyValue value() {
    skip_ws();
    PyValue v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = PyValue::Str;
      v.str = string();
    } else if (s_.compare(i_, 4, "True") == 0) {
      v.kind = PyValue::Bool, v.boolean = true, i_ += 4;
    } else if (s_.compare(i_, 5, "False") == 0) {
      v.kind = PyValue::Bool, v.boolean = false, i_ += 5;
    } else if (s_.compare(i_, 4, "None") == 0) {
      v.kind = PyValue::None, i_ += 4;
    } else if (c == '(') {
      ++i_;
      v.kind = PyValue::Tuple;
      while (true) {
        skip_ws();
        if (peek() == ')') {
          ++i_;
          break;
        }
        if (v.ints.size() >= 64) bad("at most 64 dimensions");
        v.ints.push_back(integer());
        skip_ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(')');
        break;
      }
    } else if (c >= '0' && c <= '9') {
      v.kind = PyValue::Int;
      v.integer = integer();
    } else {
      bad("a string, bool, integer or tuple (structured dtypes are not supported)");
    }
    return v;
  }

  const std::string& s_;
  const std::string& what_;
  size_t i_ = 0;
};

uint32_t le_u(const std::string& b, size_t at, int n) {
  uint32_t v = 0;
  for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(b[at + k]);
  return v;
}

// Copies n elements of `size` bytes, reversing byte order when `swap`.
void copy_elements(const uint8_t* src, uint8_t* dst, int64_t n, size_t size, bool swap) {
  if (n == 0) return;  // an empty tensor's data pointer may be null, and memcpy(null, ...) is UB
  if (!swap || size == 1) {
    std::memcpy(dst, src, n * size);
    return;
  }
  for (int64_t i = 0; i < n; ++i)
    for (size_t k = 0; k < size; ++k) dst[i * size + k] = src[i * size + size - 1 - k];
}

template <typename From, typename To>
void widen(const uint8_t* src, To* dst, int64_t n, bool swap, const std::string& what) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t buf[sizeof(From)];
    copy_elements(src + i * sizeof(From), buf, 1, sizeof(From), swap);
    From v;
    std::memcpy(&v, buf, sizeof(From));
    if (static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<To>::max()))
      fail("{}: uint{} value {} at element {} does not fit int64", what, sizeof(From) * 8,
           static_cast<uint64_t>(v), i);
    dst[i] = static_cast<To>(v);
  }
}

}  // namespace

at::Tensor parse_npy(const std::string& b, const std::string& what) {
  static const char kMagic[] = "\x93NUMPY";
  if (b.size() < 10 || b.compare(0, 6, kMagic, 6) != 0)
    fail("{}: not an .npy file (missing the \\x93NUMPY magic)", what);
  const int major = static_cast<uint8_t>(b[6]);
  size_t header_at, header_len;
  if (major == 1) {
    header_len = le_u(b, 8, 2);
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) fail("{}: .npy file truncated in its header", what);
    header_len = le_u(b, 8, 4);
    header_at = 12;
  } else {
    fail("{}: .npy format version {}.{} is not supported (expected 1, 2 or 3)", what, major,
         static_cast<int>(static_cast<uint8_t>(b[7])));
  }
  if (header_len > b.size() - header_at)
    fail("{}: .npy header length {} runs beyond the end of the file ({} bytes)", what, header_len,
         b.size());
  std::string header = b.substr(header_at, header_len);
  // Messages quote the header: keep them on one line.
  while (!header.empty() && (header.back() == '\n' || header.back() == ' ')) header.pop_back();
  std::replace(header.begin(), header.end(), '\n', ' ');
  auto dict = HeaderParser(header, what).dict();
  auto get = [&](const char* key, PyValue::Kind kind, const char* type) -> const PyValue& {
    auto it = dict.find(key);
    if (it == dict.end() || it->second.kind != kind)
      fail("{}: .npy header needs '{}' as {}: {}", what, key, type, header);
    return it->second;
  };
  const std::string descr = get("descr", PyValue::Str, "a string").str;
  const bool fortran = get("fortran_order", PyValue::Bool, "True/False").boolean;
  const std::vector<int64_t> shape = get("shape", PyValue::Tuple, "a tuple").ints;

  if (descr.size() < 3)
    fail("{}: .npy dtype '{}' is not supported (expected b1, i1-i8, u1-u8, f2-f8)", what, descr);
  const char order = descr[0], kind = descr[1];
  const std::string size_str = descr.substr(2);
  if (order != '<' && order != '>' && order != '|' && order != '=')
    fail("{}: .npy dtype '{}' has an unknown byte order '{}'", what, descr, order);
  const bool swap = order == '>';
  size_t item = 0;
  at::ScalarType st = at::kFloat;
  bool widened = false;
  if (size_str == "1" || size_str == "2" || size_str == "4" || size_str == "8")
    item = size_str[0] - '0';
  if (kind == 'b' && item == 1)
    st = at::kBool;
  else if (kind == 'i' && item == 1)
    st = at::kChar;
  else if (kind == 'i' && item == 2)
    st = at::kShort;
  else if (kind == 'i' && item == 4)
    st = at::kInt;
  else if (kind == 'i' && item == 8)
    st = at::kLong;
  else if (kind == 'u' && item == 1)
    st = at::kByte;
  else if (kind == 'u' && item == 2)
    st = at::kInt, widened = true;  // no uint16 in LibTorch 1.13
  else if (kind == 'u' && item == 4)
    st = at::kLong, widened = true;
  else if (kind == 'u' && item == 8)
    st = at::kLong, widened = true;  // values > 2^63-1 refused
  else if (kind == 'f' && item == 2)
    st = at::kHalf;
  else if (kind == 'f' && item == 4)
    st = at::kFloat;
  else if (kind == 'f' && item == 8)
    st = at::kDouble;
  else
    fail("{}: .npy dtype '{}' is not supported (expected b1, i1-i8, u1-u8, f2-f8)", what, descr);

  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / item / static_cast<uint64_t>(d))
      fail("{}: .npy shape overflows", what);
    numel *= static_cast<uint64_t>(d);
  }
  const size_t data_at = header_at + header_len;
  const uint64_t have = b.size() - data_at;
  if (have != numel * item)
    fail("{}: .npy data has {} bytes but dtype '{}' x shape ({}) needs {}", what, have, descr,
         fmt::join(shape, ", "), numel * item);

  // Fortran order is C order of the reversed shape, transposed back.
  std::vector<int64_t> mem_shape = shape;
  if (fortran) std::reverse(mem_shape.begin(), mem_shape.end());
  at::Tensor t = at::empty(mem_shape, at::TensorOptions().dtype(st));
  const uint8_t* src = reinterpret_cast<const uint8_t*>(b.data()) + data_at;
  const int64_t n = static_cast<int64_t>(numel);
  if (!widened) {
    copy_elements(src, static_cast<uint8_t*>(t.data_ptr()), n, item, swap);
    if (st == at::kBool) {
      uint8_t* p = static_cast<uint8_t*>(t.data_ptr());
      for (int64_t i = 0; i < n; ++i) p[i] = p[i] != 0;
    }
  } else if (item == 2) {
    widen<uint16_t, int32_t>(src, t.data_ptr<int32_t>(), n, swap, what);
  } else if (item == 4) {
    widen<uint32_t, int64_t>(src, t.data_ptr<int64_t>(), n, swap, what);
  } else {
    widen<uint64_t, int64_t>(src, t.data_ptr<int64_t>(), n, swap, what);
  }
  if (fortran && shape.size() > 1) {
    std::vector<int64_t> perm(shape.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(perm.size() - 1 - i);
    t = t.permute(perm).contiguous();
  }
  return t;
}

at::Tensor read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::map<std::string, at::Tensor> read_npz(const std::string& path) {
  if (!path_exists(path)) fail("{}: no such .npz file", path);
  if (!looks_like_zip(path)) fail("{}: not an .npz file (not a zip archive)", path);
  ZipReader z(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& name : z.names()) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;
    std::string key = name.substr(0, name.size() - 4);
    if (out.count(key)) fail("{}: .npz holds '{}' twice", path, name);
    out[key] = parse_npy(z.read(name), path + ":" + name);
  }
  return out;
}

}  // namespace saelab
