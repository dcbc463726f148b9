// `saelab cache`: runs a config's model over its dataset and writes the activations at hook_name to
// cached_activations_path (safetensors shards + manifest.json, store/activation_cache.h), so that
// `saelab train` with use_cached_activations = true trains on them without the model. Writes
// training_tokens rows; a killed run resumes where the manifest says.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/store/activation_cache.h"

namespace saelab {

struct CacheRequest {
  std::string config;  // .toml or .json
  std::vector<std::string> sets;
  int64_t shard_tokens = 1 << 20;
  bool quiet = false;            // progress on stderr
  std::FILE* messages = stdout;  // "caching N tokens of ... -> DIR/"
};

struct CacheOutcome {
  RunnerConfig cfg;
  CacheResult result;
};

CacheOutcome run_cache(const CacheRequest& request);

}  // namespace saelab
