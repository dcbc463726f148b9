// Continuing a prompt, as TransformerLens's HookedTransformer.generate: greedy at temperature 0,
// else sampling from softmax(logits / T) with a seeded generator; BOS prepended by default and
// dropped from the returned text; stops at the end-of-text token.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"

namespace saelab {

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  double temperature = 1.0;
  uint64_t seed = 0;
  bool prepend_bos = true;
  bool stop_at_eos = true;
};

struct Generation {
  std::vector<int64_t> prompt_tokens;
  std::vector<int64_t> new_tokens;
  std::string text;        // prompt + continuation, without the prepended BOS
  std::string completion;  // the continuation alone
};

// Errors (one line): a negative token count or temperature, a prompt with no tokens, a token id
// outside the model's vocabulary.
Generation generate(const LoadedModel& m, const Tokenizer& tok, const std::string& prompt,
                    const GenerateOptions& o);

}  // namespace saelab
