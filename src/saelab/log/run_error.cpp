// RUN_DIR/error.txt (run_error.h).
#include "saelab/log/run_error.h"

#include <fstream>

#include "saelab/core/error.h"
#include "saelab/core/io.h"

namespace saelab {

void write_run_error(const std::string& run_dir, const std::string& message) {
  try {
    make_dirs(run_dir);
    write_file_atomic(run_dir + "/error.txt", message + "\n");
  } catch (const Error&) {
    // The run directory itself is unwritable; the caller still reports the error to the user.
  }
}

std::vector<std::string> read_run_errors(const std::string& run_dir) {
  std::vector<std::string> out;
  std::ifstream in(run_dir + "/error.txt");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

}  // namespace saelab
