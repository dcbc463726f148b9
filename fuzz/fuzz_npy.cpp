// NumPy .npy and .npz: an input starting with the zip signature is read as an .npz file, anything
// else as .npy bytes. Every returned tensor is read end to end (its bytes must exist).
#include <ATen/ATen.h>

#include "fuzz_target.h"
#include "saelab/core/npy.h"

static void touch(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  size_t n = c.numel() * c.element_size();
  volatile uint8_t sink = 0;
  if (n) sink ^= p[0] ^ p[n - 1];
  (void)sink;
}

SAELAB_FUZZ_TARGET(npy) {
  if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
    for (const auto& [name, t] : saelab::read_npz(saelab::fuzz::write_input(data, size, "in.npz")))
      touch(t);
  } else {
    touch(saelab::parse_npy(std::string(reinterpret_cast<const char*>(data), size), "input.npy"));
  }
}
