// safetensors header parser (torch-free): any input parses or is refused with one line. A parsed
// header promises that every tensor lies inside the buffer, so both ends of each are read (ASan
// reports a read past the end).
#include "fuzz_target.h"
#include "saelab/core/safetensors_format.h"

SAELAB_FUZZ_TARGET(safetensors) {
  saelab::SafetensorsHeader h = saelab::parse_safetensors(data, size, "input.safetensors");
  volatile uint8_t sink = 0;
  for (const auto& e : h.tensors) {
    if (e.end > e.begin) sink ^= data[h.data_start + e.begin] ^ data[h.data_start + e.end - 1];
  }
  (void)sink;
}
