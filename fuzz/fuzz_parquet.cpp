// Parquet files as saelab reads them (data/parquet.h): the footer's Thrift, the schema, page
// headers, codecs, levels and encodings, for each of the three columns a token source may choose.
// A file that lies about a size, an offset or a count must be refused with one line, never read
// out of bounds or allocate what the file cannot hold.
#include "fuzz_target.h"
#include "saelab/data/parquet.h"

SAELAB_FUZZ_TARGET(parquet) {
  const std::string path = saelab::fuzz::write_input(data, size, "input.parquet");
  for (const char* column : {"input_ids", "tokens", "text"}) {
    try {
      auto r = saelab::open_parquet(path, column);
      saelab::ColumnRow row;
      volatile int64_t sink = 0;
      while (r->next(row)) sink = sink + int64_t(row.ids.size() + row.text.size());
    } catch (const saelab::Error& e) {
      // Each column is its own parse: check the one-line contract here and go on to the next.
      saelab::fuzz::note_refusal(e);
    }
  }
}
