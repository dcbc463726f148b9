// The language-model verbs end to end through the saelab executable: `activations` (tensors,
// names, shapes, values against run_with_cache and the python reference logits), `generate`,
// `prompt`, `info --model` (through a fake Hugging Face cache) and the one-line errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "model/test_load_fixtures.h"
#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "saelab/data/tokenizer.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"

namespace fs = std::filesystem;

namespace saelab {
namespace {

using test::run_command;
using test::run_saelab;
using test::shell_quote;
using test::tiny_model;

std::string tokens_json(const at::Tensor& ids) {
  json j = json::array();
  for (int64_t b = 0; b < ids.size(0); ++b) {
    json row = json::array();
    for (int64_t p = 0; p < ids.size(1); ++p) row.push_back(ids[b][p].item<int64_t>());
    j.push_back(row);
  }
  return j.dump();
}

void expect_one_line_error(const test::CommandResult& r, const std::string& must_contain) {
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
}

void check_activations(const std::string& family, const std::vector<std::string>& hooks,
                       const std::map<std::string, std::vector<int64_t>>& shapes) {
  test::TempDir d;
  auto expected = load_safetensors(tiny_model(family) + "/expected.safetensors");
  const at::Tensor ids = expected.at("input_ids");
  test::write_text(d / "tokens.json", tokens_json(ids));
  std::string hook_arg;
  for (auto& h : hooks) hook_arg += (hook_arg.empty() ? "" : ",") + h;
  auto r =
      run_saelab("activations --model " + shell_quote(tiny_model(family)) + " --tokens " +
                 shell_quote(d / "tokens.json") + " --hooks " + shell_quote(hook_arg) +
                 " --output " + shell_quote(d / "acts.safetensors") + " --logits --batch-size 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto acts = load_safetensors(d / "acts.safetensors");
  std::vector<std::string> want = hooks;
  want.push_back("logits");
  std::sort(want.begin(), want.end());
  std::vector<std::string> got;
  for (auto& [k, v] : acts) got.push_back(k);
  EXPECT_EQ(got, want);
  for (auto& [name, shape] : shapes) EXPECT_EQ(acts.at(name).sizes().vec(), shape) << name;
  // The python reference's logits, and the in-process run_with_cache for every hook.
  test::expect_close_rel(acts.at("logits"), expected.at("logits"), 1e-4, family + " logits");
  LoadedModel m = load_model(tiny_model(family));
  auto cache = m.model->run_with_cache(ids, hooks, true);
  for (auto& h : hooks) EXPECT_TRUE(at::allclose(acts.at(h), cache.at(h), 1e-5, 1e-6)) << h;
}

TEST(ModelCli, ActivationsGpt2) {
  check_activations(
      "gpt2",
      {"hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_normalized",
       "blocks.0.attn.hook_q", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_attn_scores",
       "blocks.0.attn.hook_z", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_post",
       "ln_final.hook_normalized"},
      {{"hook_embed", {2, 8, 16}},
       {"blocks.0.hook_resid_pre", {2, 8, 16}},
       {"blocks.0.attn.hook_q", {2, 8, 4, 4}},
       {"blocks.1.attn.hook_pattern", {2, 4, 8, 8}},
       {"blocks.1.attn.hook_attn_scores", {2, 4, 8, 8}},
       {"blocks.0.attn.hook_z", {2, 8, 4, 4}},
       {"blocks.1.mlp.hook_post", {2, 8, 64}},
       {"ln_final.hook_normalized", {2, 8, 16}},
       {"logits", {2, 8, 50}}});
}

TEST(ModelCli, ActivationsLlamaGqaRotary) {
  check_activations("llama",
                    {"blocks.1.attn.hook_k", "blocks.1.attn.hook_rot_q", "blocks.0.attn.hook_v",
                     "blocks.0.mlp.hook_pre_linear", "blocks.1.hook_mlp_out"},
                    {{"blocks.1.attn.hook_k", {2, 8, 2, 4}},
                     {"blocks.1.attn.hook_rot_q", {2, 8, 4, 4}},
                     {"blocks.0.attn.hook_v", {2, 8, 2, 4}},
                     {"blocks.0.mlp.hook_pre_linear", {2, 8, 32}},
                     {"blocks.1.hook_mlp_out", {2, 8, 16}}});
}

TEST(ModelCli, ActivationsGemma2) {
  check_activations("gemma2", {"blocks.0.hook_attn_out", "blocks.1.attn.hook_z"},
                    {{"blocks.1.attn.hook_z", {2, 8, 4, 8}}});
}

TEST(ModelCli, ActivationsErrors) {
  test::TempDir d;
  const std::string model = " --model " + shell_quote(tiny_model("gpt2"));
  const std::string out = " --output " + shell_quote(d / "o.safetensors");
  test::write_text(d / "ragged.json", "[[1, 2, 3], [4, 5]]");
  expect_one_line_error(
      run_saelab("activations" + model + " --tokens " + shell_quote(d / "ragged.json") +
                 " --hooks blocks.0.hook_resid_pre" + out),
      "row 1 has 2 tokens");
  test::write_text(d / "range.json", "[[1, 2, 77]]");
  auto r = run_saelab("activations" + model + " --tokens " + shell_quote(d / "range.json") +
                      " --hooks blocks.0.hook_resid_pre" + out);
  expect_one_line_error(r, "token id 77");
  EXPECT_NE(r.err.find("50"), std::string::npos) << r.err;
  test::write_text(d / "ok.json", "[[1, 2, 3]]");
  expect_one_line_error(
      run_saelab("activations" + model + " --tokens " + shell_quote(d / "ok.json") +
                 " --hooks blocks.0.hook_resid_pree" + out),
      "blocks.0.hook_resid_pree");
  expect_one_line_error(
      run_saelab("activations" + model + " --tokens " + shell_quote(d / "ok.json") +
                 " --hooks blocks.7.hook_resid_pre" + out),
      "blocks.7.hook_resid_pre");
  EXPECT_FALSE(fs::exists(d / "o.safetensors"));
  // Duplicate hook names are saved once; ln_final hooks work without --logits (and no logits
  // saved).
  ASSERT_EQ(
      run_saelab(
          "activations" + model + " --tokens " + shell_quote(d / "ok.json") +
          " --hooks ln_final.hook_normalized,blocks.0.hook_resid_pre,ln_final.hook_normalized" +
          out)
          .rc,
      0);
  auto acts = load_safetensors(d / "o.safetensors");
  EXPECT_EQ(acts.size(), 2u);
  EXPECT_EQ(acts.at("ln_final.hook_normalized").sizes().vec(), (std::vector<int64_t>{1, 3, 16}));
  fs::remove(d / "o.safetensors");
  // A model that is not in the (empty) cache: where saelab looked and how to download it.
  fs::create_directories(d / "hub");
  auto miss = run_command("HF_HUB_CACHE=" + shell_quote(d / "hub") + " " + SAELAB_EXE +
                          " activations --model tiny-stories-1L-21M --tokens " +
                          shell_quote(d / "ok.json") + " --hooks blocks.0.hook_resid_pre" + out);
  expect_one_line_error(miss, "huggingface-cli download roneneldan/TinyStories-1Layer-21M");
  EXPECT_NE(miss.err.find(d / "hub/models--roneneldan--TinyStories-1Layer-21M"), std::string::npos)
      << miss.err;
  // An architecture saelab does not run.
  fs::create_directories(d / "bert");
  test::write_text(d / "bert/config.json", R"({"model_type": "bert"})");
  expect_one_line_error(
      run_saelab("activations --model " + shell_quote(d / "bert") + " --tokens " +
                 shell_quote(d / "ok.json") + " --hooks blocks.0.hook_resid_pre" + out),
      "model_type 'bert' is not supported");
}

// The greedy continuation, written here as a loop over the model's forward pass.
std::vector<int64_t> greedy(const Transformer& model, std::vector<int64_t> ids, int n,
                            int64_t eos) {
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    at::Tensor logits = model.forward(torch::tensor(ids, torch::kLong).unsqueeze(0))[0][-1];
    const int64_t next = logits.argmax().item<int64_t>();
    ids.push_back(next);
    out.push_back(next);
    if (next == eos) break;
  }
  return out;
}

TEST(ModelCli, GenerateGreedyAndSeeded) {
  const std::string base =
      "generate --model " + shell_quote(tiny_model("gpt2")) + " --prompt 'the cab' --json";
  auto r = run_saelab(base + " --temperature 0 --max-new-tokens 6");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = parse_json(r.out, "generate output");
  LoadedModel m = load_model(tiny_model("gpt2"));
  auto tok = load_tokenizer(m.dir);
  const std::vector<int64_t> prompt = to_tokens(*tok, "the cab", true);
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<int64_t>>(), prompt);
  EXPECT_EQ(prompt.front(), 49);  // <|endoftext|> as BOS
  const auto want = greedy(*m.model, prompt, 6, 49);
  EXPECT_EQ(j["new_tokens"].get<std::vector<int64_t>>(), want);
  std::vector<int64_t> all(prompt.begin() + 1, prompt.end());
  all.insert(all.end(), want.begin(), want.end());
  EXPECT_EQ(j["text"].get<std::string>(), tok->decode(all));
  // Sampling: reproducible for a seed, and the plain-text form prints the same text.
  auto s1 = run_saelab(base + " --temperature 1.5 --seed 7 --max-new-tokens 12 --no-stop-at-eos");
  auto s2 = run_saelab(base + " --temperature 1.5 --seed 7 --max-new-tokens 12 --no-stop-at-eos");
  auto s3 = run_saelab(base + " --temperature 1.5 --seed 8 --max-new-tokens 12 --no-stop-at-eos");
  ASSERT_EQ(s1.rc, 0) << s1.err;
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_NE(parse_json(s1.out, "s1")["new_tokens"], parse_json(s3.out, "s3")["new_tokens"]);
  EXPECT_EQ(parse_json(s1.out, "s1")["new_tokens"].size(), 12u);
  auto plain = run_saelab("generate --model " + shell_quote(tiny_model("gpt2")) +
                          " --prompt 'the cab' --temperature 0 --max-new-tokens 6");
  ASSERT_EQ(plain.rc, 0) << plain.err;
  EXPECT_EQ(plain.out, j["text"].get<std::string>() + "\n");
}

TEST(ModelCli, PromptRanksLogitsProbs) {
  LoadedModel m = load_model(tiny_model("gpt2"));
  auto tok = load_tokenizer(m.dir);
  const std::vector<int64_t> prompt = to_tokens(*tok, "the cab", true);
  // One two-token answer: " abab" -> [" ab", "ab"], each scored where it is predicted.
  auto r = run_saelab("prompt --model " + shell_quote(tiny_model("gpt2")) +
                      " --prompt 'the cab' --answers abab --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = parse_json(r.out, "prompt output");
  const std::vector<int64_t> answer = to_tokens(*tok, " abab", false);
  ASSERT_EQ(answer.size(), 2u);
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), answer.begin(), answer.end());
  at::Tensor logits =
      m.model->forward(torch::tensor(all, torch::kLong).unsqueeze(0))[0].to(at::kDouble);
  const json& toks = j["answers"][0]["tokens"];
  ASSERT_EQ(toks.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const int64_t pos = static_cast<int64_t>(prompt.size() + i) - 1;
    at::Tensor row = logits[pos];
    const double lse = std::log(row.exp().sum().item<double>());
    const double logit = row[answer[i]].item<double>();
    int64_t rank = 0;
    for (int64_t v = 0; v < row.size(0); ++v) rank += row[v].item<double>() > logit;
    EXPECT_EQ(toks[i]["id"].get<int64_t>(), answer[i]);
    EXPECT_EQ(toks[i]["rank"].get<int64_t>(), rank);
    EXPECT_NEAR(toks[i]["logit"].get<double>(), logit, 1e-4);
    EXPECT_NEAR(toks[i]["prob"].get<double>(), std::exp(logit - lse), 1e-6);
    const json& top = j["positions"][i]["top"];
    ASSERT_EQ(top.size(), 10u);
    EXPECT_EQ(top[0]["id"].get<int64_t>(), row.argmax().item<int64_t>());
    for (size_t k = 1; k < top.size(); ++k)
      EXPECT_GE(top[k - 1]["prob"].get<double>(), top[k]["prob"].get<double>());
  }
  // Several answers: only their first tokens, at one position; TL's printed layout.
  auto h = run_saelab("prompt --model " + shell_quote(tiny_model("gpt2")) +
                      " --prompt 'the cab' --answers the cab");
  ASSERT_EQ(h.rc, 0) << h.err;
  EXPECT_NE(h.out.find("Tokenized prompt: ['<|endoftext|>', 'the', ' c', 'ab']"), std::string::npos)
      << h.out;
  EXPECT_NE(h.out.find("Tokenized answers: [[' the'], [' c', 'ab']]"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("Performance on answer tokens:\nRank: "), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("Top 9th token. Logit: "), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("Ranks of the answer tokens: [[(' the', "), std::string::npos) << h.out;
}

TEST(ModelCli, InfoThroughHfCache) {
  test::TempDir cache;
  test::make_fake_hf_cache(cache.path(), "tiny-org/tiny-llama", tiny_model("llama"), "feedbeef");
  const std::string env = "HF_HUB_CACHE=" + shell_quote(cache.path()) + " ";
  auto r = run_command(env + SAELAB_EXE + " info --model tiny-org/tiny-llama --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = parse_json(r.out, "info output");
  EXPECT_EQ(j["family"], "llama");
  EXPECT_EQ(j["d_model"], 16);
  EXPECT_EQ(j["n_layers"], 2);
  EXPECT_EQ(j["n_heads"], 4);
  EXPECT_EQ(j["n_key_value_heads"], 2);
  EXPECT_EQ(j["d_mlp"], 32);
  EXPECT_EQ(j["d_vocab"], 50);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (auto& h : j["hooks"])
    shapes[h["name"].get<std::string>()] = h["shape"].get<std::vector<int64_t>>();
  EXPECT_EQ(shapes.at("blocks.1.hook_resid_post"), (std::vector<int64_t>{1, 1, 16}));
  EXPECT_EQ(shapes.at("blocks.0.attn.hook_k"), (std::vector<int64_t>{1, 1, 2, 4}));
  EXPECT_EQ(shapes.at("blocks.0.attn.hook_pattern"), (std::vector<int64_t>{1, 4, 1, 1}));
  EXPECT_EQ(shapes.at("blocks.0.mlp.hook_post"), (std::vector<int64_t>{1, 1, 32}));
  EXPECT_EQ(shapes.count("hook_pos_embed"), 0u);  // rotary: no learned positions
  auto human = run_command(env + SAELAB_EXE + " info --model tiny-org/tiny-llama");
  ASSERT_EQ(human.rc, 0) << human.err;
  EXPECT_NE(human.out.find("blocks.1.attn.hook_rot_q"), std::string::npos) << human.out;
  // Not in the cache: one line naming the folder looked in and the download command.
  expect_one_line_error(run_command(env + SAELAB_EXE + " info --model tiny-org/absent --json"),
                        "huggingface-cli download tiny-org/absent");
}

}  // namespace
}  // namespace saelab
