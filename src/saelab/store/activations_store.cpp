// ActivationsStore (activations_store.h): the producer thread, hook extraction and mixing buffer.
#include "saelab/store/activations_store.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <mutex>
#include <thread>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/model/transformer.h"

namespace saelab {
namespace {

// Python's slice(*args) applied to a length: (start, stop, step) with negatives and clamping.
struct Slice {
  int64_t start, stop, step;
};
Slice python_slice(const std::vector<std::optional<int64_t>>& a, int64_t len) {
  std::optional<int64_t> start, stop, step;
  if (a.size() == 1)
    stop = a[0];
  else if (a.size() == 2)
    start = a[0], stop = a[1];
  else if (a.size() == 3)
    start = a[0], stop = a[1], step = a[2];
  else if (!a.empty())
    fail("seqpos_slice: expected 1 to 3 entries (python slice arguments), got {}", a.size());
  const int64_t st = step.value_or(1);
  if (st <= 0) fail("seqpos_slice: the step must be positive, got {}", st);
  auto norm = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v < 0 ? *v + len : *v;
    return std::min(std::max<int64_t>(x, 0), len);
  };
  Slice s{norm(start, 0), norm(stop, len), st};
  if (s.stop < s.start) s.stop = s.start;
  return s;
}

// The hooks of this store's rows, in column order.
std::vector<std::string> row_hooks(const ActivationsStoreOptions& o) {
  std::vector<std::string> hooks{o.hook_name};
  hooks.insert(hooks.end(), o.more_hook_names.begin(), o.more_hook_names.end());
  if (!o.hook_name_out.empty()) hooks.push_back(o.hook_name_out);
  return hooks;
}

}  // namespace

// Reads windows and turns them into activation rows; used by the producer thread only.
struct ChunkMaker {
  std::shared_ptr<const Transformer> model;
  std::shared_ptr<TokenSource> tokens;
  ActivationsStoreOptions o;
  int64_t windows = 0, epoch_windows = 0;
  std::atomic<int64_t> restarts{0};

  void read(std::vector<int64_t>& w) {
    if (!tokens->next(w)) {
      if (epoch_windows == 0)
        fail("dataset '{}' ({}) holds no complete window of context_size = {} tokens",
             o.dataset_name, tokens->describe(), o.context_size);
      std::cerr << "saelab: warning: dataset '" << o.dataset_name << "' ran out after "
                << epoch_windows << " windows; starting it again\n";
      tokens->restart();
      epoch_windows = 0;
      ++restarts;
      if (!tokens->next(w)) fail("dataset '{}': no window after a restart", o.dataset_name);
    }
    if (int64_t(w.size()) != o.context_size)
      fail("dataset '{}': a window of {} tokens, expected context_size = {}", o.dataset_name,
           w.size(), o.context_size);
    const int64_t vocab = model->cfg().d_vocab;
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] < 0 || w[i] >= vocab)
        fail(
            "dataset '{}' does not match model '{}': token id {} (window {}, position {}) is "
            "outside the model's "
            "vocabulary of {} ids",
            o.dataset_name, o.model_name, w[i], windows, i, vocab);
    ++windows;
    ++epoch_windows;
  }

  void skip(int64_t n) {
    std::vector<int64_t> w;
    for (int64_t i = 0; i < n; ++i) read(w);
  }

  at::Tensor extract(const at::Tensor& act, const at::Tensor& toks) const {
    at::Tensor a = act;
    if (a.dim() == 4) a = o.hook_head_index ? a.select(2, *o.hook_head_index) : a.flatten(2);
    const Slice s = python_slice(o.seqpos_slice, a.size(1));
    a = a.slice(1, s.start, s.stop, s.step);
    at::Tensor t = toks.slice(1, s.start, s.stop, s.step);
    a = a.reshape({-1, a.size(-1)});
    if (!o.exclude_token_ids.empty()) {
      at::Tensor keep = torch::ones({t.numel()}, torch::kBool);
      const at::Tensor flat = t.reshape({-1});
      for (int64_t id : o.exclude_token_ids) keep &= flat.ne(id);
      a = a.index({keep});
    }
    return a.to(at::kFloat).contiguous();
  }

  ActivationChunk make() {
    const int64_t B = o.store_batch_size_prompts, T = o.context_size;
    at::Tensor toks = torch::empty({B, T}, torch::kLong);
    std::vector<int64_t> w;
    for (int64_t b = 0; b < B; ++b) {
      read(w);
      std::memcpy(toks[b].data_ptr<int64_t>(), w.data(), sizeof(int64_t) * size_t(T));
    }
    // Every rank reads every window (the stream position stays the same everywhere) and runs the
    // model on its share; rows are in prompt order, so the ranks' rows in rank order are the
    // rows of all B prompts.
    int64_t lo = 0, hi = B;
    const bool split = distributed(o.exchange.get());
    if (split) {
      const int64_t r = o.exchange->rank(), W = o.exchange->world_size();
      lo = B * r / W;
      hi = B * (r + 1) / W;
    }
    ActivationChunk c;
    at::Tensor mine = toks.slice(0, lo, hi);
    // The hooks of a row, in column order: this rank's, or the whole sweep's when the rows are
    // exchanged (every rank records what any rank needs, in one order).
    const std::vector<std::string> own = row_hooks(o);
    const std::vector<std::string>& hooks =
        split && !o.exchange_hook_names.empty() ? o.exchange_hook_names : own;
    if (hi > lo) {
      auto cache = model->run_with_cache(mine.to(model->device()), hooks);
      std::vector<at::Tensor> blocks;
      for (const auto& h : hooks) blocks.push_back(extract(cache.at(h).to(at::kCPU), mine));
      c.rows = blocks.size() == 1 ? blocks[0] : torch::cat(blocks, 1);
    } else {
      int64_t width = 0;
      for (const auto& h : hooks)
        width +=
            sae_hook_width(model->cfg(), h, h == o.hook_name ? o.hook_head_index : std::nullopt);
      c.rows = torch::empty({0, width}, torch::kFloat);
    }
    if (split) c.rows = o.exchange->gather_rows(c.rows);
    if (hooks != own) {
      // Keep this rank's hooks' blocks (all hooks are d_in wide), in its own order.
      const int64_t d = c.rows.size(1) / int64_t(hooks.size());
      std::vector<at::Tensor> keep;
      for (const auto& h : own) {
        const int64_t at = std::find(hooks.begin(), hooks.end(), h) - hooks.begin();
        keep.push_back(c.rows.narrow(1, at * d, d));
      }
      c.rows = torch::cat(keep, 1);
    }
    c.windows_end = windows;
    return c;
  }
};

struct ActivationsStore::Producer {
  ChunkMaker maker;
  bool background = true;
  size_t cap = 2;
  std::thread th;
  std::mutex m;
  std::condition_variable cv;
  std::deque<ActivationChunk> q;
  std::exception_ptr err;
  bool stopping = false;

  void run() {
    Collectives* shared = distributed(maker.o.exchange.get()) ? maker.o.exchange.get() : nullptr;
    for (;;) {
      bool done = false;
      {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return stopping || q.size() < cap; });
        done = stopping;
      }
      ActivationChunk c;
      try {
        if (shared) {
          // Every rank makes the next chunk unless every rank has stopped reading: -1 from a rank
          // that reads, 0 from one that stopped; the minimum is 0 only when all stopped.
          at::Tensor want = at::full({1}, done ? 0 : -1, at::kLong);
          shared->min_(want);
          if (want.item<int64_t>() == 0) return;
        } else if (done) {
          return;
        }
        c = maker.make();
      } catch (...) {
        std::lock_guard<std::mutex> l(m);
        err = std::current_exception();
        cv.notify_all();
        return;
      }
      if (done) continue;  // made for the other ranks only
      {
        std::lock_guard<std::mutex> l(m);
        q.push_back(std::move(c));
      }
      cv.notify_all();
    }
  }

  // No more pops: the thread stops (shared: once every rank has stopped reading).
  void release() {
    {
      std::lock_guard<std::mutex> l(m);
      stopping = true;
    }
    cv.notify_all();
  }

  ActivationChunk pop() {
    if (!background) return maker.make();
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return !q.empty() || err; });
    if (!q.empty()) {
      ActivationChunk c = std::move(q.front());
      q.pop_front();
      cv.notify_all();
      return c;
    }
    std::exception_ptr e = err;
    l.unlock();
    std::rethrow_exception(e);
  }

  void stop() {
    release();
    if (th.joinable()) th.join();
  }
};

ActivationsStore::ActivationsStore(std::shared_ptr<const Transformer> model,
                                   std::unique_ptr<TokenSource> tokens,
                                   ActivationsStoreOptions opts)
    : model_(std::move(model)), tokens_(std::move(tokens)), o_(std::move(opts)) {
  if (!model_ || !tokens_) fail("activations store: needs a model and a token source");
  d_in_ = sae_hook_width(model_->cfg(), o_.hook_name, o_.hook_head_index);
  if (!o_.hook_name_out.empty()) {
    if (o_.hook_head_index)
      fail("hook_head_index: not supported with an output hook (hook_name_out = '{}')",
           o_.hook_name_out);
    d_out_ = sae_hook_width(model_->cfg(), o_.hook_name_out, std::nullopt);
  }
  // A sweep over hook_name: every hook a row holds, or that is recorded for an exchange, is one
  // more d_in-wide block.
  std::vector<std::string> extra = o_.more_hook_names;
  extra.insert(extra.end(), o_.exchange_hook_names.begin(), o_.exchange_hook_names.end());
  if (!extra.empty()) {
    if (o_.hook_head_index || !o_.hook_name_out.empty())
      fail("a sweep over hook_name takes neither hook_head_index nor hook_name_out");
    for (const auto& h : extra) {
      const int64_t w = sae_hook_width(model_->cfg(), h, std::nullopt);
      if (w != d_in_)
        fail(
            "hook_name = '{}' has width {} but '{}' has width {}; a sweep over hook_name trains "
            "every member on one d_in, so sweep hooks of one width",
            h, w, o_.hook_name, d_in_);
    }
  }
  if (const auto& all = o_.exchange_hook_names; !all.empty())
    for (const auto& h : row_hooks(o_))
      if (std::find(all.begin(), all.end(), h) == all.end())
        fail("activations store: internal: hook {} is not among the exchanged hooks", h);
  if (o_.context_size > model_->cfg().n_ctx)
    fail("context_size = {} is longer than model '{}' allows (n_ctx = {})", o_.context_size,
         o_.model_name, model_->cfg().n_ctx);
  for (auto [v, k] : {std::pair{o_.n_batches_in_buffer, "n_batches_in_buffer"},
                      std::pair{o_.store_batch_size_prompts, "store_batch_size_prompts"},
                      std::pair{o_.train_batch_size_tokens, "train_batch_size_tokens"}})
    if (v <= 0) fail("{}: expected a positive integer, got {}", k, v);
  (void)python_slice(o_.seqpos_slice, o_.context_size);  // validates
  capacity_ = o_.n_batches_in_buffer * o_.store_batch_size_prompts * o_.context_size;
  if (capacity_ < o_.train_batch_size_tokens)
    fail(
        "the mixing buffer (n_batches_in_buffer × store_batch_size_prompts × context_size = {} "
        "tokens) is smaller "
        "than train_batch_size_tokens = {}; raise n_batches_in_buffer",
        capacity_, o_.train_batch_size_tokens);
}

ActivationsStore::~ActivationsStore() { stop(); }

void ActivationsStore::start() {
  if (producer_) return;
  producer_ = std::make_unique<Producer>();
  producer_->maker.model = model_;
  producer_->maker.tokens = tokens_;
  producer_->maker.o = o_;
  producer_->background = o_.background;
  producer_->cap = size_t(std::max(1, o_.queue_chunks));
  // The skip runs here, on the caller's thread, so its errors surface directly.
  producer_->maker.skip(start_windows_);
  if (o_.background) producer_->th = std::thread([p = producer_.get()] { p->run(); });
}

void ActivationsStore::stop() {
  if (!producer_) return;
  producer_->stop();
  producer_.reset();
}

ActivationChunk ActivationsStore::pop() {
  start();
  try {
    ActivationChunk c = producer_->pop();
    windows_consumed_ = c.windows_end;
    return c;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(fmt::format("activations of model '{}' at {} on dataset '{}': {}", o_.model_name,
                            o_.hook_name, o_.dataset_name, e.what()));
  }
}

ActivationChunk ActivationsStore::next_chunk() { return pop(); }

void ActivationsStore::skip_windows(int64_t windows) {
  if (producer_) fail("activations store: skip_windows after reading started");
  start_windows_ = windows;
  windows_consumed_ = windows;
}

void ActivationsStore::release() {
  // Started if it was not (e.g. after a resume, before the first batch), so that a shared store
  // still takes part in the other ranks' exchanges.
  start();
  producer_->release();
}

int64_t ActivationsStore::dataset_restarts() const {
  return producer_ ? producer_->maker.restarts.load() : 0;
}

int64_t ActivationsStore::buffer_numel() const { return buffer_.defined() ? buffer_.numel() : 0; }

void ActivationsStore::refill() {
  std::vector<at::Tensor> parts;
  int64_t count = 0;
  if (buffer_.defined() && buffer_.size(0) > 0) {
    parts.push_back(buffer_);
    count = buffer_.size(0);
  }
  int empty_chunks = 0;
  while (count < capacity_) {
    if (pending_.defined() && pending_.size(0) > 0) {
      const int64_t take = std::min(pending_.size(0), capacity_ - count);
      parts.push_back(pending_.slice(0, 0, take));
      pending_ = pending_.slice(0, take);
      count += take;
      continue;
    }
    pending_ = pop().rows;
    if (pending_.size(0) == 0 && ++empty_chunks > 1000)
      fail(
          "dataset '{}': 1000 batches in a row gave no activations (all positions excluded or "
          "sliced away)",
          o_.dataset_name);
  }
  at::Tensor all = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o_.seed * 1000003ULL + uint64_t(refills_));
  at::Tensor perm = at::randperm(all.size(0), gen, at::TensorOptions().dtype(at::kLong));
  buffer_ = all.index_select(0, perm);
  ++refills_;
  max_numel_ = std::max(max_numel_, buffer_.numel());
}

void ActivationsStore::fill_buffer() {
  if (!buffer_.defined()) refill();
}

at::Tensor ActivationsStore::next_batch(int64_t n) {
  std::vector<at::Tensor> parts;
  int64_t left = n;
  while (left > 0) {
    if (!buffer_.defined() || buffer_.size(0) < std::max<int64_t>(capacity_ / 2, 1)) refill();
    const int64_t take = std::min(left, buffer_.size(0));
    parts.push_back(buffer_.slice(0, 0, take));
    buffer_ = buffer_.slice(0, take);
    left -= take;
  }
  return (parts.size() == 1 ? parts[0].clone() : torch::cat(parts, 0)).contiguous();
}

json ActivationsStore::state() const {
  return json{{"windows", windows_consumed_}, {"refills", refills_}};
}

void ActivationsStore::load_state(const json& s) {
  const int64_t w = get_field<int64_t>(s, "windows", "activations store state");
  const int64_t r = get_field<int64_t>(s, "refills", "activations store state");
  stop();
  tokens_->restart();
  buffer_ = at::Tensor();
  pending_ = at::Tensor();
  refills_ = r;
  start_windows_ = w;
  windows_consumed_ = w;
}

std::string ActivationsStore::describe() const {
  const std::string out =
      o_.hook_name_out.empty() ? "" : fmt::format(" -> {} (d_out={})", o_.hook_name_out, d_out_);
  std::string hooks = o_.hook_name;
  for (const auto& h : o_.more_hook_names) hooks += ", " + h;
  const std::string split =
      distributed(o_.exchange.get())
          ? fmt::format(", the model's work split over {} ranks", o_.exchange->world_size())
          : "";
  return fmt::format("model {} at {}{} on {}: d_in={}, mixing buffer {} tokens{}", o_.model_name,
                     hooks, out, tokens_->describe(), d_in_, capacity_, split);
}

}  // namespace saelab
