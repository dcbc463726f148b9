// `saelab prompt`: TransformerLens's utils.test_prompt. Tokenizes the prompt, appends each answer
// (with a leading space unless told otherwise) and reports each answer token's rank (0 = the
// model's top choice), logit and probability at the position that predicts it, with the top-k
// tokens there, in TL's printed layout (--json: the same as one object).
#include <fmt/format.h>
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

// TL's test_prompt: with several answers only their first tokens are scored (one position);
// with one answer every answer token is scored at the position that predicts it.
json test_prompt(const Tokenizer& tok, const Transformer& model,
                 const std::vector<int64_t>& prompt_ids, const std::vector<std::string>& answers,
                 int64_t top_k, int64_t d_vocab) {
  const bool multiple = answers.size() > 1;
  std::vector<std::vector<int64_t>> answer_ids;
  std::vector<std::vector<std::string>> answer_strs;  // every token, as TL prints them
  for (auto& a : answers) {
    answer_ids.push_back(to_tokens(tok, a, false));
    if (answer_ids.back().empty()) fail("--answers: answer '{}' has no tokens", a);
    answer_strs.push_back(to_str_tokens(tok, answer_ids.back()));
    if (multiple) answer_ids.back().resize(1);
  }
  const int64_t n_answer_tokens = static_cast<int64_t>(answer_ids[0].size());
  const int64_t n_prompt = static_cast<int64_t>(prompt_ids.size());
  std::vector<int64_t> flat;
  for (auto& ids : answer_ids) {
    flat.insert(flat.end(), prompt_ids.begin(), prompt_ids.end());
    flat.insert(flat.end(), ids.begin(), ids.end());
  }
  for (int64_t id : flat)
    if (id < 0 || id >= d_vocab)
      fail("tokenizer gave id {} but the model's vocabulary has {} entries", id, d_vocab);
  const int64_t rows = static_cast<int64_t>(answers.size());
  at::Tensor tokens = torch::tensor(flat, torch::kLong).view({rows, n_prompt + n_answer_tokens});
  at::Tensor logits = model.forward(tokens).to(at::kDouble);
  at::Tensor probs = torch::softmax(logits, -1);
  const int64_t k = std::min<int64_t>(top_k, d_vocab);
  json answers_json = json::array(), positions = json::array();
  for (int64_t i = 0; i < rows; ++i)
    answers_json.push_back(
        {{"answer", answers[i]}, {"answer_tokens", answer_strs[i]}, {"tokens", json::array()}});
  for (int64_t j = 0; j < n_answer_tokens; ++j) {
    const int64_t pos = n_prompt + j - 1;  // the position that predicts answer token j
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t id = answer_ids[i][j];
      const double logit = logits[i][pos][id].item<double>();
      const int64_t rank = (probs[i][pos] > probs[i][pos][id]).sum().item<int64_t>();
      answers_json[i]["tokens"].push_back({{"token", tok.decode({id})},
                                           {"id", id},
                                           {"position", pos},
                                           {"rank", rank},
                                           {"logit", logit},
                                           {"prob", probs[i][pos][id].item<double>()}});
    }
    at::Tensor top_ids = std::get<1>(probs[0][pos].topk(k));
    json tops = json::array();
    for (int64_t r = 0; r < k; ++r) {
      const int64_t t = top_ids[r].item<int64_t>();
      tops.push_back({{"token", tok.decode({t})},
                      {"id", t},
                      {"logit", logits[0][pos][t].item<double>()},
                      {"prob", probs[0][pos][t].item<double>()}});
    }
    positions.push_back({{"position", pos}, {"top", tops}});
  }
  return {{"answers", answers_json}, {"positions", positions}};
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
  if (o.answers.empty()) fail("--answers: expected at least one answer");
  if (o.top_k <= 0) fail("--top-k: expected a positive number, got {}", o.top_k);
  LoadedModel m = load_model(o.model);
  const auto tok = load_tokenizer(m.dir);
  const std::vector<int64_t> prompt_ids = to_tokens(*tok, o.prompt, !o.no_bos);
  if (prompt_ids.empty())
    fail("--prompt: the prompt has no tokens (give some text, or drop --no-bos)");
  std::vector<std::string> answers;
  for (auto a : o.answers)
    answers.push_back(!o.no_prepend_space && (a.empty() || a[0] != ' ') ? " " + a : a);
  json r = test_prompt(*tok, *m.model, prompt_ids, answers, o.top_k, m.cfg.d_vocab);
  r["model"] = o.model;
  r["prompt"] = o.prompt;
  r["prompt_tokens"] = to_str_tokens(*tok, prompt_ids);
  r["prompt_ids"] = prompt_ids;
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
