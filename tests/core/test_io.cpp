#include <gtest/gtest.h>

#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/core/json.h"
#include "test_util.h"

using namespace saelab;

TEST(Io, AtomicWriteReplacesWholeFileAndLeavesNoTemporary) {
  test::TempDir dir;
  write_file_atomic(dir / "a.txt", "first");
  write_file_atomic(dir / "a.txt", "second");
  EXPECT_EQ(read_file(dir / "a.txt"), "second");
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++n;
  EXPECT_EQ(n, 1);
}

TEST(Io, MissingFileNamesThePath) {
  try {
    read_file("/nonexistent/x.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.json"), std::string::npos);
  }
}

TEST(Json, BadJsonNamesFileAndWrongTypeNamesKey) {
  test::TempDir dir;
  test::write_text(dir / "bad.json", "{\"a\": ");
  EXPECT_THROW(read_json_file(dir / "bad.json"), Error);
  json j = {{"d_in", "x"}};
  try {
    get_field<int64_t>(j, "d_in", "cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d_in"), std::string::npos);
  }
}
