// Tiny random models of every family in their real on-disk layouts, written once per test
// executable by tests/fixtures/model/make_tiny_models.py with Debian's python3 + torch (an
// independent writer), each with expected.safetensors holding input_ids and the logits of the
// script's own float64 reference forward pass.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "test_paths.h"
#include "test_util.h"

namespace saelab::test {

inline const std::string& tiny_models_dir() {
  static TempDir dir;
  static const bool made = [] {
    run_python("import sys\nsys.argv = ['make_tiny_models.py', " + shell_quote(dir.path()) + "]\n" +
               "exec(open(" +
               shell_quote(std::string(SAELAB_FIXTURES_DIR) + "/model/make_tiny_models.py") +
               ").read())\n");
    return true;
  }();
  (void)made;
  return dir.path();
}

inline std::string tiny_model(const std::string& family) {
  return tiny_models_dir() + "/" + family;
}

// max |actual - expected| <= rel * max |expected|: a relative check on the scale of the logits.
inline void expect_close_rel(const at::Tensor& actual, const at::Tensor& expected, double rel,
                             const std::string& what) {
  ASSERT_EQ(actual.sizes().vec(), expected.sizes().vec()) << what;
  const double scale = expected.abs().max().item<double>();
  const double err = (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(err, rel * scale) << what << ": max abs error " << err << " vs scale " << scale;
}

// A fake Hugging Face hub cache: models--ORG--NAME/{refs/main, snapshots/REV/<files>} whose
// snapshot files are symlinks into blobs/, as huggingface_hub lays them out.
inline void make_fake_hf_cache(const std::string& cache, const std::string& repo_id,
                               const std::string& src_dir,
                               const std::string& rev = "0123456789abcdef") {
  namespace fs = std::filesystem;
  std::string folder = "models--";
  for (char c : repo_id) folder += c == '/' ? std::string("--") : std::string(1, c);
  const fs::path repo = fs::path(cache) / folder;
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "snapshots" / rev);
  write_text((repo / "refs" / "main").string(), rev);
  int i = 0;
  for (auto& e : fs::directory_iterator(src_dir)) {
    const fs::path blob = repo / "blobs" / ("blob" + std::to_string(i++));
    fs::copy_file(e.path(), blob, fs::copy_options::overwrite_existing);
    const fs::path link = repo / "snapshots" / rev / e.path().filename();
    fs::remove(link);
    fs::create_symlink(fs::relative(blob, link.parent_path()), link);
  }
}

}  // namespace saelab::test
