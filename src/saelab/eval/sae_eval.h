// Evaluating a saved SAE outside training, as `saelab eval` does: over a file of cached
// activations (the metrics that need no language model: reconstruction, shrinkage, sparsity,
// feature density), or on a language model and a dataset (also CE and KL loss recovered with the
// SAE spliced in at its hook; eval/evaluator.h). Both return one JSON object keyed by SAELens's
// metric names, plus plots/feature_density_line_chart.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/data/token_source.h"

namespace saelab {

struct SaeEvalOptions {
  std::string sae_dir;
  // activations file mode
  std::string activations;  // safetensors with `activations` [N, d_in] (F32, F16, BF16 or F64)
  int64_t batch_size = 4096;
  // model mode
  std::string model;
  std::string dataset;  // as TokenSourceOptions::dataset_path reads it
  std::string dataset_column, dataset_split, dataset_revision;  // as TokenSourceOptions's
  int64_t n_eval_batches = 10;
  int64_t batch_size_prompts = 8;
  int64_t context_size = 0;             // 0: the SAE's context_size
  bool include_special_tokens = false;  // BOS/EOS/PAD positions are excluded by default
};

json evaluate_activations_file(const SaeEvalOptions& o);
json evaluate_on_model(const SaeEvalOptions& o);

// Up to n_batches batches of `prompts` windows of ctx tokens from src ([rows, ctx] each; the last
// may be shorter). `dataset` names the source in errors.
std::vector<at::Tensor> read_token_batches(TokenSource& src, int64_t n_batches, int64_t prompts,
                                           int64_t ctx, const std::string& dataset);

}  // namespace saelab
