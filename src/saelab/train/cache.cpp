// `saelab cache` (cache.h).
#include "saelab/train/cache.h"

#include "saelab/core/error.h"
#include "saelab/log/progress.h"
#include "saelab/train/sources.h"

namespace saelab {

CacheOutcome run_cache(const CacheRequest& a) {
  if (a.config.empty()) fail("cache: expected a run config (CONFIG)");
  CacheOutcome out;
  RunnerConfig& cfg = out.cfg;
  cfg = load_runner_config(a.config, a.sets);
  if (cfg.is_toy()) fail("dataset_path = \"toy\": the toy model needs no cache");
  if (!cfg.cached_activations_path || cfg.cached_activations_path->empty())
    fail("{}: cached_activations_path: the folder to write the cache to is not set", a.config);
  if (a.shard_tokens <= 0)
    fail("--shard-tokens: expected a positive integer, got {}", a.shard_tokens);
  auto store = make_activations_store(cfg);
  CacheInfo info;
  info.model_name = cfg.model_name;
  info.hook_name = cfg.hook_name;
  info.hook_head_index = cfg.hook_head_index;
  info.dataset_path = cfg.dataset_path;
  info.context_size = cfg.context_size;
  info.d_in = cfg.d_in;
  if (cfg.hook_name_out) {
    info.hook_name_out = *cfg.hook_name_out;
    info.d_out = cfg.d_out.value_or(cfg.d_in);
  }
  info.total_tokens = cfg.training_tokens;
  info.shard_tokens = a.shard_tokens;
  std::fprintf(a.messages, "caching %lld tokens of %s -> %s/\n",
               static_cast<long long>(info.total_tokens), store->describe().c_str(),
               cfg.cached_activations_path->c_str());
  std::fflush(a.messages);
  ProgressOptions po;
  po.total_tokens = info.total_tokens;
  po.quiet = a.quiet;
  ConsoleProgress bar(po);
  bool first = true;
  out.result =
      write_activation_cache(*store, *cfg.cached_activations_path, info, [&](int64_t done) {
        if (first) bar.set_start_tokens(done), first = false;
        bar.update(done, {});
      });
  bar.finish(out.result.tokens, {});
  return out;
}

}  // namespace saelab
