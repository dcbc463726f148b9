// `saelab eval --sae DIR --activations FILE`: runs an SAE over cached activations and reports the
// metrics that need no language model (reconstruction, shrinkage, sparsity, feature density).
// `saelab eval --sae DIR --model M --dataset D`: the model-based evals (eval/evaluator.h): CE and
// KL loss recovered with the SAE spliced in at its hook, plus the same activation metrics.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/data/token_source.h"
#include "saelab/data/tokenizer.h"
#include "saelab/eval/density.h"
#include "saelab/eval/evaluator.h"
#include "saelab/eval/metrics.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"

namespace saelab::cli {
namespace {

constexpr const char* kActivationsTensor = "activations";

struct EvalOptions {
  std::string sae_dir;
  std::string activations;
  int64_t batch_size = 4096;
  bool json = false;
  // model-based mode
  std::string model;
  std::string dataset;
  int64_t n_eval_batches = 10;
  int64_t batch_size_prompts = 8;
  int64_t context_size = 0;  // 0: the SAE's context_size
  bool include_special_tokens = false;
};

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

json evaluate(const EvalOptions& o) {
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

  at::NoGradGuard no_grad;
  at::Tensor all = file.view(kActivationsTensor);  // memory-mapped, converted one batch at a time
  ReconstructionStats stats;
  for (int64_t start = 0; start < n; start += o.batch_size) {
    // A copy, never the read-only mapping itself, even when the dtypes already match.
    at::Tensor x =
        all.slice(0, start, std::min(n, start + o.batch_size)).to(sae_dtype, false, true);
    SaeForward out = sae->forward(x);
    stats.add(x, out.reconstruction, out.acts_post);
  }
  json m = stats.metrics();
  m[kDensityHistogramKey] = density_histogram_json(stats.log10_feature_density());
  return m;
}

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

json evaluate_on_model(const EvalOptions& o) {
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
  model.check_hook_name(sc.hook_name);
  const int64_t ctx = o.context_size > 0 ? o.context_size : sc.context_size;
  if (ctx > lm.cfg.n_ctx)
    fail("--context-size: {} is longer than the n_ctx = {} of model '{}'", ctx, lm.cfg.n_ctx,
         o.model);

  // The hook's width against the SAE's d_in, before reading any data.
  {
    auto shape = model.hook_shape(sc.hook_name, 1, 1);
    int64_t width = shape.back();
    if (sc.hook_head_index) {
      if (shape.size() != 4)
        fail("{}/cfg.json: hook_head_index is set but hook '{}' has no head axis", o.sae_dir,
             sc.hook_name);
    } else if (shape.size() == 4) {
      width = shape[2] * shape[3];
    }
    if (width != sc.d_in)
      fail("SAE {} has d_in = {} but hook '{}'{} of model '{}' has width {}", o.sae_dir, sc.d_in,
           sc.hook_name,
           sc.hook_head_index ? fmt::format(" (head {})", *sc.hook_head_index) : std::string(),
           o.model, width);
  }

  std::shared_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(lm.dir);
  } catch (const Error&) {
    // Pretokenized data needs no tokenizer; raw text reports its absence when read.
  }
  TokenSourceOptions to;
  to.dataset_path = o.dataset;
  to.context_size = ctx;
  to.prepend_bos = sc.prepend_bos;
  to.bos_id = tok ? tok->bos_token_id() : lm.cfg.bos_token_id;
  to.tokenizer = tok;
  auto src = open_token_source(to);
  auto batches = read_token_batches(*src, o.n_eval_batches, o.batch_size_prompts, ctx, o.dataset);

  saelab::EvalOptions eo;
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

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<EvalOptions>();
  sub->add_option("--sae", o->sae_dir,
                  "SAE directory (cfg.json + sae_weights.safetensors, or params.npz)")
      ->required();
  auto* acts = sub->add_option(
      "--activations", o->activations,
      "safetensors file with a tensor 'activations' [N, d_in] (F32, F16, BF16 or F64)");
  auto* model =
      sub->add_option("--model", o->model,
                      "language model (HF folder, .pth, hub id or TL alias): model-based evals");
  auto* dataset = sub->add_option(
      "--dataset", o->dataset,
      "token data for the model evals (jsonl input_ids/tokens/text, .npy, .bin, .txt, folder)");
  model->needs(dataset);
  dataset->needs(model);
  acts->excludes(model);
  sub->add_option("--n-eval-batches", o->n_eval_batches,
                  "model evals: batches of prompts (default 10)");
  sub->add_option("--batch-size-prompts", o->batch_size_prompts,
                  "model evals: prompts per batch (default 8)");
  sub->add_option("--context-size", o->context_size,
                  "model evals: tokens per prompt (default: the SAE's context_size)");
  sub->add_flag("--include-special-tokens", o->include_special_tokens,
                "model evals: keep BOS/EOS/PAD positions (excluded by default)");
  sub->add_option("--batch-size", o->batch_size, "tokens per forward pass (default 4096)");
  sub->add_flag("--json", o->json, "print one JSON object keyed by metric name");
  sub->footer(
      "Metrics (docs/metrics.md): reconstruction_quality/{explained_variance, mse, cossim},\n"
      "shrinkage/{l2_norm_in, l2_norm_out, l2_ratio, relative_reconstruction_bias},\n"
      "sparsity/{l0, l1, dead_features, dense_features, below_1e-5, below_1e-6}.\n"
      "With --model/--dataset also model_performance_preservation/{ce_loss_without_sae, "
      "ce_loss_with_sae,\n"
      "ce_loss_with_ablation, ce_loss_score}, model_behavior_preservation/{kl_div_with_sae,\n"
      "kl_div_with_ablation, kl_div_score} and sparsity/consistent_activation_heuristic.\n"
      "plots/feature_density_line_chart: the histogram of log10(feature density + 1e-10), 50 bins "
      "over\n"
      "[-10, 0] in --json (bin_edges, counts), per decade in the table.\n\n"
      "Examples:\n  saelab eval --sae runs/toy/final --activations acts.safetensors --json\n"
      "  saelab eval --sae runs/gpt2/final --model gpt2 --dataset tokens.jsonl --n-eval-batches 4 "
      "--json");
  return [o] {
    const bool on_model = !o->model.empty();
    if (!on_model && o->activations.empty())
      fail("eval: give --activations FILE, or --model M and --dataset D");
    json m = on_model ? evaluate_on_model(*o) : evaluate(*o);
    if (o->json) {
      std::cout << m.dump() << "\n";
    } else {
      // The histogram in short form after the table (the JSON has every bin).
      json table = m;
      table.erase(kDensityHistogramKey);
      std::string hist;
      if (m.contains(kDensityHistogramKey)) hist = density_histogram_text(m[kDensityHistogramKey]);
      std::cout << "SAE " << o->sae_dir << " on "
                << (on_model ? o->model + " / " + o->dataset : o->activations) << "\n\n"
                << metrics_table(table) << "\n"
                << hist;
    }
    return 0;
  };
};

}  // namespace
SAELAB_COMMAND(
    "eval", "Evaluate an SAE on cached activations or on a model (CE/KL loss recovered, sparsity)",
    setup);
}  // namespace saelab::cli
