// Shared runs for the report tests (report_fixture.h).
#include "vis/report_fixture.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "test_paths.h"
#include "test_util.h"

namespace saelab::test {
namespace fs = std::filesystem;

namespace {

// DIR/<name>-<mtime of the saelab binary>, made by `make` under a lock unless it exists: a rebuilt
// binary trains afresh, parallel test processes train once.
std::string cached(const std::string& name, const std::string& args) {
  struct stat st {};
  if (::stat(SAELAB_EXE, &st) != 0) throw std::runtime_error("no saelab executable at " SAELAB_EXE);
  const std::string root = std::string(SAELAB_BINARY_DIR) + "/test-tmp/vis-cache";
  fs::create_directories(root);
  const std::string dir = root + "/" + name + "-" + std::to_string(st.st_mtime);
  int fd = ::open((root + "/" + name + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (fd < 0) throw std::runtime_error("cannot open the lock file in " + root);
  ::flock(fd, LOCK_EX);
  if (!fs::exists(dir + "/.done")) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    auto r = run_saelab("train " + args + " --run-dir " + shell_quote(dir));
    if (r.rc != 0) {
      ::close(fd);
      throw std::runtime_error("saelab train " + args + " failed: " + r.err);
    }
    write_text(dir + "/.done", "");
  }
  ::close(fd);
  return dir;
}

}  // namespace

std::string cached_toy_run() { return cached("toy-run", kToyRunSets); }

std::string cached_toy_sweep() {
  return cached("toy-sweep", std::string(kToyRunSets) + " --set 'l1_coefficient=[0.3,3]'");
}

JsonlCounts count_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  JsonlCounts c;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;  // the tests' own torn last line
    ++c.lines;
    for (const auto& [k, v] : j.items()) {
      if (k == "step") continue;
      if (v.is_number() && std::isfinite(v.get<double>())) ++c.finite[k];
      if (v.is_null()) c.nulls.insert(k);
    }
  }
  return c;
}

void copy_dir(const std::string& src, const std::string& dst) {
  fs::copy(src, dst, fs::copy_options::recursive);
}

}  // namespace saelab::test
