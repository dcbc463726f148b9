// Collectives: what data-parallel training needs from the ranks that share one global batch
// (torch.distributed's all-reduce, all-gather and broadcast), as an interface so that the SAE step,
// the activations store and the trainer use it without depending on a process-group library.
// dist/process_group.h implements it over c10d (Gloo, NCCL). Every rank calls the same
// collectives in the same order; each call blocks until every rank has made it.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace saelab {

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every rank ends with the element-wise sum (min) over ranks.
  virtual void sum_(at::Tensor& t) = 0;
  virtual void min_(at::Tensor& t) = 0;
  // A collective started and not yet complete: wait() returns once it is (t holds the result).
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  // Starts the in-place sum of t over ranks and returns at once, so that computation can overlap
  // the communication; t must not be read or written until wait(). Every rank starts the same
  // sums in the same order as its other collectives. By default the sum runs here, blocking.
  virtual std::unique_ptr<Pending> start_sum_(at::Tensor& t);
  // Every rank's t [n_r, ...] (n_r may differ between ranks; the other dimensions and the dtype
  // may not), concatenated in rank order.
  virtual at::Tensor gather_rows(const at::Tensor& t) = 0;
  // In place: every rank ends with root's t (same shape and dtype on every rank).
  virtual void broadcast_(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // A string only root knows (e.g. the run directory it chose), on every rank.
  std::string broadcast_string(const std::string& s, int root);
};

// True when c spans more than one rank (null or world size 1: a single process).
inline bool distributed(const Collectives* c) { return c && c->world_size() > 1; }

}  // namespace saelab
