// Checkpoint directories: <run>/checkpoints/<n_training_tokens>/ holds the SAE in SAELens's format
// (cfg.json, sae_weights.safetensors, sparsity.safetensors) plus the trainer state needed to resume
// bit-for-bit: trainer_state.safetensors (raw training parameters, buffers, Adam moments,
// dead-latent counters, RNG state) and trainer_state.json (step, tokens, Adam step count,
// activation scale, data-source position). The whole directory is written under a temporary name
// and renamed into place, so a killed run never leaves a half checkpoint under a final name.
#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"

namespace saelab {

class Sae;

struct CheckpointData {
  std::map<std::string, at::Tensor> tensors;  // trainer_state.safetensors
  json state = json::object();                // trainer_state.json
};

// Writes dir atomically (a sibling temporary directory, then rename_dir_atomic).
void write_checkpoint(const std::string& dir, const Sae& sae, const at::Tensor& log10_sparsity,
                      const CheckpointData& data);
// Writes <run_dir>/final (the SAE and its sparsity) through <run_dir>/.final.tmp renamed into
// place: a failed write leaves neither a partial final/ nor the temporary folder.
void write_final_sae(const std::string& run_dir, const Sae& sae, const at::Tensor& log10_sparsity);
// Reads trainer_state.{json,safetensors} from a checkpoint directory; errors name the file.
CheckpointData read_checkpoint(const std::string& dir);
// Every checkpoint directory under <run_dir>/checkpoints (named by its token count), most tokens
// first, whether or not it is whole: --resume tries them in this order.
std::vector<std::string> checkpoints_newest_first(const std::string& run_dir);
// The checkpoint directory with the most tokens under <run_dir>/checkpoints, or "" if none.
std::string latest_checkpoint(const std::string& run_dir);
// Removes what killed writers left: <run_dir>/checkpoints/.N.tmp-PID folders whose process is
// gone, and <run_dir>/.final.tmp. Returns how many were removed. --resume calls it first.
int remove_stale_temporaries(const std::string& run_dir);

}  // namespace saelab
