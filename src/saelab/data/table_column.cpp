// SAELens's column choice (table_column.h).
#include "saelab/data/table_column.h"

#include <algorithm>

#include "saelab/core/error.h"

namespace saelab {

std::string choose_column(const std::vector<std::string>& names, const std::string& override_column,
                          const std::string& file) {
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  std::string listed;
  for (const auto& n : names) listed += (listed.empty() ? "" : ", ") + n;
  if (!override_column.empty()) {
    if (has(override_column)) return override_column;
    fail("{}: dataset_column = '{}' is not a column here (columns: {})", file, override_column,
         listed);
  }
  for (const char* c : {"input_ids", "tokens", "text"})
    if (has(c)) return c;
  fail("{}: expected a column 'input_ids', 'tokens' or 'text' (columns: {}); set dataset_column",
       file, listed);
}

}  // namespace saelab
