// PrefetchSource: reads an ActivationSource's next batches on a background thread, so that reading
// a batch (cached shards: page faults, row gathers, dtype conversion) overlaps the training step.
//
// What the consumer sees is exactly the wrapped source's sequence: the same batches in the same
// order, the same state() at every point (the position of the first batch not yet handed out, not
// of the reader's), and the same errors at the same batch. The queue holds at most `depth`
// batches of the size last asked for. A request of another size, or load_state, drops what was
// read ahead and puts the wrapped source back where the consumer is (a run asks for a larger
// initialisation sample once, then one size). Destruction stops the reader after the batch it is
// reading, if any.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "saelab/data/activation_source.h"

namespace saelab {

class PrefetchSource : public ActivationSource {
 public:
  explicit PrefetchSource(std::unique_ptr<ActivationSource> inner, int depth = 2);
  ~PrefetchSource() override;

  int64_t d_in() const override { return inner_->d_in(); }
  int64_t d_out() const override { return inner_->d_out(); }
  at::Tensor next_batch(int64_t n) override;
  json state() const override;
  void load_state(const json& s) override;
  std::optional<at::Tensor> true_features() const override { return inner_->true_features(); }
  std::string describe() const override { return inner_->describe(); }

  // Batches read ahead and not yet handed out (tests: the reader really is ahead).
  int64_t ahead() const;

 private:
  struct Item {
    json state;  // the wrapped source's state before this batch
    at::Tensor batch;
    std::exception_ptr error;
  };
  void run();
  // With the lock held: waits for the reader to finish its batch, stops it and drops the queue.
  // Returns the consumer's position when batches were dropped (the wrapped source is past it),
  // else null (the wrapped source is at it).
  json pause_and_drop(std::unique_lock<std::mutex>& lock);

  std::unique_ptr<ActivationSource> inner_;
  const size_t depth_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool active_ = false;   // the reader may read ahead
  bool reading_ = false;  // the reader is inside inner_->next_batch
  json reading_state_;    // the state before the batch being read
  bool stop_ = false;
  int64_t n_ = 0;  // the batch size read ahead (that of the consumer's last request)
  std::thread thread_;
};

}  // namespace saelab
