// Arrow IPC files and streams as saelab reads them (data/arrow_ipc.h): the FlatBuffer schema and
// record-batch headers, field nodes, buffers and (compressed) bodies, for each of the three
// columns a token source may choose. Lying lengths and offsets must be refused with one line.
#include "fuzz_target.h"
#include "saelab/data/arrow_ipc.h"

SAELAB_FUZZ_TARGET(arrow) {
  const std::string path = saelab::fuzz::write_input(data, size, "input.arrow");
  for (const char* column : {"input_ids", "tokens", "text"}) {
    try {
      auto r = saelab::open_arrow(path, column);
      saelab::ColumnRow row;
      volatile int64_t sink = 0;
      while (r->next(row)) sink = sink + int64_t(row.ids.size() + row.text.size());
    } catch (const saelab::Error& e) {
      // Each column is its own parse: check the one-line contract here and go on to the next.
      saelab::fuzz::note_refusal(e);
    }
  }
}
