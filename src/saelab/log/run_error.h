// RUN_DIR/error.txt: the error that stopped a run, one line per error, where `saelab doctor` and
// `saelab report` find it. Its one writer and its one reader.
#pragma once
#include <string>
#include <vector>

namespace saelab {

// Writes `message` (atomically) as run_dir/error.txt, creating run_dir. Never throws: a run
// directory that cannot be written must not hide the error being recorded.
void write_run_error(const std::string& run_dir, const std::string& message);

// The non-empty lines of run_dir/error.txt; empty when there is none.
std::vector<std::string> read_run_errors(const std::string& run_dir);

}  // namespace saelab
