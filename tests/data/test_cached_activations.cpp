// Cached activation shards written by an independent writer (numpy, by hand from the safetensors
// spec): every row once per epoch in shuffled order, dtype conversion, resume, bounded open shards,
// and errors that name the bad shard.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "data/cached_shards.h"
#include "saelab/core/error.h"
#include "saelab/data/cached_activations.h"
#include "test_util.h"

using namespace saelab;

namespace {

std::vector<int64_t> ids(const at::Tensor& batch) {
  at::Tensor c = batch.select(1, 0).to(at::kLong);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

const char* kThreeShards =
    R"([("a.safetensors", 5, "F16", 3), ("b.safetensors", 7, "F64", 3), ("c.safetensors", 4, "F32", 3)])";

}  // namespace

TEST(CachedActivations, EveryRowOncePerEpochInShuffledOrder) {
  test::TempDir dir;
  test::write_shards(dir / "cache", kThreeShards);
  CachedActivations src(dir / "cache", 7);
  EXPECT_EQ(src.d_in(), 3);
  EXPECT_EQ(src.num_rows(), 16);
  EXPECT_EQ(src.shard_paths().size(), 3u);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    testing::internal::CaptureStderr();
    for (int64_t n : {5, 5, 5, 1}) {
      at::Tensor b = src.next_batch(n);
      ASSERT_EQ(b.sizes(), (std::vector<int64_t>{n, 3}));
      ASSERT_EQ(b.scalar_type(), at::kFloat);
      // Columns still belong together after shuffling and conversion: (r, 2r, -r).
      EXPECT_TRUE(b.select(1, 1).equal(b.select(1, 0) * 2));
      EXPECT_TRUE(b.select(1, 2).equal(-b.select(1, 0)));
      auto v = ids(b);
      seen.insert(seen.end(), v.begin(), v.end());
    }
    std::string err = testing::internal::GetCapturedStderr();
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(16);
    for (int i = 0; i < 16; ++i) all[i] = i;
    EXPECT_EQ(sorted, all) << "epoch " << epoch;
    EXPECT_NE(seen, all) << "epoch " << epoch << " was not shuffled";
    // The warning comes when epoch 2 starts, i.e. on the first draw of the second pass.
    if (epoch == 1)
      EXPECT_NE(err.find("starting epoch 2"), std::string::npos) << err;
    else
      EXPECT_EQ(err, "");
  }
  EXPECT_EQ(src.epoch(), 1);
  EXPECT_LE(src.max_open_shards(), 1);
  EXPECT_GE(src.max_open_shards(), 1);
}

TEST(CachedActivations, SingleFileAndResume) {
  test::TempDir dir;
  test::write_shards(dir / "one", R"([("only.safetensors", 50, "F32", 3)])");
  CachedActivations a(dir / "one/only.safetensors", 3);
  EXPECT_EQ(a.num_rows(), 50);
  a.next_batch(7);
  json s = json::parse(a.state().dump());
  at::Tensor want = a.next_batch(60);  // crosses into the next epoch
  CachedActivations b(dir / "one/only.safetensors", 3);
  b.load_state(s);
  testing::internal::CaptureStderr();
  EXPECT_TRUE(b.next_batch(60).equal(want));
  testing::internal::GetCapturedStderr();
  EXPECT_THROW(b.load_state(json{{"type", "toy"}}), Error);
}

TEST(CachedActivations, ResumeAcrossShards) {
  test::TempDir dir;
  test::write_shards(dir / "cache", kThreeShards);
  CachedActivations a(dir / "cache", 1);
  a.next_batch(6);
  json s = a.state();
  at::Tensor want = a.next_batch(9);
  CachedActivations b(dir / "cache", 1);
  b.load_state(s);
  EXPECT_TRUE(b.next_batch(9).equal(want));
  // Another seed gives another order.
  CachedActivations c(dir / "cache", 2);
  EXPECT_FALSE(c.next_batch(16).equal(CachedActivations(dir / "cache", 1).next_batch(16)));
}

TEST(CachedActivations, DInMismatchNamesTheShard) {
  test::TempDir dir;
  test::write_shards(dir / "cache",
                     R"([("a.safetensors", 5, "F32", 3), ("b.safetensors", 5, "F32", 4)])");
  try {
    CachedActivations src(dir / "cache", 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("d_in"), std::string::npos) << e.what();
  }
  test::write_shards(dir / "ok", R"([("a.safetensors", 5, "F32", 3)])");
  try {
    CachedActivations src(dir / "ok", 0, 8);  // the run says d_in = 8
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.safetensors"), std::string::npos) << e.what();
  }
}

TEST(CachedActivations, CorruptOrWrongShardNamesTheFile) {
  test::TempDir dir;
  test::write_shards(dir / "cache", R"([("a.safetensors", 5, "F32", 3)])");
  test::write_text(dir / "cache/b.safetensors", "this is not a safetensors file at all");
  try {
    CachedActivations src(dir / "cache", 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.safetensors"), std::string::npos) << e.what();
  }
  // A valid file without the `activations` tensor.
  test::run_python(R"(
import json, struct
h = json.dumps({"other": {"dtype": "F32", "shape": [1, 3], "data_offsets": [0, 12]}}).encode()
open(")" + dir / "wrong.safetensors" +
                   R"(", "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 12)
)");
  try {
    CachedActivations src(dir / "wrong.safetensors", 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("wrong.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("activations"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CachedActivations(dir / "missing", 0), Error);
  test::TempDir empty;
  EXPECT_THROW(CachedActivations(empty.path(), 0), Error);
}
