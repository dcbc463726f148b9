// RunnerConfig -> ActivationSource: the toy model, cached activations, or a model's activations.
#include "saelab/train/sources.h"

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/data/cached_activations.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
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
      if (!v.is_number_integer()) fail("exclude_special_tokens: expected true/false or a list of token ids, got {}", ex.dump());
      ids.push_back(v.get<int64_t>());
    }
    return ids;
  }
  fail("exclude_special_tokens: expected true/false or a list of token ids, got {}", ex.dump());
}

}  // namespace

std::unique_ptr<ActivationsStore> make_activations_store(const RunnerConfig& cfg, bool background) {
  const json kw = cfg.model_from_pretrained_kwargs.is_null() ? json::object() : cfg.model_from_pretrained_kwargs;
  LoadedModel lm = load_model(cfg.model_name, kw);
  std::shared_ptr<const Transformer> model(lm.model.release());
  std::shared_ptr<const Tokenizer> tok;
  if (cfg.dataset_path != "othello" && !lm.dir.empty()) {
    try {
      tok = load_tokenizer(lm.dir);
    } catch (const Error&) {
      // Pretokenized data needs no tokenizer; raw text reports its absence when it is read.
    }
  }
  if (cfg.exclude_special_tokens.is_boolean() && cfg.exclude_special_tokens.get<bool>() && !tok &&
      cfg.dataset_path != "othello")
    fail("exclude_special_tokens = true needs the tokenizer of model '{}' (none found in {}); list the ids instead",
         cfg.model_name, lm.dir);

  TokenSourceOptions to;
  to.dataset_path = cfg.dataset_path;
  to.context_size = cfg.context_size;
  to.prepend_bos = cfg.prepend_bos;
  to.disable_concat_sequences = cfg.disable_concat_sequences;
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
  so.context_size = cfg.context_size;
  so.seqpos_slice = cfg.seqpos_slice;
  so.exclude_token_ids = excluded_ids(cfg.exclude_special_tokens, tok.get());
  so.n_batches_in_buffer = cfg.n_batches_in_buffer;
  so.store_batch_size_prompts = cfg.store_batch_size_prompts;
  so.train_batch_size_tokens = cfg.train_batch_size_tokens;
  so.seed = uint64_t(cfg.seed);
  so.background = background;

  const int64_t width = ActivationsStore::hook_width(*model, cfg.hook_name, cfg.hook_head_index);
  if (width != cfg.d_in)
    fail("d_in = {} but {}{} of model '{}' has width {}; set d_in = {}", cfg.d_in, cfg.hook_name,
         cfg.hook_head_index ? fmt::format(" (head {})", *cfg.hook_head_index) : std::string(), cfg.model_name,
         width, width);
  return std::make_unique<ActivationsStore>(model, open_token_source(to), so);
}

std::unique_ptr<ActivationSource> make_activation_source(const RunnerConfig& cfg) {
  if (cfg.use_cached_activations) {
    if (!cfg.cached_activations_path || cfg.cached_activations_path->empty())
      fail("use_cached_activations = true needs cached_activations_path");
    check_activation_cache(*cfg.cached_activations_path, cfg.d_in, cfg.hook_name);
    return std::make_unique<CachedActivations>(*cfg.cached_activations_path, uint64_t(cfg.seed),
                                               cfg.d_in);
  }
  if (cfg.is_toy()) return std::make_unique<ToyModel>(toy_model_config(cfg));
  auto store = make_activations_store(cfg);
  store->fill_buffer();
  return store;
}

}  // namespace saelab
