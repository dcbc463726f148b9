// A column of a table file (Parquet, Arrow IPC) read row by row, as token-id lists or text, and
// SAELens's choice of that column.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace saelab {

struct ColumnRow {
  bool is_text = false;
  std::vector<int64_t> ids;  // a list<int32|int64> row
  std::string text;          // a string row
};

class ColumnRowReader {
 public:
  virtual ~ColumnRowReader() = default;
  // The next non-null row; false at the end of the file. Null rows are skipped (as an absent
  // document); a null token id inside a list is an error.
  virtual bool next(ColumnRow& row) = 0;
  virtual std::string column() const = 0;
};

// SAELens's choice of column: `override_column` when set (an error naming `file` and the columns
// there when absent), else the first of input_ids, tokens, text; else an error.
std::string choose_column(const std::vector<std::string>& names, const std::string& override_column,
                          const std::string& file);

}  // namespace saelab
