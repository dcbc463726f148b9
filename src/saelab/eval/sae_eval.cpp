// Evaluating an SAE outside training (sae_eval.h): over an activations file, or on a model.
#include "saelab/eval/sae_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/data/tokenizer.h"
#include "saelab/eval/density.h"
#include "saelab/eval/evaluator.h"
#include "saelab/eval/metrics.h"
#include "saelab/model/hooks.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab {

// Reads up to n_eval_batches batches of batch_size_prompts windows; the last may be shorter.
std::vector<at::Tensor> read_token_batches(TokenSource& src, int64_t n_batches, int64_t prompts,
                                           int64_t ctx, const std::string& dataset) {
  std::vector<at::Tensor> batches;
  std::vector<int64_t> window;
  for (int64_t b = 0; b < n_batches; ++b) {
    std::vector<int64_t> ids;
    int64_t rows = 0;
    while (rows < prompts && src.next(window)) {
      if (int64_t(window.size()) != ctx)
        fail("{}: a token window has {} ids, expected context_size = {}", dataset, window.size(),
             ctx);
      ids.insert(ids.end(), window.begin(), window.end());
      ++rows;
    }
    if (rows == 0) break;
    batches.push_back(torch::tensor(ids, torch::kLong).reshape({rows, ctx}));
    if (rows < prompts) break;
  }
  if (batches.empty()) fail("{}: no token window of context_size = {} could be read", dataset, ctx);
  return batches;
}

namespace {

constexpr const char* kActivationsTensor = "activations";

// Opens FILE and checks that `activations` is a float [N, d_in] tensor matching the SAE.
const TensorEntry& checked_activations(const SafetensorsFile& file, int64_t d_in,
                                       const std::string& sae_dir) {
  const std::string& path = file.path();
  if (!file.contains(kActivationsTensor)) {
    std::string found;
    for (auto& name : file.names()) found += (found.empty() ? "" : ", ") + name;
    fail("{}: no tensor '{}' (expected [N, d_in] activations; found: {})", path, kActivationsTensor,
         found.empty() ? "no tensors" : found);
  }
  const TensorEntry& e = file.entry(kActivationsTensor);
  if (e.dtype != StDtype::F32 && e.dtype != StDtype::F16 && e.dtype != StDtype::BF16 &&
      e.dtype != StDtype::F64)
    fail("{}: tensor '{}' has dtype {}, expected a float dtype (F32, F16, BF16 or F64)", path,
         kActivationsTensor, st_dtype_name(e.dtype));
  if (e.shape.size() != 2)
    fail("{}: tensor '{}' has rank {}, expected rank 2 [N, d_in]", path, kActivationsTensor,
         e.shape.size());
  if (e.shape[1] != d_in)
    fail("{}: tensor '{}' has d_in {} (shape [{}, {}]), but the SAE in {} expects d_in {}", path,
         kActivationsTensor, e.shape[1], e.shape[0], e.shape[1], sae_dir, d_in);
  if (e.shape[0] == 0)
    fail("{}: tensor '{}' has no tokens (shape [0, {}])", path, kActivationsTensor, d_in);
  return e;
}

}  // namespace

json evaluate_activations_file(const SaeEvalOptions& o) {
  if (o.batch_size <= 0)
    fail("--batch-size: expected a positive number of tokens, got {}", o.batch_size);
  if (!std::filesystem::is_regular_file(o.activations))
    fail("{}: not a file (--activations expects a safetensors file with a tensor '{}' [N, d_in])",
         o.activations, kActivationsTensor);
  auto sae = load_sae(o.sae_dir);
  SafetensorsFile file(o.activations);
  const TensorEntry& entry = checked_activations(file, sae->cfg().d_in, o.sae_dir);
  const int64_t n = entry.shape[0];
  const auto sae_dtype = sae->param("W_enc").scalar_type();

  // A transcoder is compared with its output activations (`saelab cache` writes both).
  const bool transcoder = sae->cfg().is_transcoder();
  if (transcoder) {
    if (!file.contains("activations_out"))
      fail(
          "{}: the SAE in {} is a transcoder: expected a tensor 'activations_out' [N, d_out = {}] "
          "next to 'activations'",
          o.activations, o.sae_dir, sae->cfg().d_out);
    const TensorEntry& out = file.entry("activations_out");
    if (out.shape.size() != 2 || out.shape[0] != n || out.shape[1] != sae->cfg().d_out)
      fail("{}: tensor 'activations_out' must be [{}, {}] (N, d_out)", o.activations, n,
           sae->cfg().d_out);
  }

  at::NoGradGuard no_grad;
  at::Tensor all = file.view(kActivationsTensor);  // memory-mapped, converted one batch at a time
  at::Tensor all_out = transcoder ? file.view("activations_out") : at::Tensor();
  ReconstructionStats stats;
  for (int64_t start = 0; start < n; start += o.batch_size) {
    // A copy, never the read-only mapping itself, even when the dtypes already match.
    const int64_t end = std::min(n, start + o.batch_size);
    at::Tensor x = all.slice(0, start, end).to(sae_dtype, false, true);
    SaeForward out = sae->forward(x);
    at::Tensor target = transcoder ? all_out.slice(0, start, end).to(sae_dtype, false, true) : x;
    stats.add(target, out.reconstruction, out.acts_post);
  }
  json m = stats.metrics();
  m[kDensityHistogramKey] = density_histogram_json(stats.log10_feature_density());
  return m;
}

json evaluate_on_model(const SaeEvalOptions& o) {
  if (o.n_eval_batches <= 0)
    fail("--n-eval-batches: expected a positive number, got {}", o.n_eval_batches);
  if (o.batch_size_prompts <= 0)
    fail("--batch-size-prompts: expected a positive number, got {}", o.batch_size_prompts);
  if (o.context_size < 0)
    fail("--context-size: expected a positive number, got {}", o.context_size);
  auto sae = load_sae(o.sae_dir);
  const SaeConfig& sc = sae->cfg();
  if (sc.hook_name.empty())
    fail("{}/cfg.json: hook_name is empty; the model evals need the SAE's hook", o.sae_dir);
  LoadedModel lm = load_model(o.model);
  const Transformer& model = *lm.model;
  const int64_t ctx = o.context_size > 0 ? o.context_size : sc.context_size;
  if (ctx > lm.cfg.n_ctx)
    fail("--context-size: {} is longer than the n_ctx = {} of model '{}'", ctx, lm.cfg.n_ctx,
         o.model);

  // The hook's width against the SAE's d_in, before reading any data.
  {
    const int64_t width = sae_hook_width(lm.cfg, sc.hook_name, sc.hook_head_index);
    if (width != sc.d_in)
      fail("SAE {} has d_in = {} but hook '{}'{} of model '{}' has width {}", o.sae_dir, sc.d_in,
           sc.hook_name,
           sc.hook_head_index ? fmt::format(" (head {})", *sc.hook_head_index) : std::string(),
           o.model, width);
  }

  // Pretokenized data needs no tokenizer; raw text reports its absence when read.
  std::shared_ptr<Tokenizer> tok = load_tokenizer_if_present(lm.dir);
  TokenSourceOptions to;
  to.dataset_path = o.dataset;
  to.dataset_column = o.dataset_column;
  to.dataset_split = o.dataset_split;
  to.dataset_revision = o.dataset_revision;
  to.context_size = ctx;
  to.prepend_bos = sc.prepend_bos;
  to.bos_id = tok ? tok->bos_token_id() : lm.cfg.bos_token_id;
  to.tokenizer = tok;
  auto src = open_token_source(to);
  auto batches = read_token_batches(*src, o.n_eval_batches, o.batch_size_prompts, ctx, o.dataset);

  EvalOptions eo;
  if (!o.include_special_tokens) {
    eo.exclude_token_ids = special_token_ids(lm.cfg, tok ? tok->pad_token_id() : std::nullopt);
    if (tok)
      for (auto id : {tok->bos_token_id(), tok->eos_token_id()})
        if (id && std::find(eo.exclude_token_ids.begin(), eo.exclude_token_ids.end(), *id) ==
                      eo.exclude_token_ids.end())
          eo.exclude_token_ids.push_back(*id);
  }
  ModelEvaluator ev(model, *sae, sc.hook_name, sc.hook_head_index, eo);
  for (const auto& batch : batches) ev.add_batch(batch);
  json m = ev.metrics();
  m[kDensityHistogramKey] = density_histogram_json(ev.stats().log10_feature_density());
  json ex = json::array();
  for (auto id : eo.exclude_token_ids) ex.push_back(id);
  m["excluded_token_ids"] = ex;
  return m;
}

}  // namespace saelab
