// Arrow IPC files and streams as saelab reads them (data/arrow_ipc.h): the FlatBuffer schema and
// record-batch headers, field nodes, buffers and (compressed) bodies, for each of the three
// columns a token source may choose. Lying lengths and offsets must be refused with one line.
#include "fuzz_target.h"
#include "saelab/data/arrow_ipc.h"

SAELAB_FUZZ_TARGET(arrow) {
  const std::string path = saelab::fuzz::write_input(data, size, "input.arrow");
  // Each column is its own parse. The input counts as refused (the first error is rethrown)
  // when no column could be read, as when the footer or schema is broken.
  std::string first_error;
  int read = 0;
  for (const char* column : {"input_ids", "tokens", "text"}) {
    try {
      auto r = saelab::open_arrow(path, column);
      saelab::ColumnRow row;
      volatile int64_t sink = 0;
      while (r->next(row)) sink = sink + int64_t(row.ids.size() + row.text.size());
      ++read;
    } catch (const saelab::Error& e) {
      if (!saelab::fuzz::message_fault(e.what()).empty()) throw;  // the contract is checked there
      if (first_error.empty()) first_error = e.what();
    }
  }
  if (read == 0) throw saelab::Error(first_error);
}
