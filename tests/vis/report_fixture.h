// Real runs for the report tests: a short toy run and a two-member toy sweep, trained by the saelab
// executable once per build of it and shared by the test processes (ctest runs each test in its
// own process). Treat them as read-only: copy one before changing it.
#pragma once
#include <map>
#include <set>
#include <string>

#include "saelab/core/json.h"

namespace saelab::test {

// The toy run's config: 300 steps of 1024 tokens, a log line every 5 steps, density windows of 50
// steps, two checkpoints.
constexpr const char* kToyRunSets =
    "--set training_tokens=307200 --set wandb_log_frequency=5 --set feature_sampling_window=50 "
    "--set n_checkpoints=2";

std::string cached_toy_run();
std::string cached_toy_sweep();  // l1_coefficient = [0.3, 3]

// metrics.jsonl read by the test itself, independently of saelab's reader: per key, the number of
// finite numeric values, and the keys logged as null at least once.
struct JsonlCounts {
  std::map<std::string, int64_t> finite;
  std::set<std::string> nulls;
  int64_t lines = 0;
};
JsonlCounts count_jsonl(const std::string& path);

// A copy of the directory `src` at `dst` (recursive).
void copy_dir(const std::string& src, const std::string& dst);

}  // namespace saelab::test
