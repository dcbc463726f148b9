// NumPy .npy and .npz files (GemmaScope ships params.npz). Little- and big-endian, C and Fortran
// order, dtypes bool/int8..int64/uint8..uint64/float16/float32/float64. Errors name the file.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace saelab {

at::Tensor read_npy(const std::string& path);
at::Tensor parse_npy(const std::string& bytes, const std::string& what);
// Every array of an .npz (zip, stored or deflated), keyed by name without ".npy".
std::map<std::string, at::Tensor> read_npz(const std::string& path);

}  // namespace saelab
