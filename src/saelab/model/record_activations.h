// Recording a language model's activations at named hooks over rows of token ids (`saelab
// activations`): each hook's tensor with a leading batch axis, optionally the logits.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "saelab/core/safetensors.h"
#include "saelab/model/loader.h"

namespace saelab {

// A JSON file holding a list of equal-length lists of token ids, each in [0, d_vocab), as [rows,
// len]. Errors name the file, the row and the position.
at::Tensor read_token_rows(const std::string& path, int64_t d_vocab);

// The activations at `hooks` (and "logits" when asked) for `tokens` [rows, len], run batch_size
// rows at a time, in the order asked. Errors: no hooks and no logits, an unknown hook, rows longer
// than a learned-position model's context (naming `where`, the tokens' file).
NamedTensors record_activations(const LoadedModel& m, const at::Tensor& tokens,
                                const std::vector<std::string>& hooks, bool logits,
                                int64_t batch_size, const std::string& where);

}  // namespace saelab
