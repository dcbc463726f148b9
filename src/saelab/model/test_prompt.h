// TransformerLens's utils.test_prompt: tokenizes the prompt, appends each answer (with a leading
// space unless told otherwise) and scores each answer token's rank (0 = the model's top choice),
// logit and probability at the position that predicts it, with the top-k tokens there. With
// several answers only their first tokens are scored (one position), as TL does.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"

namespace saelab {

struct TestPromptOptions {
  int64_t top_k = 10;
  bool prepend_bos = true;
  bool prepend_space = true;
};

// {"prompt", "prompt_tokens", "prompt_ids", "answers": [{"answer", "answer_tokens", "tokens":
// [{"token", "id", "position", "rank", "logit", "prob"}]}], "positions": [{"position", "top":
// [{"token", "id", "logit", "prob"}]}]}. Errors: no answers, top_k <= 0, an empty prompt or
// answer, a token id outside the model's vocabulary.
json test_prompt(const LoadedModel& m, const Tokenizer& tok, const std::string& prompt,
                 const std::vector<std::string>& answers, const TestPromptOptions& o);

}  // namespace saelab
