// TransformerLens's utils.test_prompt (test_prompt.h).
#include "saelab/model/test_prompt.h"

#include <torch/torch.h>

#include <algorithm>

#include "saelab/core/error.h"
#include "saelab/model/transformer.h"

namespace saelab {
namespace {

// TL's test_prompt: with several answers only their first tokens are scored (one position);
// with one answer every answer token is scored at the position that predicts it.
json score_answers(const Tokenizer& tok, const Transformer& model,
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

}  // namespace

json test_prompt(const LoadedModel& m, const Tokenizer& tok, const std::string& prompt,
                 const std::vector<std::string>& answers_in, const TestPromptOptions& o) {
  if (answers_in.empty()) fail("--answers: expected at least one answer");
  if (o.top_k <= 0) fail("--top-k: expected a positive number, got {}", o.top_k);
  const std::vector<int64_t> prompt_ids = to_tokens(tok, prompt, o.prepend_bos);
  if (prompt_ids.empty())
    fail("--prompt: the prompt has no tokens (give some text, or drop --no-bos)");
  std::vector<std::string> answers;
  for (auto a : answers_in)
    answers.push_back(o.prepend_space && (a.empty() || a[0] != ' ') ? " " + a : a);
  json r = score_answers(tok, *m.model, prompt_ids, answers, o.top_k, m.cfg.d_vocab);
  r["prompt"] = prompt;
  r["prompt_tokens"] = to_str_tokens(tok, prompt_ids);
  r["prompt_ids"] = prompt_ids;
  return r;
}

}  // namespace saelab
