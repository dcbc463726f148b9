#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "test_paths.h"

namespace saelab::test {
namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = std::getenv("SAELAB_TEST_TMP");
  std::string root = base ? base : (fs::temp_directory_path() / "saelab-test").string();
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = root + "/t" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
          std::to_string(rd() % 100000);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  if (!std::getenv("SAELAB_KEEP_TMP")) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

static std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run_command(const std::string& cmd) {
  TempDir tmp;
  std::string full = cmd + " >" + tmp / "out" + " 2>" + tmp / "err" + " </dev/null";
  int status = std::system(full.c_str());
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {rc, slurp(tmp / "out"), slurp(tmp / "err")};
}

CommandResult run_saelab(const std::string& args) {
  return run_command(std::string(SAELAB_EXE) + " " + args);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string run_python(const std::string& script) {
  TempDir tmp;
  write_text(tmp / "script.py", script);
  auto r = run_command("/usr/bin/python3 " + tmp / "script.py");
  if (r.rc != 0)
    throw std::runtime_error("python failed (rc " + std::to_string(r.rc) + "): " + r.err);
  return r.out;
}

bool python_has(const std::string& module) {
  return run_command("/usr/bin/python3 -c 'import " + module + "'").rc == 0;
}

}  // namespace saelab::test
