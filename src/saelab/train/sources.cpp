// RunnerConfig -> ActivationSource: the toy model, cached activations, or a model's activations.
#include "saelab/train/sources.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/data/cached_activations.h"
#include "saelab/data/prefetch_source.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"
#include "saelab/eval/evaluator.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/training_sae.h"
#include "saelab/store/activation_cache.h"

namespace saelab {

ToyModelConfig toy_model_config(const RunnerConfig& cfg) {
  ToyModelConfig t;
  t.d_in = cfg.d_in;
  t.n_features = cfg.toy_n_features;
  t.feature_probability = cfg.toy_feature_probability;
  t.probability_power_law = cfg.toy_probability_power_law;
  t.magnitude_mean = cfg.toy_magnitude_mean;
  t.magnitude_std = cfg.toy_magnitude_std;
  t.correlated_groups = cfg.toy_correlated_groups;
  t.group_size = cfg.toy_group_size;
  t.feature_seed = uint64_t(cfg.toy_seed);
  t.stream_seed = uint64_t(cfg.seed);
  return t;
}

namespace {

std::vector<int64_t> excluded_ids(const json& ex, const Tokenizer* tok) {
  std::vector<int64_t> ids;
  if (ex.is_boolean()) {
    if (ex.get<bool>() && tok)
      for (auto id : {tok->bos_token_id(), tok->eos_token_id(), tok->pad_token_id()})
        if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
    return ids;
  }
  if (ex.is_array()) {
    for (const auto& v : ex) {
      if (!v.is_number_integer())
        fail("exclude_special_tokens: expected true/false or a list of token ids, got {}",
             ex.dump());
      ids.push_back(v.get<int64_t>());
    }
    return ids;
  }
  fail("exclude_special_tokens: expected true/false or a list of token ids, got {}", ex.dump());
}

}  // namespace

std::unique_ptr<ActivationsStore> make_activations_store(
    const RunnerConfig& cfg, bool background, std::shared_ptr<Collectives> exchange,
    const std::vector<std::string>& more_hook_names,
    const std::vector<std::string>& exchange_hook_names) {
  const json kw = cfg.model_from_pretrained_kwargs.is_null() ? json::object()
                                                             : cfg.model_from_pretrained_kwargs;
  LoadedModel lm = load_model(cfg.model_name, kw);
  // device = "cuda": the model's forward runs on the GPU; the store's mixing buffer stays in host
  // memory.
  if (const at::Device device = training_device(cfg.device); !device.is_cpu()) lm.model->to(device);
  std::shared_ptr<const Transformer> model(lm.model.release());
  std::shared_ptr<const Tokenizer> tok;
  if (cfg.dataset_path != "othello" && !lm.dir.empty()) {
    // Pretokenized data needs no tokenizer; raw text reports its absence when it is read.
    tok = load_tokenizer_if_present(lm.dir);
  }
  if (cfg.exclude_special_tokens.is_boolean() && cfg.exclude_special_tokens.get<bool>() && !tok &&
      cfg.dataset_path != "othello")
    fail(
        "exclude_special_tokens = true needs the tokenizer of model '{}' (none found in {}); list "
        "the ids instead",
        cfg.model_name, lm.dir);

  TokenSourceOptions to;
  to.dataset_path = cfg.dataset_path;
  to.context_size = cfg.context_size;
  to.prepend_bos = cfg.prepend_bos;
  to.disable_concat_sequences = cfg.disable_concat_sequences;
  to.dataset_column = cfg.dataset_column;
  to.dataset_revision = cfg.dataset_revision;
  to.dataset_split = cfg.dataset_split;
  to.seed = uint64_t(cfg.seed);
  if (tok) {
    to.tokenizer = tok;
    to.bos_id = tok->bos_token_id();
    to.separator_id = resolve_separator_token(cfg.sequence_separator_token, tok->bos_token_id(),
                                              tok->eos_token_id(), tok->token_to_id("[SEP]"));
  }

  ActivationsStoreOptions so;
  so.model_name = cfg.model_name;
  so.dataset_name = cfg.dataset_path;
  so.hook_name = cfg.hook_name;
  so.hook_head_index = cfg.hook_head_index;
  so.hook_name_out = cfg.hook_name_out.value_or("");
  so.more_hook_names = more_hook_names;
  so.exchange_hook_names = exchange_hook_names;
  so.exchange = std::move(exchange);
  so.context_size = cfg.context_size;
  so.seqpos_slice = cfg.seqpos_slice;
  so.exclude_token_ids = excluded_ids(cfg.exclude_special_tokens, tok.get());
  so.n_batches_in_buffer = cfg.n_batches_in_buffer;
  so.store_batch_size_prompts = cfg.store_batch_size_prompts;
  so.train_batch_size_tokens = cfg.train_batch_size_tokens;
  so.seed = uint64_t(cfg.seed);
  so.background = background;
  so.token_source = to;

  // The store checks the hook and finds its width before any data is read.
  auto store = std::make_unique<ActivationsStore>(model, open_token_source(to), so);
  if (store->d_in() != cfg.d_in)
    fail("d_in = {} but {}{} of model '{}' has width {}; set d_in = {}", cfg.d_in, cfg.hook_name,
         cfg.hook_head_index ? fmt::format(" (head {})", *cfg.hook_head_index) : std::string(),
         cfg.model_name, store->d_in(), store->d_in());
  if (cfg.hook_name_out && store->d_out() != cfg.d_out.value_or(cfg.d_in))
    fail("d_out = {} but hook_name_out {} of model '{}' has width {}; set d_out = {}",
         cfg.d_out.value_or(cfg.d_in), *cfg.hook_name_out, cfg.model_name, store->d_out(),
         store->d_out());
  return store;
}

std::unique_ptr<ActivationSource> make_activation_source(
    const RunnerConfig& cfg, std::shared_ptr<Collectives> exchange,
    const std::vector<std::string>& more_hook_names,
    const std::vector<std::string>& exchange_hook_names) {
  if (!more_hook_names.empty() && (cfg.use_cached_activations || cfg.is_toy()))
    fail("several hooks need a model source, not {}",
         cfg.is_toy() ? "the toy model" : "cached activations");
  if (cfg.use_cached_activations) {
    if (!cfg.cached_activations_path || cfg.cached_activations_path->empty())
      fail("use_cached_activations = true needs cached_activations_path");
    const int64_t d_out = cfg.hook_name_out ? cfg.d_out.value_or(cfg.d_in) : 0;
    check_activation_cache(*cfg.cached_activations_path, cfg.d_in, cfg.hook_name, d_out,
                           cfg.hook_name_out.value_or(""));
    // Read ahead on a thread, so reading the next batch overlaps the step.
    return std::make_unique<PrefetchSource>(std::make_unique<CachedActivations>(
        *cfg.cached_activations_path, uint64_t(cfg.seed), cfg.d_in, d_out > 0, d_out));
  }
  if (cfg.is_toy()) return std::make_unique<ToyModel>(toy_model_config(cfg));
  // On the CPU the model's forward and the SAE step share the same cores, each using all of them:
  // on a thread of its own the forward only contends with the step (two OpenMP teams on two
  // cores). Measured with a GPT-2-small-shaped model and a standard SAE of 6144 latents, training
  // ran at 0.76-0.78 of 1 / (t_forward + t_step) that way and at 1.01-1.02 with the forward on the
  // trainer's thread (topk: 0.94-0.95 and 0.93-0.99). A forward on a GPU, or one whose work is
  // shared with other ranks (its collectives run on the producer thread), keeps its thread.
  const bool background = !training_device(cfg.device).is_cpu() || distributed(exchange.get());
  auto store = make_activations_store(cfg, background, std::move(exchange), more_hook_names,
                                      exchange_hook_names);
  store->fill_buffer();
  return store;
}

int64_t model_eval_skip_windows(const RunnerConfig& cfg) {
  const int64_t ctx = std::max<int64_t>(cfg.context_size, 1);
  const int64_t tokens = cfg.training_tokens + std::max<int64_t>(cfg.train_batch_size_tokens, 8192);
  return (tokens + ctx - 1) / ctx + cfg.n_batches_in_buffer * cfg.store_batch_size_prompts;
}

namespace {

// The held-out eval prompts (see make_model_eval): [rows, ctx] int64 batches.
std::vector<at::Tensor> read_eval_batches(const RunnerConfig& cfg, TokenSourceOptions to,
                                          int64_t n_batches, int64_t prompts) {
  const int64_t ctx = cfg.context_size;
  if (to.dataset_path == "othello") to.seed = uint64_t(cfg.seed) + 1;
  auto src = open_token_source(to);
  std::vector<int64_t> window;
  int64_t start = 0;  // the window the evals start at
  if (!src->infinite()) {
    // Skip the run's windows, modulo the dataset's length when it is shorter than that.
    int64_t skip = model_eval_skip_windows(cfg), n = 0;
    while (n < skip && src->next(window)) ++n;
    if (n < skip) {
      if (n == 0)
        fail("{}: no token window of context_size = {} could be read for the evals",
             to.dataset_path, ctx);
      skip %= n;
      src->restart();
      for (int64_t i = 0; i < skip; ++i) src->next(window);
    }
    start = skip;
  }
  std::vector<at::Tensor> batches;
  std::vector<int64_t> ids;
  int64_t rows = 0, after_wrap = 0;
  bool wrapped = false;
  while (int64_t(batches.size()) < n_batches) {
    // At most one pass: after wrapping to the start, stop at the first eval window.
    if (wrapped && after_wrap >= start) break;
    if (!src->next(window)) {
      if (src->infinite() || wrapped) break;
      src->restart();
      wrapped = true;
      continue;
    }
    if (wrapped) ++after_wrap;
    if (int64_t(window.size()) != ctx)
      fail("{}: a token window has {} ids, expected context_size = {}", to.dataset_path,
           window.size(), ctx);
    ids.insert(ids.end(), window.begin(), window.end());
    if (++rows == prompts) {
      batches.push_back(torch::tensor(ids, torch::kLong).reshape({rows, ctx}));
      ids.clear();
      rows = 0;
    }
  }
  if (rows > 0) batches.push_back(torch::tensor(ids, torch::kLong).reshape({rows, ctx}));
  if (batches.empty())
    fail("{}: no token window of context_size = {} could be read for the evals", to.dataset_path,
         ctx);
  return batches;
}

}  // namespace

std::function<json(const Sae&)> make_model_eval(const RunnerConfig& cfg,
                                                const ActivationsStore& store) {
  if (cfg.n_eval_batches <= 0) return {};
  struct State {
    std::shared_ptr<const Transformer> model;
    TokenSourceOptions token_source;
    EvalOptions eval;
    std::vector<at::Tensor> batches;  // read at the first call
  };
  auto st = std::make_shared<State>();
  st->model = store.model();
  if (!st->model) fail("model evals: the activations store holds no model");
  st->token_source = store.options().token_source;
  if (st->token_source.dataset_path.empty()) {  // a store built without them: the config's
    st->token_source.dataset_path = cfg.dataset_path;
    st->token_source.prepend_bos = cfg.prepend_bos;
    st->token_source.disable_concat_sequences = cfg.disable_concat_sequences;
    st->token_source.seed = uint64_t(cfg.seed);
  }
  st->token_source.context_size = cfg.context_size;
  st->eval.exclude_token_ids = store.options().exclude_token_ids;
  const int64_t prompts = cfg.eval_batch_size_prompts.value_or(cfg.store_batch_size_prompts);
  const int64_t n_batches = cfg.n_eval_batches;
  const std::string hook = cfg.hook_name;
  const std::optional<int64_t> head = cfg.hook_head_index;
  return [st, cfg, prompts, n_batches, hook, head](const Sae& sae) -> json {
    if (st->batches.empty()) {
      st->batches = read_eval_batches(cfg, st->token_source, n_batches, prompts);
      for (auto& b : st->batches) b = b.to(st->model->device());  // where the model runs
    }
    return evaluate_sae_on_model(*st->model, sae, hook, head, st->batches, st->eval);
  };
}

}  // namespace saelab
