// Zip archives as saelab reads them (libzip behind ZipReader; .npz and torch.save files are zips):
// open, list, and read every entry whole. Each read is bounded by the size checks in ZipReader, so
// a small archive that claims a huge entry must be refused before the buffer is allocated.
#include "fuzz_target.h"
#include "saelab/core/zip.h"

SAELAB_FUZZ_TARGET(zip) {
  saelab::ZipReader z(saelab::fuzz::write_input(data, size, "input.zip"));
  volatile char sink = 0;
  for (const auto& name : z.names()) {
    std::string bytes = z.read(name);
    if (!bytes.empty()) sink ^= bytes.front() ^ bytes.back();
  }
  (void)sink;
}
