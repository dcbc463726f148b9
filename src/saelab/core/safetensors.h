// safetensors files: a validated, memory-mapped reader and an atomic writer.
// The header parsing itself lives in safetensors_format.h (no torch), so the fuzzer can drive it.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "saelab/core/safetensors_format.h"

namespace saelab {

// A safetensors file opened read-only: header parsed and validated at open, data memory-mapped.
// Every validation fault throws saelab::Error naming the file and the fault.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in data order
  bool contains(const std::string& name) const;
  const TensorEntry& entry(const std::string& name) const;  // throws naming the missing tensor
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Zero-copy view of the mapped bytes in the stored dtype. The view keeps the mapping alive, so it
  // may outlive this object; the mapping is private copy-on-write, so writing to it never touches
  // the file. Copies instead when the bytes are not aligned for the dtype or when LibTorch has no
  // such dtype: U16 reads as int32, U32 and U64 as int64 (a U64 value above 2^63-1 is an error).
  at::Tensor view(const std::string& name) const;
  // An owning copy in the stored dtype.
  at::Tensor tensor(const std::string& name) const;

 private:
  std::string path_;
  SafetensorsHeader header_;
  at::Tensor read(const std::string& name, bool owning) const;

  std::shared_ptr<void> mapping_;  // munmap when the last view and this object are gone
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Loads every tensor (owning copies) keyed by name.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);
// Writes tensors (made contiguous, CPU) atomically; names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The serialised bytes of a safetensors file (what save_safetensors writes).
std::string serialize_safetensors(const NamedTensors& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// torch dtype <-> safetensors dtype name ("F32", "BF16", ...). Throws for unsupported ones.
// scalar_type_of gives the dtype view()/tensor() return: U16 -> int32, U32/U64 -> int64 (LibTorch
// 1.13 has no unsigned types beyond uint8); F8 types only where LibTorch has them (2.1+).
at::ScalarType scalar_type_of(StDtype dtype);
StDtype st_dtype_of(at::ScalarType t);

}  // namespace saelab
