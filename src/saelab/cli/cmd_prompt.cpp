// `saelab prompt`: parses options, runs TransformerLens's test_prompt (model/test_prompt.h) and
// prints it in TL's printed layout (--json: the same as one object).
#include <fmt/format.h>

#include <iostream>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"
#include "saelab/core/json.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"
#include "saelab/model/test_prompt.h"

namespace saelab::cli {
namespace {

struct PromptOptions {
  std::string model;
  std::string prompt;
  std::vector<std::string> answers;
  int64_t top_k = 10;
  bool no_bos = false;
  bool no_prepend_space = false;
  bool json = false;
};

std::string str_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
  return s + "]";
}

std::string rank_pair(const json& t) {
  return fmt::format("('{}', {})", t["token"].get<std::string>(), t["rank"].get<int64_t>());
}

void print_human(const json& r) {
  const json& answers = r["answers"];
  const bool multiple = answers.size() > 1;
  std::cout << "Tokenized prompt: " << str_list(r["prompt_tokens"].get<std::vector<std::string>>())
            << "\n";
  if (multiple) {
    std::string all;
    for (auto& a : answers)
      all +=
          (all.empty() ? "" : ", ") + str_list(a["answer_tokens"].get<std::vector<std::string>>());
    std::cout << "Tokenized answers: [" << all << "]\n";
  } else {
    std::cout << "Tokenized answer: "
              << str_list(answers[0]["answer_tokens"].get<std::vector<std::string>>()) << "\n";
  }
  const auto& positions = r["positions"];
  for (size_t j = 0; j < positions.size(); ++j) {
    std::cout << "Performance on answer token" << (multiple ? "s" : "") << ":\n";
    for (auto& a : answers) {
      const json& t = a["tokens"][j];
      std::cout << fmt::format("Rank: {:<8} Logit: {:5.2f} Prob: {:5.2f}% Token: |{}|\n",
                               t["rank"].get<int64_t>(), t["logit"].get<double>(),
                               100 * t["prob"].get<double>(), t["token"].get<std::string>());
    }
    int64_t i = 0;
    for (auto& top : positions[j]["top"])
      std::cout << fmt::format("Top {}th token. Logit: {:5.2f} Prob: {:5.2f}% Token: |{}|\n", i++,
                               top["logit"].get<double>(), 100 * top["prob"].get<double>(),
                               top["token"].get<std::string>());
  }
  std::string ranks;
  if (multiple) {
    for (size_t j = 0; j < positions.size(); ++j) {
      std::string row;
      for (auto& a : answers) row += (row.empty() ? "" : ", ") + rank_pair(a["tokens"][j]);
      ranks += (ranks.empty() ? "[" : ", [") + row + "]";
    }
  } else {
    for (auto& t : answers[0]["tokens"]) ranks += (ranks.empty() ? "" : ", ") + rank_pair(t);
  }
  std::cout << "Ranks of the answer tokens: [" << ranks << "]\n";
}

int run(const PromptOptions& o) {
  LoadedModel m = load_model(o.model);
  const auto tok = load_tokenizer(m.dir);
  TestPromptOptions t;
  t.top_k = o.top_k;
  t.prepend_bos = !o.no_bos;
  t.prepend_space = !o.no_prepend_space;
  json r = test_prompt(m, *tok, o.prompt, o.answers, t);
  r["model"] = o.model;
  if (o.json)
    std::cout << r.dump() << "\n";
  else
    print_human(r);
  return 0;
}

auto setup = [](CLI::App* sub) -> std::function<int()> {
  auto o = std::make_shared<PromptOptions>();
  sub->add_option("--model", o->model,
                  "model folder, .pth file, Hugging Face repo id or TransformerLens alias")
      ->required();
  sub->add_option("--prompt", o->prompt, "the prompt text")->required();
  sub->add_option("--answers", o->answers,
                  "one or more answers to score (a leading space is added)")
      ->required();
  sub->add_option("--top-k", o->top_k, "top tokens to show at each answer position (default 10)");
  sub->add_flag("--no-bos", o->no_bos, "do not prepend the BOS token");
  sub->add_flag("--no-prepend-space", o->no_prepend_space,
                "use each answer as given, without a leading space");
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->footer(
      "Example (the seed's test_prompt):\n"
      "  saelab prompt --model gpt2 --prompt 'The Eiffel Tower is in the city of' --answers Paris "
      "London");
  return [o] { return run(*o); };
};

}  // namespace
SAELAB_COMMAND(
    "prompt", "Rank answers to a prompt and show the top next tokens (TransformerLens test_prompt)",
    setup);
}  // namespace saelab::cli
