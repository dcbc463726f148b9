// ActivationsStore on a tiny random GPT-2 built from canonical weights: the mixing buffer mixes
// prompts, stays within its configured size, is deterministic for a seed (with or without the
// background thread), applies hook_head_index / seqpos_slice / special-token exclusion, restarts
// an exhausted dataset, resumes its dataset position, and reports dataset/model mismatches.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "model/test_transformer_models.h"
#include "saelab/core/error.h"
#include "saelab/data/token_source.h"
#include "saelab/store/activations_store.h"

namespace {
using namespace saelab;

// A fixed list of windows.
class VecSource : public TokenSource {
 public:
  explicit VecSource(std::vector<std::vector<int64_t>> w) : w_(std::move(w)) {}
  bool next(std::vector<int64_t>& out) override {
    if (i_ >= w_.size()) return false;
    out = w_[i_++];
    return true;
  }
  void restart() override { i_ = 0; }
  std::string describe() const override { return "test windows"; }

 private:
  std::vector<std::vector<int64_t>> w_;
  size_t i_ = 0;
};

const int64_t kCtx = 8;

// Window k holds ids 1 + (8k + p) % 48: the prompt (mod 6) and the position are recoverable.
std::vector<std::vector<int64_t>> tagged_windows(int64_t n) {
  std::vector<std::vector<int64_t>> w(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k)
    for (int64_t p = 0; p < kCtx; ++p) w[size_t(k)].push_back(1 + (8 * k + p) % 48);
  return w;
}

std::shared_ptr<const Transformer> tiny_model() {
  static auto m = [] {
    auto c = test::tiny_gpt2();
    return std::make_shared<const Transformer>(c, test::tiny_weights(c, 11));
  }();
  return m;
}

ActivationsStoreOptions opts(const std::string& hook = "hook_embed") {
  ActivationsStoreOptions o;
  o.model_name = "tiny-gpt2";
  o.dataset_name = "test windows";
  o.hook_name = hook;
  o.context_size = kCtx;
  o.n_batches_in_buffer = 4;
  o.store_batch_size_prompts = 4;
  o.train_batch_size_tokens = 16;
  o.seed = 5;
  return o;
}

std::unique_ptr<ActivationsStore> make_store(ActivationsStoreOptions o, int64_t n_windows = 600) {
  return std::make_unique<ActivationsStore>(
      tiny_model(), std::make_unique<VecSource>(tagged_windows(n_windows)), o);
}

// Token id of each hook_embed row: the W_E row it equals.
std::vector<int64_t> ids_of(const at::Tensor& rows) {
  const at::Tensor W_E = tiny_model()->weight("embed.W_E");
  at::Tensor d = torch::cdist(rows.to(at::kDouble), W_E.to(at::kDouble));
  at::Tensor best = d.argmin(1);
  EXPECT_LT(std::get<0>(d.min(1)).max().item<double>(), 1e-4);
  std::vector<int64_t> out(size_t(rows.size(0)));
  for (int64_t i = 0; i < rows.size(0); ++i) out[size_t(i)] = best[i].item<int64_t>();
  return out;
}

TEST(ActivationsStore, MixingBufferMixesPrompts) {
  at::set_num_threads(1);
  auto s = make_store(opts());
  ASSERT_EQ(s->d_in(), 16);
  int64_t adjacent = 0, pairs = 0;
  for (int b = 0; b < 12; ++b) {
    at::Tensor x = s->next_batch(16);
    ASSERT_EQ(x.sizes().vec(), (std::vector<int64_t>{16, 16}));
    auto ids = ids_of(x);
    std::set<int64_t> prompts;  // prompt (mod 6) of each row: (id - 1) / 8
    for (size_t i = 0; i < ids.size(); ++i) {
      prompts.insert((ids[i] - 1) / 8);
      if (i + 1 < ids.size()) {
        ++pairs;
        adjacent += ids[i + 1] == ids[i] + 1 && (ids[i] - 1) / 8 == (ids[i + 1] - 1) / 8;
      }
    }
    // Unshuffled, a batch of 16 rows would hold 2 prompts; mixed, it spans most of them.
    EXPECT_GE(prompts.size(), 4u) << "batch " << b;
  }
  // Unshuffled, 14 of 15 neighbours in a batch would be adjacent positions of one prompt.
  EXPECT_LT(double(adjacent) / double(pairs), 0.15);
}

TEST(ActivationsStore, MemoryStaysWithinTheConfiguredBuffer) {
  auto o = opts();
  auto s = make_store(o);
  const int64_t tokens =
      4 * 4 * kCtx;  // n_batches_in_buffer × store_batch_size_prompts × context_size
  EXPECT_EQ(s->buffer_capacity_tokens(), tokens);
  for (int b = 0; b < 40; ++b) {
    s->next_batch(16);
    EXPECT_LE(s->buffer_numel(), tokens * 16);
  }
  EXPECT_LE(s->max_buffer_numel(), tokens * 16);
  EXPECT_EQ(s->max_buffer_numel(), tokens * 16);  // it does fill up
  // A request larger than the buffer is served in pieces without growing it.
  at::Tensor big = s->next_batch(3 * tokens);
  EXPECT_EQ(big.size(0), 3 * tokens);
  EXPECT_LE(s->max_buffer_numel(), tokens * 16);
  o.n_batches_in_buffer = 0;
  EXPECT_THROW(make_store(o), Error);
  o.n_batches_in_buffer = 1;
  o.train_batch_size_tokens = 4 * kCtx + 1;
  EXPECT_THROW(make_store(o), Error);
}

TEST(ActivationsStore, DeterministicForASeedWithOrWithoutTheThread) {
  auto a = make_store(opts()), b = make_store(opts());
  auto o = opts();
  o.background = false;
  auto c = make_store(o);
  o.background = true;
  o.seed = 6;
  auto d = make_store(o);
  bool differs = false;
  for (int i = 0; i < 20; ++i) {
    at::Tensor xa = a->next_batch(16), xb = b->next_batch(16), xc = c->next_batch(16),
               xd = d->next_batch(16);
    EXPECT_TRUE(torch::equal(xa, xb)) << "batch " << i;
    EXPECT_TRUE(torch::equal(xa, xc)) << "batch " << i;
    differs |= !torch::equal(xa, xd);
  }
  EXPECT_TRUE(differs);
}

TEST(ActivationsStore, HookZHeadsSliceAndExclusion) {
  const std::string z = "blocks.0.attn.hook_z";
  auto windows = tagged_windows(4);
  at::Tensor toks = torch::empty({4, kCtx}, torch::kLong);
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t p = 0; p < kCtx; ++p) toks[k][p] = windows[size_t(k)][size_t(p)];
  at::Tensor ref = tiny_model()->run_with_cache(toks, {z}).at(z);  // [4, 8, 4 heads, 4]

  auto o = opts(z);
  auto s =
      std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(windows), o);
  EXPECT_EQ(s->d_in(), 16);  // n_heads × d_head, flattened
  auto c = s->next_chunk();
  EXPECT_EQ(c.windows_end, 4);
  EXPECT_TRUE(torch::allclose(c.rows, ref.reshape({32, 16}), 1e-5, 1e-6));

  o.hook_head_index = 1;
  o.seqpos_slice = {int64_t(1), int64_t(-2)};  // positions 1..5
  o.exclude_token_ids = {windows[0][3], windows[1][4]};
  s = std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(windows), o);
  EXPECT_EQ(s->d_in(), 4);
  c = s->next_chunk();
  std::vector<at::Tensor> expect;
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t p = 1; p < kCtx - 2; ++p) {
      const int64_t id = windows[size_t(k)][size_t(p)];
      if (id == windows[0][3] || id == windows[1][4]) continue;
      expect.push_back(ref[k][p][1]);
    }
  ASSERT_EQ(c.rows.size(0), int64_t(expect.size()));
  EXPECT_EQ(c.rows.size(0), 4 * 5 - 2);
  EXPECT_TRUE(torch::allclose(c.rows, torch::stack(expect), 1e-5, 1e-6));

  o.hook_head_index = 4;
  EXPECT_THROW(
      std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(windows), o),
      Error);
  auto bad = opts("blocks.0.hook_mlp_out");
  bad.hook_head_index = 0;
  EXPECT_THROW(
      std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(windows), bad),
      Error);
  EXPECT_THROW(
      std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(windows),
                                         opts("blocks.9.hook_mlp_out")),
      Error);
}

TEST(ActivationsStore, RestartsAnExhaustedDataset) {
  auto s = make_store(opts(), 6);  // 6 windows; each buffer needs 16
  testing::internal::CaptureStderr();
  for (int i = 0; i < 10; ++i) s->next_batch(16);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_GT(s->dataset_restarts(), 0);
  EXPECT_NE(err.find("ran out after 6 windows"), std::string::npos) << err;
  auto empty = std::make_unique<ActivationsStore>(
      tiny_model(), std::make_unique<VecSource>(tagged_windows(0)), opts());
  EXPECT_THROW(empty->next_batch(16), Error);
}

TEST(ActivationsStore, TokenOutOfVocabularyIsAnErrorFromTheThread) {
  auto w = tagged_windows(40);
  w[21][5] = 50;  // the tiny model's vocabulary is 0..49
  auto s = std::make_unique<ActivationsStore>(tiny_model(), std::make_unique<VecSource>(w), opts());
  std::string msg;
  try {
    for (int i = 0; i < 20; ++i) s->next_batch(16);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("test windows"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tiny-gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("token id 50"), std::string::npos) << msg;
}

TEST(ActivationsStore, ResumesTheDatasetPosition) {
  auto a = make_store(opts());
  for (int i = 0; i < 3; ++i) a->next_chunk();
  json st = a->state();
  EXPECT_EQ(st["windows"].get<int64_t>(), 12);
  auto b = make_store(opts());
  b->next_chunk();  // some progress that load_state must discard
  b->load_state(st);
  auto ca = a->next_chunk(), cb = b->next_chunk();
  EXPECT_EQ(ca.windows_end, 16);
  EXPECT_EQ(cb.windows_end, 16);
  EXPECT_TRUE(torch::equal(ca.rows, cb.rows));
  // Batches after a resume come from the windows after the saved position.
  auto c = make_store(opts());
  c->load_state(json{{"windows", 400}, {"refills", 0}});
  auto ids = ids_of(c->next_batch(16));
  for (int64_t id : ids) EXPECT_GE(id, 1);
  EXPECT_GE(c->windows_read(), 400 + 16);
}

}  // namespace
