// `saelab generate`: continue a prompt with a language model, as TransformerLens's
// HookedTransformer.generate: greedy at temperature 0, else sampling from softmax(logits / T)
// with a seeded generator; BOS prepended by default and dropped from the printed text; stops at
// the end-of-text token.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"

namespace saelab::cli {
namespace {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  int64_t max_new_tokens = 20;
  double temperature = 1.0;
  uint64_t seed = 0;
  bool no_bos = false;
  bool no_stop_at_eos = false;
  bool json = false;
};

int run(const GenerateOptions& o) {
  if (o.max_new_tokens < 0) fail("--max-new-tokens: expected >= 0, got {}", o.max_new_tokens);
  if (!(o.temperature >= 0.0)) fail("--temperature: expected >= 0, got {}", o.temperature);
  LoadedModel m = load_model(o.model);
  const auto tok = load_tokenizer(m.dir);
  std::vector<int64_t> ids = to_tokens(*tok, o.prompt, !o.no_bos);
  if (ids.empty()) fail("--prompt: the prompt has no tokens (give some text, or drop --no-bos)");
  for (int64_t id : ids)
    if (id >= m.cfg.d_vocab)
      fail("{}: tokenizer gave id {} but the model's vocabulary has {} entries", m.dir, id,
           m.cfg.d_vocab);
  const size_t n_prompt = ids.size();
  const bool learned_pos = m.cfg.positional_embedding_type == "standard" ||
                           m.cfg.positional_embedding_type == "shortformer";
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const auto eos = m.cfg.eos_token_id ? m.cfg.eos_token_id : tok->eos_token_id();
  std::vector<int64_t> new_ids;
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
    new_ids.push_back(next);
    if (!o.no_stop_at_eos && eos && next == *eos) break;
  }
  // TL drops the BOS it prepended from the returned text.
  const size_t skip = o.no_bos ? 0 : 1;
  std::vector<int64_t> shown(ids.begin() + std::min(skip, n_prompt), ids.end());
  const std::string text = tok->decode(shown);
  if (o.json) {
    std::cout << json{{"model", o.model},
                      {"prompt", o.prompt},
                      {"text", text},
                      {"completion", tok->decode(new_ids)},
                      {"prompt_tokens", std::vector<int64_t>(ids.begin(), ids.begin() + n_prompt)},
                      {"new_tokens", new_ids},
                      {"temperature", o.temperature},
                      {"seed", o.seed}}
                     .dump()
              << "\n";
  } else {
    std::cout << text << "\n";
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<GenerateOptions>();
  sub->add_option("--model", o->model,
                  "model folder, .pth file, Hugging Face repo id or TransformerLens alias")
      ->required();
  sub->add_option("--prompt", o->prompt, "text to continue")->required();
  sub->add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate (default 20)");
  sub->add_option("--temperature", o->temperature,
                  "0 = greedy; otherwise sample from softmax(logits / T) (default 1)");
  sub->add_option("--seed", o->seed, "seed of the sampler (default 0)");
  sub->add_flag("--no-bos", o->no_bos,
                "do not prepend the BOS token (TransformerLens prepends it)");
  sub->add_flag("--no-stop-at-eos", o->no_stop_at_eos,
                "keep generating past the end-of-text token");
  sub->add_flag("--json", o->json, "print one JSON object (text, token ids)");
  sub->footer(
      "Examples:\n  saelab generate --model gpt2 --prompt 'The capital of France is' --temperature "
      "0\n"
      "  saelab generate --model tiny-stories-1L-21M --prompt 'Once upon a time' --max-new-tokens "
      "50 --seed 1");
  return [o] { return run(*o); };
};

}  // namespace
SAELAB_COMMAND("generate", "Continue a prompt with a language model (greedy or seeded sampling)",
               setup);
}  // namespace saelab::cli
