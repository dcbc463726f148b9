// Cached activations (use_cached_activations): a safetensors file holding `activations` [N, d_in],
// or a folder of such shards (*.safetensors, sorted by name). Each epoch visits the shards in a
// seeded shuffled order and each shard's rows in a seeded shuffled order, so every row is seen
// exactly once per epoch; at most one shard is memory-mapped at any time (a batch that straddles a
// boundary copies its rows out of one shard before the next is mapped). Any float dtype is
// converted to float32. When the data runs out a new epoch starts, with a warning on stderr.
// A transcoder's cache also holds `activations_out` [N, d_out], the output hook's activations of
// the same tokens; read with outputs = true, each row is then [activations | activations_out].
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "saelab/data/activation_source.h"

namespace saelab {

class SafetensorsFile;

class CachedActivations : public ActivationSource {
 public:
  // Opens every shard's header to check it (tensor `activations`, 2-D, float dtype, same d_in);
  // a missing path, an empty folder, a corrupt shard or a d_in mismatch throws saelab::Error naming
  // the file. expected_d_in > 0 also checks the shards against the run's d_in.
  // outputs: read `activations_out` too (checked against expected_d_out when > 0).
  CachedActivations(const std::string& path, uint64_t seed, int64_t expected_d_in = 0,
                    bool outputs = false, int64_t expected_d_out = 0);
  ~CachedActivations() override;

  int64_t d_in() const override { return d_in_; }
  int64_t d_out() const override { return d_out_; }
  at::Tensor next_batch(int64_t n) override;
  json state() const override;
  void load_state(const json& s) override;
  std::string describe() const override;

  int64_t num_rows() const { return total_rows_; }
  int64_t epoch() const { return epoch_; }
  const std::vector<std::string>& shard_paths() const { return shards_; }
  // How many shards are memory-mapped now (≤ 1), and the most ever at once.
  int max_open_shards() const { return max_open_; }

 private:
  struct Open;  // a mapped shard with its row permutation
  std::vector<int64_t> shard_order(int64_t epoch) const;
  void open_current();
  at::Tensor take_rows(int64_t n);  // from the current shard, n ≤ rows left in it

  std::vector<std::string> shards_;
  std::vector<int64_t> rows_;  // rows per shard
  int64_t d_in_ = 0;
  int64_t d_out_ = 0;
  bool outputs_ = false;
  int64_t total_rows_ = 0;
  uint64_t seed_ = 0;
  // Position: epoch, index into that epoch's shard order, row within the shard's permutation.
  int64_t epoch_ = 0;
  int64_t order_pos_ = 0;
  int64_t row_pos_ = 0;
  std::vector<int64_t> order_;
  std::unique_ptr<Open> current_;
  int open_count_ = 0;
  int max_open_ = 0;
};

}  // namespace saelab
