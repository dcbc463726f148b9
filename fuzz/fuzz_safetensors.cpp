// libFuzzer target for the safetensors header parser (scripts/fuzz.sh builds and runs it): any
// input must either parse or throw saelab::Error; every other exception or crash is a bug.
#include <cstddef>
#include <cstdint>

#include "saelab/core/error.h"
#include "saelab/core/safetensors_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    saelab::SafetensorsHeader h = saelab::parse_safetensors(data, size, "fuzz-input");
    // A parsed header promises that every tensor lies inside the buffer: touch both ends.
    volatile uint8_t sink = 0;
    for (const auto& e : h.tensors) {
      if (e.end > e.begin) sink ^= data[h.data_start + e.begin] ^ data[h.data_start + e.end - 1];
    }
    (void)sink;
  } catch (const saelab::Error&) {
  }
  return 0;
}
