// safetensors files: a memory-mapped reader over the validated header (safetensors_format.cpp) and
// an atomic writer that pads the header to 8 bytes as the reference library does.
#include "saelab/core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

#if defined(TORCH_VERSION_MAJOR) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))
#define SAELAB_HAVE_FLOAT8 1
#else
#define SAELAB_HAVE_FLOAT8 0
#endif

namespace saelab {

at::ScalarType scalar_type_of(StDtype dtype) {
  switch (dtype) {
    case StDtype::BOOL:
      return at::kBool;
    case StDtype::U8:
      return at::kByte;
    case StDtype::I8:
      return at::kChar;
    case StDtype::I16:
      return at::kShort;
    case StDtype::U16:
      return at::kInt;  // widened: LibTorch 1.13 has no uint16
    case StDtype::F16:
      return at::kHalf;
    case StDtype::BF16:
      return at::kBFloat16;
    case StDtype::I32:
      return at::kInt;
    case StDtype::U32:
      return at::kLong;  // widened
    case StDtype::F32:
      return at::kFloat;
    case StDtype::F64:
      return at::kDouble;
    case StDtype::I64:
      return at::kLong;
    case StDtype::U64:
      return at::kLong;  // values above 2^63-1 are refused when read
#if SAELAB_HAVE_FLOAT8
    case StDtype::F8_E4M3:
      return at::kFloat8_e4m3fn;
    case StDtype::F8_E5M2:
      return at::kFloat8_e5m2;
#else
    case StDtype::F8_E4M3:
    case StDtype::F8_E5M2:
      fail("safetensors dtype {} is unsupported in LibTorch {}", st_dtype_name(dtype),
           TORCH_VERSION);
#endif
  }
  fail("safetensors: invalid dtype enum value {}", static_cast<int>(dtype));
}

StDtype st_dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kBool:
      return StDtype::BOOL;
    case at::kByte:
      return StDtype::U8;
    case at::kChar:
      return StDtype::I8;
    case at::kShort:
      return StDtype::I16;
    case at::kHalf:
      return StDtype::F16;
    case at::kBFloat16:
      return StDtype::BF16;
    case at::kInt:
      return StDtype::I32;
    case at::kFloat:
      return StDtype::F32;
    case at::kDouble:
      return StDtype::F64;
    case at::kLong:
      return StDtype::I64;
#if SAELAB_HAVE_FLOAT8
    case at::kFloat8_e4m3fn:
      return StDtype::F8_E4M3;
    case at::kFloat8_e5m2:
      return StDtype::F8_E5M2;
#endif
    default:
      fail("safetensors cannot store torch dtype {}", c10::toString(t));
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open safetensors file ({})", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat ({})", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ > 0) {
    // Private copy-on-write: a caller writing into a view never changes the file or crashes.
    void* p = ::mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    if (p == MAP_FAILED) fail("{}: cannot memory-map ({})", path, std::strerror(e));
    size_t n = map_size_;
    mapping_ = std::shared_ptr<void>(p, [n](void* q) { ::munmap(q, n); });
    map_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  header_ = parse_safetensors(map_, map_size_, path);
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& e : header_.tensors) out.push_back(e.name);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& e : header_.tensors)
    if (e.name == name) return true;
  return false;
}

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  for (const auto& e : header_.tensors)
    if (e.name == name) return e;
  std::string have;
  for (size_t i = 0; i < header_.tensors.size() && i < 8; ++i)
    have += (i ? ", " : "") + header_.tensors[i].name;
  if (header_.tensors.size() > 8) have += ", ...";
  fail("{}: no tensor '{}' (has: {})", path_, name, have.empty() ? "none" : have);
}

namespace {

template <typename From, typename To>
at::Tensor widen(const uint8_t* p, const std::vector<int64_t>& shape, at::ScalarType st,
                 const std::string& path, const std::string& name) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  To* out = t.data_ptr<To>();
  int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    From v;
    std::memcpy(&v, p + i * sizeof(From), sizeof(From));
    if (static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<To>::max()))
      fail("{}: tensor '{}' holds {} which does not fit {}", path, name, static_cast<uint64_t>(v),
           c10::toString(st));
    out[i] = static_cast<To>(v);
  }
  return t;
}

}  // namespace

at::Tensor SafetensorsFile::read(const std::string& name, bool owning) const {
  const TensorEntry& e = entry(name);
  const uint8_t* p = map_ ? map_ + header_.data_start + e.begin : nullptr;
  const size_t nbytes = e.end - e.begin;
  at::ScalarType st;
  try {
    st = scalar_type_of(e.dtype);
  } catch (const Error& err) {
    fail("{}: tensor '{}': {}", path_, name, err.what());
  }
  switch (e.dtype) {
    case StDtype::U16:
      return widen<uint16_t, int32_t>(p, e.shape, st, path_, name);
    case StDtype::U32:
      return widen<uint32_t, int64_t>(p, e.shape, st, path_, name);
    case StDtype::U64:
      return widen<uint64_t, int64_t>(p, e.shape, st, path_, name);
    default:
      break;
  }
  auto opts = at::TensorOptions().dtype(st);
  if (nbytes == 0) return at::empty(e.shape, opts);
  if (e.dtype == StDtype::BOOL) {
    // A bool byte other than 0/1 is undefined behaviour in torch: refuse it.
    for (size_t i = 0; i < nbytes; ++i)
      if (p[i] > 1)
        fail("{}: BOOL tensor '{}' holds byte {} at element {}, expected 0 or 1", path_, name,
             static_cast<int>(p[i]), i);
  }
  const size_t item = st_dtype_size(e.dtype);
  if (owning || reinterpret_cast<uintptr_t>(p) % item != 0) {
    at::Tensor t = at::empty(e.shape, opts);
    if (nbytes) std::memcpy(t.data_ptr(), p, nbytes);  // an empty tensor's data_ptr() may be null
    return t;
  }
  std::shared_ptr<void> keep = mapping_;
  return at::from_blob(
      const_cast<uint8_t*>(p), e.shape, [keep](void*) {}, opts);
}

at::Tensor SafetensorsFile::view(const std::string& name) const { return read(name, false); }
at::Tensor SafetensorsFile::tensor(const std::string& name) const { return read(name, true); }

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& e : f.names()) out[e] = f.tensor(e);
  return out;
}

std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::set<std::string> seen;
  std::vector<at::Tensor> data;
  uint64_t off = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("safetensors: a tensor cannot be named '__metadata__'");
    if (!seen.insert(name).second) fail("safetensors: tensor name '{}' given twice", name);
    if (!t.defined()) fail("safetensors: tensor '{}' is undefined", name);
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    StDtype dt = st_dtype_of(c.scalar_type());
    uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = st_dtype_name(dt);
    e["shape"] = c.sizes().vec();
    e["data_offsets"] = {off, off + nbytes};
    h[name] = std::move(e);
    off += nbytes;
    data.push_back(std::move(c));
  }
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8 != 0) hs += ' ';
  std::string out;
  out.reserve(8 + hs.size() + off);
  uint64_t n = hs.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += hs;
  for (const auto& c : data) {
    if (c.numel() == 0) continue;
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string bytes;
  try {
    bytes = serialize_safetensors(tensors, metadata);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  write_file_atomic(path, bytes);
}

}  // namespace saelab
