// Helpers shared by the tests: temporary directories, running commands (the saelab executable,
// Debian's python3 for independent fixtures) and capturing their output.
#pragma once
#include <string>

namespace saelab::test {

struct CommandResult {
  int rc;
  std::string out;  // stdout
  std::string err;  // stderr
};

// A fresh directory under the build tree, removed when the object dies (kept if SAELAB_KEEP_TMP).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

CommandResult run_command(const std::string& cmd);
// Runs `saelab ARGS` (ARGS already shell-quoted as needed).
CommandResult run_saelab(const std::string& args);
// Runs a Python script with Debian's /usr/bin/python3 (torch and numpy available); throws on
// failure.
std::string run_python(const std::string& script);
bool python_has(const std::string& module);
std::string shell_quote(const std::string& s);
void write_text(const std::string& path, const std::string& text);

}  // namespace saelab::test
