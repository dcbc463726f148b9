// The on-disk Hugging Face formats written by independent writers (npm packages in build/npm, run
// by tests/data/fixtures_js/make_fixtures.mjs), generated once per test process.
#pragma once
#include <filesystem>
#include <memory>
#include <string>

#include "test_paths.h"
#include "test_util.h"

namespace saelab::test {

struct HfFixtures {
  bool ready = false;  // false: the npm packages are not installed (skip)
  std::string error;   // the script failed (fail)
  std::string dir;
  std::string operator/(const std::string& name) const { return dir + "/" + name; }
};

inline std::string run_fixture_script(const std::string& out_dir, int big_rows) {
  const std::string npm = std::string(SAELAB_BINARY_DIR) + "/npm";
  const auto r = run_command(
      "node " +
      shell_quote(std::string(SAELAB_SOURCE_DIR) + "/tests/data/fixtures_js/make_fixtures.mjs") +
      " " + shell_quote(npm) + " " + shell_quote(out_dir) + " " + std::to_string(big_rows));
  return r.rc == 0 ? "" : "make_fixtures.mjs failed: " + r.err;
}

inline const HfFixtures& hf_fixtures() {
  static std::unique_ptr<TempDir> tmp;
  static HfFixtures fx;
  static bool done = false;
  if (done) return fx;
  done = true;
  const std::string npm = std::string(SAELAB_BINARY_DIR) + "/npm";
  for (const char* pkg : {"parquet-wasm", "apache-arrow", "hyparquet-writer"})
    if (!std::filesystem::exists(npm + "/node_modules/" + pkg)) return fx;
  tmp = std::make_unique<TempDir>();
  fx.error = run_fixture_script(tmp->path(), 0);
  fx.dir = tmp->path();
  fx.ready = fx.error.empty();
  return fx;
}

// Only big_dict.parquet / big_plain.parquet (rows of 512 int64 ids, Snappy) and big.sum (their
// token count and sum), in `dir`.
inline HfFixtures hf_big_fixtures(const std::string& dir, int rows) {
  HfFixtures fx;
  fx.error = run_fixture_script(dir, rows);
  fx.dir = dir;
  fx.ready = fx.error.empty();
  return fx;
}

#define SAELAB_NEED_HF_FIXTURES(fx)                                                                \
  do {                                                                                             \
    if (!(fx).error.empty()) FAIL() << (fx).error;                                                 \
    if (!(fx).ready)                                                                               \
      GTEST_SKIP() << "build/npm lacks parquet-wasm / apache-arrow / hyparquet-writer: run `bash " \
                      "scripts/test-setup.sh` (make test does)";                                   \
  } while (0)

}  // namespace saelab::test
