// A cheap, deterministic stand-in for the libFuzzer run (fuzz/, scripts/fuzz.sh) inside ctest:
// thousands of mutations of a valid file must each parse or throw saelab::Error, nothing else.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "saelab/core/error.h"
#include "saelab/core/safetensors.h"
#include "saelab/core/safetensors_format.h"

using namespace saelab;

TEST(SafetensorsMutations, EveryMutationParsesOrThrowsSaelabError) {
  const std::string valid = serialize_safetensors({{"W_enc", torch::ones({2, 3})},
                                                   {"b", torch::zeros({3}, torch::kBFloat16)},
                                                   {"n", torch::zeros({0})}},
                                                  {{"format", "pt"}});
  ASSERT_NO_THROW(
      parse_safetensors(reinterpret_cast<const uint8_t*>(valid.data()), valid.size(), "v"));
  std::mt19937_64 rng(12345);
  int parsed = 0, refused = 0;
  const char* tokens[] = {"{",       "}",
                          "[",       "]",
                          ",",       ":",
                          "\"",      "-1",
                          "1e99",    "18446744073709551616",
                          "\"F32\"", "\"__metadata__\"",
                          "null",    "0"};
  for (int iter = 0; iter < 20000; ++iter) {
    std::string m = valid;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      size_t pos = m.empty() ? 0 : rng() % m.size();
      switch (rng() % 5) {
        case 0:
          if (!m.empty()) m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          m.resize(pos);
          break;
        case 2:
          m.insert(pos, tokens[rng() % (sizeof(tokens) / sizeof(*tokens))]);
          break;
        case 3:
          if (!m.empty()) m.erase(pos, 1 + rng() % 4);
          break;
        case 4:
          m.insert(pos, std::string(1 + rng() % 9, static_cast<char>(rng() % 256)));
          break;
      }
    }
    try {
      parse_safetensors(reinterpret_cast<const uint8_t*>(m.data()), m.size(), "mutant");
      ++parsed;
    } catch (const Error& e) {
      ++refused;
      EXPECT_EQ(std::string(e.what()).rfind("mutant", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(refused, 1000);  // the mutations really do break files
  EXPECT_EQ(parsed + refused, 20000);
}
