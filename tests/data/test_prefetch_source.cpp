// PrefetchSource against the source it wraps, read without a thread: the same batches, the same
// state() at every point while the reader is ahead, resumable from those states, errors at the
// same batch, and a prompt stop while a batch is being read.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "data/cached_shards.h"
#include "saelab/core/error.h"
#include "saelab/data/cached_activations.h"
#include "saelab/data/prefetch_source.h"
#include "test_util.h"

using namespace saelab;
using Clock = std::chrono::steady_clock;

namespace {

// Shards in three dtypes (F32 rows are gathered by memcpy, the others converted by ATen), 37 rows.
const char* kShards =
    R"([("a.safetensors", 11, "F16", 3), ("b.safetensors", 13, "F32", 3), ("c.safetensors", 13, "F64", 3)])";

// Waits until the reader holds `count` batches the consumer has not taken yet.
void wait_ahead(const PrefetchSource& p, int64_t count) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (p.ahead() < count && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_GE(p.ahead(), count) << "the reader did not read ahead";
}

TEST(PrefetchSource, SameBatchesAndStatesAsTheSourceItWraps) {
  test::TempDir dir;
  test::write_shards(dir / "cache", kShards);
  CachedActivations plain(dir / "cache", 11);
  PrefetchSource pre(std::make_unique<CachedActivations>(dir / "cache", 11), 2);
  EXPECT_EQ(pre.d_in(), 3);
  testing::internal::CaptureStderr();  // the epoch warnings
  // An initialisation sample, steps (over several epochs), a size change and back.
  const std::vector<int64_t> sizes{16, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 3, 3, 3, 5, 5, 5};
  int64_t read_ahead_seen = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    // Once reading ahead, let the reader fill its queue so that state() must not be its position.
    if (i >= 3 && sizes[i] == sizes[i - 1] && sizes[i - 1] == sizes[i - 2]) {
      wait_ahead(pre, 2);
      ++read_ahead_seen;
    }
    ASSERT_EQ(pre.state(), plain.state()) << "before request " << i;
    at::Tensor want = plain.next_batch(sizes[i]);
    at::Tensor got = pre.next_batch(sizes[i]);
    ASSERT_EQ(got.sizes(), want.sizes()) << "request " << i;
    ASSERT_TRUE(got.equal(want)) << "request " << i;
  }
  EXPECT_EQ(pre.state(), plain.state());
  testing::internal::GetCapturedStderr();
  EXPECT_GT(read_ahead_seen, 0);
}

TEST(PrefetchSource, StatesTakenWhileReadingAheadResumeExactly) {
  test::TempDir dir;
  test::write_shards(dir / "cache", kShards);
  testing::internal::CaptureStderr();
  PrefetchSource pre(std::make_unique<CachedActivations>(dir / "cache", 4), 3);
  for (int i = 0; i < 4; ++i) pre.next_batch(6);
  wait_ahead(pre, 3);  // three batches ahead of the consumer
  const json s = pre.state();
  std::vector<at::Tensor> want;
  for (int i = 0; i < 5; ++i) want.push_back(pre.next_batch(6));
  // A fresh source resumed from that state (what --resume does with a checkpoint)...
  CachedActivations fresh(dir / "cache", 4);
  fresh.load_state(s);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(fresh.next_batch(6).equal(want[size_t(i)])) << i;
  // ...and the prefetching source itself, rewound while its reader is ahead.
  wait_ahead(pre, 1);
  pre.load_state(s);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(pre.next_batch(6).equal(want[size_t(i)])) << i;
  testing::internal::GetCapturedStderr();
}

// Batch i is filled with i; the `fail_at`-th batch throws; each read takes `delay`.
class CountingSource : public ActivationSource {
 public:
  CountingSource(int64_t fail_at, std::chrono::milliseconds delay)
      : fail_at_(fail_at), delay_(delay) {}
  int64_t d_in() const override { return 2; }
  at::Tensor next_batch(int64_t n) override {
    std::this_thread::sleep_for(delay_);
    ++i_;
    if (i_ == fail_at_) fail("batch {} is unreadable", i_);
    return at::full({n, 2}, double(i_), at::kFloat);
  }
  json state() const override { return {{"i", i_}}; }
  void load_state(const json& s) override { i_ = s.at("i").get<int64_t>(); }
  std::string describe() const override { return "counting"; }

 private:
  int64_t i_ = 0;
  int64_t fail_at_;
  std::chrono::milliseconds delay_;
};

TEST(PrefetchSource, AnErrorArrivesAtTheSameBatch) {
  PrefetchSource pre(std::make_unique<CountingSource>(5, std::chrono::milliseconds(0)), 2);
  for (int i = 1; i <= 4; ++i) {
    at::Tensor b = pre.next_batch(3);
    EXPECT_EQ(b[0][0].item<float>(), float(i));
  }
  wait_ahead(pre, 1);  // the reader has met the bad batch before the consumer asks for it
  EXPECT_EQ(pre.state(), json({{"i", 4}}));
  try {
    pre.next_batch(3);
    FAIL() << "the error was lost";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "batch 5 is unreadable");
  }
  // Asked again, it reads on from where the wrapped source is, as without read-ahead.
  EXPECT_EQ(pre.next_batch(3)[0][0].item<float>(), 6.0f);
}

TEST(PrefetchSource, StopsAfterTheBatchItIsReading) {
  const auto delay = std::chrono::milliseconds(300);
  auto t0 = Clock::now();
  {
    PrefetchSource pre(std::make_unique<CountingSource>(0, delay), 4);
    pre.next_batch(2);
    pre.next_batch(2);  // the reader is now reading batch 3, with 4 queue slots free
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  // Two direct reads (0.6 s), then the destructor waits for at most the batch being read.
  EXPECT_LT(s, 0.6 + 0.3 + 0.25) << "the reader did not stop after its current batch";
}

}  // namespace
