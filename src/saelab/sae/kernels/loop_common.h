// Shared by the raw-loop files of the fast training steps (fast_loops.cpp, select_loops.cpp),
// which are compiled with -fopenmp; not part of any interface. Threads: at::get_num_threads()
// (LibTorch sets the same OpenMP runtime's thread count).
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace saelab::fast::loops {

inline int num_threads() { return std::max(1, at::get_num_threads()); }
#ifdef _OPENMP
inline int thread_id() { return omp_get_thread_num(); }
#else
inline int thread_id() { return 0; }
#endif

// AT_DISPATCH_FLOATING_TYPES takes the body as a macro argument, where #pragma omp is not
// allowed: this is the same dispatch as a function.
template <typename F>
void dispatch_float(at::ScalarType t, const char* what, F&& f) {
  if (t == at::kFloat)
    f(float{});
  else if (t == at::kDouble)
    f(double{});
  else
    TORCH_CHECK(false, what, ": expected float32 or float64, got ", t);
}

inline at::TensorOptions long_opts() { return at::TensorOptions().dtype(at::kLong); }

// A candidate of a selection: value and column (or flat index). "better" orders the selection
// rule: larger value first, then lower index.
template <typename T>
struct Cand {
  T v;
  int64_t j;
};
template <typename T>
inline bool better(const Cand<T>& a, const Cand<T>& b) {
  return a.v > b.v || (a.v == b.v && a.j < b.j);
}

}  // namespace saelab::fast::loops
