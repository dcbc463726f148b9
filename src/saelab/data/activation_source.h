// ActivationSource: where a trainer gets its activation batches when it needs no model of its own
// (the toy model of superposition, cached activation files) and, later, the model pipeline.
// A source is deterministic for its seed and resumable: load_state(state()) on a fresh source of
// the same configuration yields the same batches as the original from that point.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

class ActivationSource {
 public:
  virtual ~ActivationSource() = default;
  virtual int64_t d_in() const = 0;
  // A transcoder's output width (0 for an SAE's source): each row then holds the input activation
  // followed by the output activation of the same token, [d_in + d_out].
  virtual int64_t d_out() const { return 0; }
  // The next n activation rows: [n, d_in + d_out], float32, CPU, contiguous.
  virtual at::Tensor next_batch(int64_t n) = 0;
  // The position in the stream (JSON, stored in checkpoints) and its restoration.
  virtual json state() const = 0;
  virtual void load_state(const json& s) = 0;
  // Ground-truth feature directions [n_features, d_in] with unit rows (toy model only).
  virtual std::optional<at::Tensor> true_features() const { return std::nullopt; }
  // The reader is done with the stream (a sweep whose members on this rank have all ended): a
  // source that other ranks depend on keeps serving them without blocking here. Default: nothing.
  virtual void release() {}
  // One line for logs: "toy model: 512 features in d_in=64, p=0.01 ..." / "cached: 3 shards ...".
  virtual std::string describe() const = 0;
};

}  // namespace saelab
