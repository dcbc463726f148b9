// The activation cache (`saelab cache`): a model's activations written to cached_activations_path
// as safetensors shards (tensor `activations` [rows, d_in], float32, and for a transcoder
// `activations_out` [rows, d_out] from hook_name_out, row for row) plus manifest.json. Shards
// hold the store's unshuffled stream in dataset order (as SAELens's cache runner does); the cached
// reader (data/cached_activations.h) shuffles shard order and rows per epoch when training.
// Each shard is written atomically and then the manifest; a killed run resumes after the last
// shard the manifest lists (the store skips the windows those shards came from).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "saelab/core/json.h"

namespace saelab {

class ActivationsStore;

struct CacheInfo {
  std::string model_name, hook_name, dataset_path;
  int64_t context_size = 0;
  int64_t d_in = 0;
  std::optional<int64_t> hook_head_index;
  std::string hook_name_out;  // a transcoder's output hook ("" for an SAE), of width d_out
  int64_t d_out = 0;
  int64_t total_tokens = 0;        // rows to write (training_tokens)
  int64_t shard_tokens = 1 << 20;  // rows per shard, at least (the last may be shorter)
};

struct CacheResult {
  int64_t tokens = 0;
  int64_t shards = 0;
  int64_t resumed_shards = 0;  // shards found complete from an earlier run
};

// Writes (or finishes) the cache in `dir`. progress(tokens_done) is called after each chunk.
// A manifest written for another model / hook / dataset / context_size / d_in / token count is an
// error naming the field, as is a listed shard that is missing or of the wrong shape.
CacheResult write_activation_cache(ActivationsStore& store, const std::string& dir,
                                   const CacheInfo& info,
                                   const std::function<void(int64_t)>& progress = nullptr);

// For training on a cache: when `dir` holds manifest.json, checks that the run is complete and
// that every shard exists with [rows, d_in] as listed, and that no unlisted shard is present.
// Errors name the shard. A folder without a manifest is left to the reader's own checks.
void check_activation_cache(const std::string& dir, int64_t d_in, const std::string& hook_name,
                            int64_t d_out = 0, const std::string& hook_name_out = "");

}  // namespace saelab
