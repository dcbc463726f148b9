// Parquet files read natively, one column row by row: the token-id lists (list<int32|int64>, in
// the 3-level or legacy 2-level layout) or the strings of a Hugging Face dataset's input_ids /
// tokens / text column. Pages are decoded one at a time as rows are asked for, so memory is one
// page (plus the column's dictionary), whatever the row-group size. Anything outside what it reads
// (a codec, an encoding, a nested type) is a one-line saelab::Error naming the file, the column and
// the feature.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "saelab/data/table_column.h"

namespace saelab {

// The top-level column names of a Parquet file (its schema only).
std::vector<std::string> parquet_columns(const std::string& path);

// Opens `path` and the column SAELens would read (choose_column with `override_column`).
std::unique_ptr<ColumnRowReader> open_parquet(const std::string& path,
                                              const std::string& override_column);

}  // namespace saelab
