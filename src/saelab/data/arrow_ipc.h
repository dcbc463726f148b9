// Arrow IPC files (ARROW1 magic, footer) and streams (the `datasets` library's cache format, its
// .arrow files), memory-mapped and read one column row by row: list / large_list /
// fixed_size_list of integers (token ids) or utf8 / large_utf8 strings (text). Record batches are
// decoded as rows are asked for; LZ4-frame and Zstandard body compression are read. Anything else
// in the chosen column is a one-line saelab::Error naming the file, the column and the type.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "saelab/data/table_column.h"

namespace saelab {

std::unique_ptr<ColumnRowReader> open_arrow(const std::string& path,
                                            const std::string& override_column);

}  // namespace saelab
