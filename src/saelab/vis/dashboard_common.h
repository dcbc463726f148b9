// What the feature-centric and the prompt-centric views share: the SAE, model and tokenizer loaded
// and checked against each other, token display strings, and the weight-based parts of a
// feature's record.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/model/loader.h"
#include "saelab/vis/dashboard_data.h"
#include "saelab/vis/dashboard_weights.h"

namespace saelab {
class Sae;
class Tokenizer;
}  // namespace saelab

namespace saelab::vis {

struct VisModel {
  std::unique_ptr<Sae> sae;
  LoadedModel lm;
  std::shared_ptr<Tokenizer> tok;  // null when the model folder has none
  std::string hook;
  std::optional<int64_t> head;
  bool othello = false;  // an OthelloGPT model or the othello dataset: square names, boards
  VisModel();
  VisModel(VisModel&&) noexcept;
  ~VisModel();
};

// Loads --sae and --model onto --device and checks the SAE's hook and d_in against the model.
VisModel load_vis_model(const VisOptions& o);

// The string a page shows for a token id: the tokenizer's piece, an Othello square name
// ("pass", "A0".."H7"), or the id itself.
std::string token_string(const VisModel& m, int64_t id);
// The seed's Othello vocabulary: 0 = "pass", 1..60 = "A0".."H7" without D3, D4, E3, E4.
std::string othello_token_name(int64_t id);

json example_json(const FeatureExample& e);

// Adds "top_logits", "bottom_logits", "logit_histogram" (when the hook's output reaches the
// residual stream), "neighbours" and "neurons" to each record (records[i] is features[i]).
void add_weight_parts(const VisModel& m, const std::vector<int64_t>& features, const VisOptions& o,
                      std::vector<json>& records);

}  // namespace saelab::vis
