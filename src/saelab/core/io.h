// Whole-file reads and atomic writes (temporary name in the same folder, fsync, rename), so a
// killed run never leaves a half-written file under the final name.
#pragma once
#include <string>
#include <string_view>

namespace saelab {

std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, std::string_view bytes);
// Renames a finished temporary directory into place, replacing any old one.
void rename_dir_atomic(const std::string& tmp_dir, const std::string& final_dir);
bool path_exists(const std::string& path);
void make_dirs(const std::string& path);

}  // namespace saelab
