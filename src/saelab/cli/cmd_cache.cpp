// `saelab cache`: parses options, runs train/cache.h's run_cache and prints what it wrote.
#include <cstdio>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/train/cache.h"

namespace {
using saelab::json;

struct Args {
  std::string config;
  std::vector<std::string> sets;
  int64_t shard_tokens = 1 << 20;
  bool json_out = false;
};

int run_cache(const Args& a) {
  saelab::CacheRequest req;
  req.config = a.config;
  req.sets = a.sets;
  req.shard_tokens = a.shard_tokens;
  req.quiet = a.json_out;
  req.messages = a.json_out ? stderr : stdout;
  const saelab::CacheOutcome out = saelab::run_cache(req);
  const saelab::RunnerConfig& cfg = out.cfg;
  const auto& r = out.result;
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
