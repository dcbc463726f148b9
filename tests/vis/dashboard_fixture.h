// Shared by the `saelab vis` tests: an SAE at blocks.0.hook_resid_pre of the tiny GPT-2 fixture, a
// pretokenized dataset (BOS 49 first in every window), and the float64 activations the test
// computes by hand: x = W_E[token] + W_pos[position], acts = relu((x - b_dec) W_enc + b_enc).
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/test_load_fixtures.h"
#include "saelab/core/json.h"
#include "saelab/model/loader.h"
#include "saelab/model/transformer.h"
#include "saelab/sae/sae.h"
#include "test_util.h"

namespace saelab::test {

inline const std::string kVisHook = "blocks.0.hook_resid_pre";

// b_enc = bias + noise: the bias sets how often the latents fire.
inline void write_vis_sae(const std::string& dir, int64_t d_in, int64_t d_sae, uint64_t seed = 11,
                          double bias = -0.6) {
  SaeConfig cfg;
  cfg.architecture = "standard";
  cfg.d_in = d_in;
  cfg.d_sae = d_sae;
  cfg.model_name = "tiny-gpt2";
  cfg.hook_name = kVisHook;
  cfg.context_size = 12;
  auto sae = make_sae(cfg);
  at::manual_seed(seed);
  sae->params()["W_enc"] = torch::randn({d_in, d_sae}) * 0.5;
  sae->params()["W_dec"] = torch::randn({d_sae, d_in});
  sae->params()["b_enc"] = torch::randn({d_sae}) * 0.3 + bias;
  sae->params()["b_dec"] = torch::randn({d_in}) * 0.1;
  save_sae(*sae, dir);
}

struct VisFixture {
  std::string sae, dataset, args;  // args: "vis --sae .. --model .. --dataset .. --n-prompts .."
  at::Tensor tokens;               // [prompts, ctx]
  int64_t d_sae = 0;
};

inline VisFixture make_vis_fixture(const std::string& dir, int64_t d_sae, int64_t prompts,
                                   int64_t ctx) {
  VisFixture f;
  f.d_sae = d_sae;
  f.sae = dir + "/sae";
  f.dataset = dir + "/tokens.jsonl";
  write_vis_sae(f.sae, 16, d_sae);
  at::manual_seed(3);
  f.tokens = torch::randint(0, 49, {prompts, ctx}, torch::kLong);
  f.tokens.select(1, 0).fill_(49);
  std::string text;
  for (int64_t r = 0; r < prompts; ++r) {
    json row = json::array();
    for (int64_t t = 0; t < ctx; ++t) row.push_back(f.tokens[r][t].item<int64_t>());
    text += json{{"input_ids", row}}.dump() + "\n";
  }
  write_text(f.dataset, text);
  f.args = "vis --sae " + shell_quote(f.sae) + " --model " + shell_quote(tiny_model("gpt2")) +
           " --dataset " + shell_quote(f.dataset) + " --n-prompts " + std::to_string(prompts) +
           " --context-size " + std::to_string(ctx) + " --batch-size-prompts 4";
  return f;
}

struct VisReference {
  at::Tensor acts;     // [prompts, ctx, d_sae] float64
  at::Tensor counted;  // [prompts, ctx] bool
  at::Tensor W_dec, W_U;
};

inline at::Tensor hand_acts(const std::string& sae_dir, const at::Tensor& tokens) {
  auto sae = load_sae(sae_dir);
  LoadedWeights w = load_model_weights(tiny_model("gpt2"));
  const at::Tensor WE = w.weights.at("embed.W_E").to(torch::kDouble);
  const at::Tensor WP = w.weights.at("pos_embed.W_pos").to(torch::kDouble);
  const int64_t P = tokens.size(0), T = tokens.size(1);
  const at::Tensor x = WE.index_select(0, tokens.flatten()).reshape({P, T, -1}) + WP.slice(0, 0, T);
  auto p = [&](const char* n) { return sae->param(n).to(torch::kDouble); };
  return torch::relu((x - p("b_dec")).matmul(p("W_enc")) + p("b_enc"));
}

inline VisReference vis_reference(const VisFixture& f, bool include_bos) {
  VisReference r;
  r.acts = hand_acts(f.sae, f.tokens);
  r.counted = include_bos ? torch::ones_like(f.tokens, torch::kBool) : f.tokens.ne(49);
  auto sae = load_sae(f.sae);
  r.W_dec = sae->param("W_dec").to(torch::kDouble);
  r.W_U = load_model_weights(tiny_model("gpt2")).weights.at("unembed.W_U").to(torch::kDouble);
  return r;
}

}  // namespace saelab::test
