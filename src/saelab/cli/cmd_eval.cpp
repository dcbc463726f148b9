// `saelab eval --sae DIR --activations FILE` or `--model M --dataset D`: parses options, runs
// eval/sae_eval.h and prints the metrics as a table or one JSON object.
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/cli/dataset_options.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/eval/density.h"
#include "saelab/eval/metrics.h"
#include "saelab/eval/sae_eval.h"

namespace saelab::cli {
namespace {

struct EvalCliOptions : SaeEvalOptions {
  bool json = false;
};

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<EvalCliOptions>();
  sub->add_option("--sae", o->sae_dir,
                  "SAE directory (cfg.json + sae_weights.safetensors, or params.npz)")
      ->required();
  auto* acts = sub->add_option(
      "--activations", o->activations,
      "safetensors file with a tensor 'activations' [N, d_in] (F32, F16, BF16 or F64); a "
      "transcoder also needs 'activations_out' [N, d_out]");
  auto* model =
      sub->add_option("--model", o->model,
                      "language model (HF folder, .pth, hub id or TL alias): model-based evals");
  auto* dataset = sub->add_option(
      "--dataset", o->dataset,
      "token data for the model evals (jsonl input_ids/tokens/text, .npy, .bin, .txt, folder)");
  add_dataset_part_options(sub, o->dataset_column, o->dataset_split, o->dataset_revision);
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
    json m = on_model ? evaluate_on_model(*o) : evaluate_activations_file(*o);
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
