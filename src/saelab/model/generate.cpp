// Prompt continuation (generate.h).
#include "saelab/model/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/model/transformer.h"

namespace saelab {

Generation generate(const LoadedModel& m, const Tokenizer& tok, const std::string& prompt,
                    const GenerateOptions& o) {
  if (o.max_new_tokens < 0) fail("--max-new-tokens: expected >= 0, got {}", o.max_new_tokens);
  if (!(o.temperature >= 0.0)) fail("--temperature: expected >= 0, got {}", o.temperature);
  std::vector<int64_t> ids = to_tokens(tok, prompt, o.prepend_bos);
  if (ids.empty()) fail("--prompt: the prompt has no tokens (give some text, or drop --no-bos)");
  for (int64_t id : ids)
    if (id >= m.cfg.d_vocab)
      fail("{}: tokenizer gave id {} but the model's vocabulary has {} entries", m.dir, id,
           m.cfg.d_vocab);
  Generation g;
  g.prompt_tokens = ids;
  const bool learned_pos = m.cfg.positional_embedding_type == "standard" ||
                           m.cfg.positional_embedding_type == "shortformer";
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const auto eos = m.cfg.eos_token_id ? m.cfg.eos_token_id : tok.eos_token_id();
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    // Learned positions end at n_ctx: condition on the last n_ctx tokens, as TL does.
    size_t start = learned_pos && static_cast<int64_t>(ids.size()) > m.cfg.n_ctx
                       ? ids.size() - m.cfg.n_ctx
                       : 0;
    std::vector<int64_t> window(ids.begin() + start, ids.end());
    at::Tensor logits =
        m.model->forward(torch::tensor(window, torch::kLong).unsqueeze(0))[0][-1].to(at::kDouble);
    int64_t next;
    if (o.temperature == 0.0) {
      next = logits.argmax().item<int64_t>();
    } else {
      at::Tensor probs = torch::softmax(logits / o.temperature, -1);
      next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    }
    ids.push_back(next);
    g.new_tokens.push_back(next);
    if (o.stop_at_eos && eos && next == *eos) break;
  }
  // TL drops the BOS it prepended from the returned text.
  const size_t skip = o.prepend_bos ? 1 : 0;
  std::vector<int64_t> shown(ids.begin() + std::min(skip, g.prompt_tokens.size()), ids.end());
  g.text = tok.decode(shown);
  g.completion = tok.decode(g.new_tokens);
  return g;
}

}  // namespace saelab
