// `saelab cache`: runs a config's model over its dataset and writes the activations at hook_name to
// cached_activations_path (safetensors shards + manifest.json, store/activation_cache.h), so that
// `saelab train` with use_cached_activations = true trains on them without the model. Writes
// training_tokens rows; a killed run resumes where the manifest says.
#include <cstdio>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/log/progress.h"
#include "saelab/store/activation_cache.h"
#include "saelab/train/config.h"
#include "saelab/train/sources.h"

namespace {
using saelab::json;

struct Args {
  std::string config;
  std::vector<std::string> sets;
  int64_t shard_tokens = 1 << 20;
  bool json_out = false;
};

int run_cache(const Args& a) {
  if (a.config.empty()) saelab::fail("cache: expected a run config (CONFIG)");
  saelab::RunnerConfig cfg = saelab::load_runner_config(a.config, a.sets);
  if (cfg.is_toy()) saelab::fail("dataset_path = \"toy\": the toy model needs no cache");
  if (!cfg.cached_activations_path || cfg.cached_activations_path->empty())
    saelab::fail("{}: cached_activations_path: the folder to write the cache to is not set",
                 a.config);
  if (a.shard_tokens <= 0)
    saelab::fail("--shard-tokens: expected a positive integer, got {}", a.shard_tokens);
  auto store = saelab::make_activations_store(cfg);
  saelab::CacheInfo info;
  info.model_name = cfg.model_name;
  info.hook_name = cfg.hook_name;
  info.hook_head_index = cfg.hook_head_index;
  info.dataset_path = cfg.dataset_path;
  info.context_size = cfg.context_size;
  info.d_in = cfg.d_in;
  info.total_tokens = cfg.training_tokens;
  info.shard_tokens = a.shard_tokens;
  std::FILE* msg = a.json_out ? stderr : stdout;
  std::fprintf(msg, "caching %lld tokens of %s -> %s/\n", static_cast<long long>(info.total_tokens),
               store->describe().c_str(), cfg.cached_activations_path->c_str());
  std::fflush(msg);
  saelab::ProgressOptions po;
  po.total_tokens = info.total_tokens;
  po.quiet = a.json_out;
  saelab::ConsoleProgress bar(po);
  bool first = true;
  auto r =
      saelab::write_activation_cache(*store, *cfg.cached_activations_path, info, [&](int64_t done) {
        if (first) bar.set_start_tokens(done), first = false;
        bar.update(done, {});
      });
  bar.finish(r.tokens, {});
  if (a.json_out) {
    std::cout << json{{"path", *cfg.cached_activations_path},
                      {"tokens", r.tokens},
                      {"shards", r.shards},
                      {"resumed_shards", r.resumed_shards},
                      {"d_in", cfg.d_in},
                      {"hook_name", cfg.hook_name}}
                     .dump()
              << std::endl;
  } else {
    std::printf(
        "wrote %lld tokens in %lld shards (%lld found complete from an earlier run) to %s/\n"
        "train on them with: saelab train %s --set use_cached_activations=true\n",
        static_cast<long long>(r.tokens), static_cast<long long>(r.shards),
        static_cast<long long>(r.resumed_shards), cfg.cached_activations_path->c_str(),
        a.config.c_str());
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto a = std::make_shared<Args>();
  sub->add_option("config", a->config,
                  "Run config (.toml or .json) naming model_name, hook_name, dataset_path, "
                  "cached_activations_path and training_tokens")
      ->required();
  sub->add_option("--set", a->sets, "Override a config key: --set training_tokens=1000000")
      ->take_all()
      ->allow_extra_args(false);
  sub->add_option("--shard-tokens", a->shard_tokens, "Rows per shard, at least (default 1048576)");
  sub->add_flag("--json", a->json_out, "Print one JSON object (path, tokens, shards) on stdout");
  sub->footer(
      "Examples:\n"
      "  saelab cache configs/tinystories-1l-mlp-out.toml --set cached_activations_path=cache/ts\n"
      "  saelab train configs/tinystories-1l-mlp-out.toml --set use_cached_activations=true \\\n"
      "      --set cached_activations_path=cache/ts\n"
      "Run it again after an interruption: it resumes after the last complete shard.");
  return [a] { return run_cache(*a); };
};

}  // namespace
SAELAB_COMMAND("cache", "Write a model's activations to disk for training without the model",
               setup);
