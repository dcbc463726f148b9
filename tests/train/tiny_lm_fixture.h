// A two-block GPT-2 with random weights (a Hugging Face folder) and a token dataset for it,
// written by the tests that train on a language model's activations.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "saelab/core/json.h"
#include "saelab/core/safetensors.h"
#include "test_util.h"

namespace saelab::test {

constexpr int64_t kVocab = 40, kDModel = 16, kCtx = 8;

// A two-block GPT-2 with random weights (Hugging Face folder), so that hook, layer and dataset
// keys all reach the activations.
inline void write_model(const std::string& dir, uint64_t seed) {
  std::filesystem::create_directories(dir);
  json cfg = {{"model_type", "gpt2"},
              {"n_embd", kDModel},
              {"n_head", 4},
              {"n_layer", 2},
              {"n_ctx", 16},
              {"n_positions", 16},
              {"n_inner", 32},
              {"vocab_size", kVocab},
              {"layer_norm_epsilon", 1e-5},
              {"activation_function", "gelu_new"},
              {"bos_token_id", kVocab - 1},
              {"eos_token_id", kVocab - 1}};
  write_text(dir + "/config.json", cfg.dump());
  torch::manual_seed(seed);
  const int64_t D = kDModel;
  NamedTensors w = {{"wte.weight", torch::randn({kVocab, D})},
                    {"wpe.weight", torch::randn({16, D}) * 0.1},
                    {"ln_f.weight", torch::ones({D})},
                    {"ln_f.bias", torch::zeros({D})}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    w.emplace_back(p + "ln_1.weight", torch::ones({D}));
    w.emplace_back(p + "ln_1.bias", torch::zeros({D}));
    w.emplace_back(p + "ln_2.weight", torch::ones({D}));
    w.emplace_back(p + "ln_2.bias", torch::zeros({D}));
    w.emplace_back(p + "attn.c_attn.weight", torch::randn({D, 3 * D}) * 0.3);
    w.emplace_back(p + "attn.c_attn.bias", torch::zeros({3 * D}));
    w.emplace_back(p + "attn.c_proj.weight", torch::randn({D, D}) * 0.3);
    w.emplace_back(p + "attn.c_proj.bias", torch::zeros({D}));
    w.emplace_back(p + "mlp.c_fc.weight", torch::randn({D, 32}) * 0.3);
    w.emplace_back(p + "mlp.c_fc.bias", torch::zeros({32}));
    w.emplace_back(p + "mlp.c_proj.weight", torch::randn({32, D}) * 0.3);
    w.emplace_back(p + "mlp.c_proj.bias", torch::zeros({D}));
  }
  save_safetensors(dir + "/model.safetensors", w);
}

// 64 rows of random ids, each with the BOS/EOS id 39 somewhere, so special-token keys matter;
// a second column `tokens` of other ids, for dataset_column.
inline void write_dataset(const std::string& path, uint64_t seed) {
  torch::manual_seed(seed);
  auto ids = torch::randint(0, kVocab - 1, {64, 12}, torch::kLong);
  auto other = torch::randint(0, kVocab - 1, {64, 12}, torch::kLong);
  std::string text;
  for (int64_t r = 0; r < 64; ++r) {
    std::vector<int64_t> row(ids[r].data_ptr<int64_t>(), ids[r].data_ptr<int64_t>() + 12);
    std::vector<int64_t> row2(other[r].data_ptr<int64_t>(), other[r].data_ptr<int64_t>() + 12);
    row[r % 12] = kVocab - 1;
    text += json{{"input_ids", row}, {"tokens", row2}}.dump() + "\n";
  }
  write_text(path, text);
}

}  // namespace saelab::test
