// Parquet files as saelab reads them (data/parquet.h): the footer's Thrift, the schema, page
// headers, codecs, levels and encodings, for each of the three columns a token source may choose.
// A file that lies about a size, an offset or a count must be refused with one line, never read
// out of bounds or allocate what the file cannot hold.
#include "fuzz_target.h"
#include "saelab/data/parquet.h"

SAELAB_FUZZ_TARGET(parquet) {
  const std::string path = saelab::fuzz::write_input(data, size, "input.parquet");
  // Each column is its own parse. The input counts as refused (the first error is rethrown)
  // when no column could be read, as when the footer or schema is broken.
  std::string first_error;
  int read = 0;
  for (const char* column : {"input_ids", "tokens", "text"}) {
    try {
      auto r = saelab::open_parquet(path, column);
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
