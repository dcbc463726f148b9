// `saelab generate`: parses options, continues the prompt (model/generate.h), prints the text.
#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/generate.h"
#include "saelab/model/loader.h"

namespace saelab::cli {
namespace {

struct GenerateCliOptions {
  std::string model;
  std::string prompt;
  GenerateOptions gen;
  bool no_bos = false;
  bool no_stop_at_eos = false;
  bool json = false;
};

int run(GenerateCliOptions o) {
  o.gen.prepend_bos = !o.no_bos;
  o.gen.stop_at_eos = !o.no_stop_at_eos;
  LoadedModel m = load_model(o.model);
  const auto tok = load_tokenizer(m.dir);
  const Generation g = generate(m, *tok, o.prompt, o.gen);
  if (o.json) {
    std::cout << json{{"model", o.model},
                      {"prompt", o.prompt},
                      {"text", g.text},
                      {"completion", g.completion},
                      {"prompt_tokens", g.prompt_tokens},
                      {"new_tokens", g.new_tokens},
                      {"temperature", o.gen.temperature},
                      {"seed", o.gen.seed}}
                     .dump()
              << "\n";
  } else {
    std::cout << g.text << "\n";
  }
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<GenerateCliOptions>();
  sub->add_option("--model", o->model,
                  "model folder, .pth file, Hugging Face repo id or TransformerLens alias")
      ->required();
  sub->add_option("--prompt", o->prompt, "text to continue")->required();
  sub->add_option("--max-new-tokens", o->gen.max_new_tokens, "tokens to generate (default 20)");
  sub->add_option("--temperature", o->gen.temperature,
                  "0 = greedy; otherwise sample from softmax(logits / T) (default 1)");
  sub->add_option("--seed", o->gen.seed, "seed of the sampler (default 0)");
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
