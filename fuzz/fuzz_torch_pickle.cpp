// torch.save checkpoints: the zip container plus the restricted unpickler of data.pkl. Every
// returned tensor is read end to end (its storage must hold it).
#include <ATen/ATen.h>

#include "fuzz_target.h"
#include "saelab/core/torch_pickle.h"

SAELAB_FUZZ_TARGET(torch_pickle) {
  auto tensors = saelab::load_torch_state_dict(saelab::fuzz::write_input(data, size, "model.pt"));
  volatile uint8_t sink = 0;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.contiguous();
    const auto* p = static_cast<const uint8_t*>(c.data_ptr());
    size_t n = c.numel() * c.element_size();
    if (n) sink ^= p[0] ^ p[n - 1];
  }
  (void)sink;
}
