// Datasets named by id, found as the Hugging Face libraries lay them out: the hub cache
// (datasets--org--name/{refs,snapshots,blobs}, files as symlinks to blobs) with revisions and
// splits, and the `datasets` library's Arrow cache (org___name/config/version/hash/*.arrow).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "hf_fixtures.h"
#include "saelab/core/error.h"
#include "saelab/data/dataset_resolve.h"
#include "saelab/data/token_source.h"

namespace {
namespace fs = std::filesystem;
using saelab::test::TempDir;
using Windows = std::vector<std::vector<int64_t>>;

Windows windows(const std::string& path, int64_t ctx, const std::string& split = "",
                const std::string& revision = "") {
  saelab::TokenSourceOptions o;
  o.dataset_path = path;
  o.context_size = ctx;
  o.prepend_bos = false;
  o.dataset_split = split;
  o.dataset_revision = revision;
  auto s = saelab::open_token_source(o);
  Windows out;
  std::vector<int64_t> w;
  while (s->next(w)) out.push_back(w);
  return out;
}

Windows concat(std::initializer_list<Windows> parts) {
  Windows out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const saelab::Error& e) {
    return e.what();
  }
  return "";
}

// Sets an environment variable for one test.
struct Env {
  Env(const char* k, const std::string& v) : key(k) {
    if (const char* o = std::getenv(k)) old = o;
    setenv(k, v.c_str(), 1);
  }
  ~Env() {
    if (old.empty())
      unsetenv(key);
    else
      setenv(key, old.c_str(), 1);
  }
  const char* key;
  std::string old;
};

// A file in a hub-cache snapshot: the content in blobs/, a relative symlink in the snapshot.
void add_blob(const fs::path& repo, const std::string& rev, const std::string& rel,
              const std::string& src, const std::string& blob) {
  fs::create_directories(repo / "blobs");
  fs::copy_file(src, repo / "blobs" / blob, fs::copy_options::overwrite_existing);
  const fs::path link = repo / "snapshots" / rev / rel;
  fs::create_directories(link.parent_path());
  fs::create_symlink(fs::relative(repo / "blobs" / blob, link.parent_path()), link);
}

TEST(HfDatasetCache, HubSnapshotRevisionsAndSplits) {
  const auto& fx = saelab::test::hf_fixtures();
  SAELAB_NEED_HF_FIXTURES(fx);
  TempDir d;
  Env env("HF_HUB_CACHE", d / "hub");
  Env home("HF_DATASETS_CACHE", d / "none");
  const fs::path repo = fs::path(d / "hub") / "datasets--org--tiny";
  const std::string main_rev = "1111111111111111111111111111111111111111";
  const std::string old_rev = "2222222222222222222222222222222222222222";
  // Shards out of name order on purpose: shard order is the sorted path order.
  add_blob(repo, main_rev, "data/train-00001-of-00002.parquet", fx / "rs_zstd_v2_plain.parquet",
           "b1");
  add_blob(repo, main_rev, "data/train-00000-of-00002.parquet", fx / "rs_snappy_v1_dict.parquet",
           "b0");
  add_blob(repo, main_rev, "data/test-00000-of-00001.parquet", fx / "hy_delta.parquet", "b2");
  add_blob(repo, main_rev, "README.md", fx / "text.jsonl", "b3");
  add_blob(repo, old_rev, "train.jsonl.gz", fx / "ids.jsonl.gz", "b4");
  fs::create_directories(repo / "refs");
  saelab::test::write_text((repo / "refs" / "main").string(), main_rev + "\n");
  const Windows ids = windows(fx / "ids.jsonl", 8);
  EXPECT_EQ(windows("org/tiny", 8), concat({ids, ids}));
  EXPECT_EQ(windows("org/tiny", 8, "test"), ids);
  EXPECT_EQ(windows("org/tiny", 8, "train", old_rev), ids);
  std::string e = error_of([&] { windows("org/tiny", 8, "train", "v9"); });
  EXPECT_NE(e.find("revision 'v9'"), std::string::npos) << e;
  EXPECT_NE(e.find(main_rev), std::string::npos) << e;
  e = error_of([&] { windows("org/tiny", 8, "validation"); });
  EXPECT_NE(e.find("no files of split 'validation'"), std::string::npos) << e;
  e = error_of([&] { windows("org/absent", 8); });
  EXPECT_NE(e.find("org/absent"), std::string::npos) << e;
  EXPECT_NE(e.find(d / "hub"), std::string::npos) << e;
}

TEST(HfDatasetCache, DatasetsLibraryArrowCache) {
  const auto& fx = saelab::test::hf_fixtures();
  SAELAB_NEED_HF_FIXTURES(fx);
  TempDir d;
  Env env("HF_HUB_CACHE", d / "hub");  // empty: the datasets cache is next
  Env ds("HF_DATASETS_CACHE", d / "ds");
  const fs::path old_dir = fs::path(d / "ds") / "org___tiny" / "default" / "0.0.0" / "aaa";
  const fs::path dir = fs::path(d / "ds") / "org___tiny" / "default" / "0.0.0" / "bbb";
  fs::create_directories(old_dir);
  fs::create_directories(dir);
  fs::copy_file(fx / "data.arrow", old_dir / "tiny-train.arrow");
  fs::copy_file(fx / "data.arrow", dir / "tiny-train-00001-of-00002.arrow");
  fs::copy_file(fx / "data.arrow", dir / "tiny-train-00000-of-00002.arrow");
  fs::copy_file(fx / "data.arrow", dir / "tiny-test.arrow");
  fs::copy_file(fx / "scalar.parquet", dir / "cache-0123abcd.arrow");  // a map() cache: ignored
  // The newest folder holding the split wins.
  fs::last_write_time(old_dir, fs::last_write_time(dir) - std::chrono::hours(1));
  const Windows ids = windows(fx / "ids.jsonl", 8);
  EXPECT_EQ(windows("org/tiny", 8), concat({ids, ids}));
  EXPECT_EQ(windows("org/tiny", 8, "test"), ids);
  const std::string e = error_of([&] { windows("org/tiny", 8, "validation"); });
  EXPECT_NE(e.find("split 'validation'"), std::string::npos) << e;
}

// Local data: a folder's split is chosen by file name when dataset_split is set and the folder is
// read whole when not; keys naming a part that local data does not have are refused, never ignored.
TEST(HfDatasetCache, LocalDataSplitsAndRefusedParts) {
  const auto& fx = saelab::test::hf_fixtures();
  SAELAB_NEED_HF_FIXTURES(fx);
  TempDir d;
  const fs::path dir = fs::path(d / "local");
  fs::create_directories(dir);
  fs::copy_file(fx / "ids.jsonl", dir / "train.jsonl");
  fs::copy_file(fx / "hy_delta.parquet", dir / "validation.parquet");  // the same ids
  const Windows ids = windows(fx / "ids.jsonl", 8);
  EXPECT_EQ(windows(dir.string(), 8), concat({ids, ids}));
  EXPECT_EQ(windows(dir.string(), 8, "train"), ids);
  EXPECT_EQ(windows(dir.string(), 8, "validation"), ids);
  std::string e = error_of([&] { windows(dir.string(), 8, "test"); });
  EXPECT_NE(e.find("dataset_split = 'test': no file of that split"), std::string::npos) << e;
  e = error_of([&] { windows(fx / "ids.jsonl", 8, "train"); });
  EXPECT_NE(e.find("dataset_split = 'train'"), std::string::npos) << e;
  e = error_of([&] { windows(dir.string(), 8, "", "v2"); });
  EXPECT_NE(e.find("dataset_revision = 'v2'"), std::string::npos) << e;
  e = error_of([&] { windows("othello", 8, "test"); });
  EXPECT_NE(e.find("dataset_split = 'test'"), std::string::npos) << e;

  auto with_column = [&](const std::string& path) {
    return error_of([&] {
      saelab::TokenSourceOptions o;
      o.dataset_path = path;
      o.context_size = 8;
      o.prepend_bos = false;
      o.dataset_column = "tokens";
      saelab::open_token_source(o);
    });
  };
  saelab::test::write_text(d / "plain.txt", "some text\n");
  e = with_column(d / "plain.txt");
  EXPECT_NE(e.find("dataset_column = 'tokens'"), std::string::npos) << e;
  EXPECT_NE(e.find("no columns"), std::string::npos) << e;
  e = with_column("othello");
  EXPECT_NE(e.find("dataset_column = 'tokens'"), std::string::npos) << e;
}

TEST(HfDatasetCache, SplitSelectionByFileName) {
  using saelab::select_split;
  const std::vector<std::string> files = {
      "/r/plain_text/test-00000-of-00001.parquet", "/r/plain_text/train-00000-of-00002.parquet",
      "/r/plain_text/train-00001-of-00002.parquet", "/r/default/validation/0000.parquet"};
  EXPECT_EQ(select_split(files, "/r", "train"),
            (std::vector<std::string>{"/r/plain_text/train-00000-of-00002.parquet",
                                      "/r/plain_text/train-00001-of-00002.parquet"}));
  EXPECT_EQ(select_split(files, "/r", "validation"),
            (std::vector<std::string>{"/r/default/validation/0000.parquet"}));
  // No file names a split (fineweb's data/CC-MAIN-*/000_00000.parquet): all of them are train.
  const std::vector<std::string> fw = {"/r/data/CC-MAIN-2013-20/000_00000.parquet",
                                       "/r/data/CC-MAIN-2013-20/001_00000.parquet"};
  EXPECT_EQ(select_split(fw, "/r", "train"), fw);
  EXPECT_TRUE(select_split(fw, "/r", "test").empty());
}

}  // namespace
