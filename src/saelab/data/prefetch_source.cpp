// The read-ahead thread over an ActivationSource (prefetch_source.h). The wrapped source is only
// ever touched by one thread at a time: the reader while `reading_`, otherwise the consumer with
// the lock held.
#include "saelab/data/prefetch_source.h"

#include <ATen/core/grad_mode.h>

#include <utility>

#include "saelab/core/error.h"

namespace saelab {

PrefetchSource::PrefetchSource(std::unique_ptr<ActivationSource> inner, int depth)
    : inner_(std::move(inner)), depth_(size_t(depth < 1 ? 1 : depth)) {
  if (!inner_) fail("prefetch: no activation source to read ahead");
  thread_ = std::thread([this] { run(); });
}

PrefetchSource::~PrefetchSource() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PrefetchSource::run() {
  at::NoGradGuard no_grad;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || (active_ && queue_.size() < depth_); });
    if (stop_) return;
    Item it;
    const int64_t n = n_;
    try {
      it.state = inner_->state();
    } catch (...) {
      it.error = std::current_exception();
    }
    reading_state_ = it.state;
    reading_ = true;
    lock.unlock();
    if (!it.error) try {
        it.batch = inner_->next_batch(n);
      } catch (...) {
        it.error = std::current_exception();
      }
    lock.lock();
    reading_ = false;
    // After an error the reader stops: the consumer gets it at the same batch as it would have
    // without read-ahead, and the run ends there.
    if (it.error) active_ = false;
    queue_.push_back(std::move(it));
    cv_.notify_all();
  }
}

json PrefetchSource::pause_and_drop(std::unique_lock<std::mutex>& lock) {
  active_ = false;
  cv_.wait(lock, [&] { return !reading_; });
  if (queue_.empty()) return json();
  json s = std::move(queue_.front().state);
  queue_.clear();
  return s;
}

at::Tensor PrefetchSource::next_batch(int64_t n) {
  std::unique_lock<std::mutex> lock(mu_);
  if (n != n_) {
    // A new batch size: read this one directly, then read ahead at this size (a run asks for one
    // size from its first step on; a larger initialisation sample comes before).
    if (const json at = pause_and_drop(lock); !at.is_null()) inner_->load_state(at);
    at::Tensor b = inner_->next_batch(n);
    n_ = n;
    active_ = true;
    cv_.notify_all();
    return b;
  }
  if (!active_ && queue_.empty()) {
    active_ = true;
    cv_.notify_all();
  }
  cv_.wait(lock, [&] { return !queue_.empty(); });
  Item it = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();
  if (it.error) std::rethrow_exception(it.error);
  return it.batch;
}

json PrefetchSource::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!queue_.empty()) return queue_.front().state;
  if (reading_) return reading_state_;
  return inner_->state();
}

void PrefetchSource::load_state(const json& s) {
  std::unique_lock<std::mutex> lock(mu_);
  pause_and_drop(lock);
  inner_->load_state(s);
  n_ = 0;
}

int64_t PrefetchSource::ahead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int64_t(queue_.size());
}

}  // namespace saelab
