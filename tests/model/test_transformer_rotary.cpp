// Rotary embeddings: the NeoX/Llama rotate_half convention checked element by element against
// the pair rotation written out here, relative-position invariance, a partial rotary_dim, and
// the model's hook_rot_q / hook_rot_k against the same rotation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "saelab/model/rotary.h"
#include "saelab/model/transformer.h"
#include "test_transformer_models.h"

using namespace saelab;
using namespace saelab::test;

namespace {

// Rotate dims (i, i + r/2) of x [d_head] by angle pos * base^(-2i/r), in float64.
std::vector<double> rotate_ref(const std::vector<double>& x, int64_t pos, int64_t r, double base) {
  std::vector<double> out = x;
  for (int64_t i = 0; i < r / 2; ++i) {
    const double theta = double(pos) * std::pow(base, -2.0 * double(i) / double(r));
    const double a = x[i], b = x[i + r / 2];
    out[i] = a * std::cos(theta) - b * std::sin(theta);
    out[i + r / 2] = b * std::cos(theta) + a * std::sin(theta);
  }
  return out;
}

at::Tensor rotate(const ModelConfig& cfg, const at::Tensor& x /*[1,P,H,E]*/, int64_t first_pos) {
  const int64_t P = x.size(1);
  auto [sin, cos] =
      rotary_sin_cos(cfg, torch::arange(first_pos, first_pos + P, torch::kLong), at::kDouble);
  return apply_rotary(x, sin, cos, effective_rotary_dim(cfg));
}

}  // namespace

TEST(Rotary, MatchesThePairRotationElementByElement) {
  ModelConfig cfg = tiny_llama();
  cfg.d_head = 12;
  cfg.rotary_dim = 8;  // partial: dims 8..11 pass through
  cfg.rotary_base = 500.0;
  at::manual_seed(1);
  at::Tensor x = torch::randn({1, 5, 2, 12}, torch::kDouble);
  at::Tensor y = rotate(cfg, x, 0);
  for (int64_t p = 0; p < 5; ++p)
    for (int64_t h = 0; h < 2; ++h) {
      std::vector<double> v(12);
      for (int64_t i = 0; i < 12; ++i) v[i] = x[0][p][h][i].item<double>();
      auto ref = rotate_ref(v, p, 8, 500.0);
      for (int64_t i = 0; i < 12; ++i) EXPECT_NEAR(y[0][p][h][i].item<double>(), ref[i], 1e-12);
    }
}

TEST(Rotary, ScoresDependOnlyOnRelativePosition) {
  ModelConfig cfg = tiny_llama();
  at::manual_seed(2);
  at::Tensor q = torch::randn({1, 1, 1, 8}, torch::kDouble),
             k = torch::randn({1, 1, 1, 8}, torch::kDouble);
  auto score = [&](int64_t qpos, int64_t kpos) {
    return (rotate(cfg, q, qpos) * rotate(cfg, k, kpos)).sum().item<double>();
  };
  EXPECT_NEAR(score(3, 1), score(10, 8), 1e-10);
  EXPECT_NEAR(score(5, 5), score(0, 0), 1e-10);
  EXPECT_NEAR(score(20, 4), score(16, 0), 1e-10);
  EXPECT_GT(std::abs(score(3, 1) - score(3, 2)), 1e-6);  // but it does depend on the offset
}

TEST(Rotary, ModelRotatesQueriesAndKeysFromPositionZero) {
  for (const auto& cfg : {tiny_llama(), tiny_gemma2()}) {
    SCOPED_TRACE(cfg.model_name);
    Transformer m(cfg, tiny_weights(cfg, 3));
    auto cache = m.run_with_cache(random_tokens(cfg, 2, 6, 4),
                                  {"blocks.1.attn.hook_q", "blocks.1.attn.hook_rot_q",
                                   "blocks.1.attn.hook_k", "blocks.1.attn.hook_rot_k"});
    for (const char* which : {"q", "k"}) {
      at::Tensor pre = cache.at(std::string("blocks.1.attn.hook_") + which).to(at::kDouble);
      at::Tensor rot = cache.at(std::string("blocks.1.attn.hook_rot_") + which).to(at::kDouble);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t p = 0; p < 6; ++p)
          for (int64_t h = 0; h < pre.size(2); ++h) {
            std::vector<double> v(8);
            for (int64_t i = 0; i < 8; ++i) v[i] = pre[b][p][h][i].item<double>();
            auto ref = rotate_ref(v, p, 8, cfg.rotary_base);
            for (int64_t i = 0; i < 8; ++i)
              EXPECT_NEAR(rot[b][p][h][i].item<double>(), ref[i], 1e-5);
          }
    }
  }
}

TEST(Rotary, Llama3ScalingKeepsHighAndSlowsLowFrequencies) {
  ModelConfig cfg = tiny_llama();
  cfg.d_head = cfg.rotary_dim = 64;
  cfg.rotary_base = 500000.0;
  cfg.use_NTK_by_parts_rope = true;
  cfg.NTK_by_parts_factor = 8.0;
  cfg.NTK_by_parts_low_freq_factor = 1.0;
  cfg.NTK_by_parts_high_freq_factor = 4.0;
  cfg.NTK_original_ctx_len = 8192;
  at::Tensor scaled = rotary_inv_freq(cfg);
  cfg.use_NTK_by_parts_rope = false;
  at::Tensor plain = rotary_inv_freq(cfg);
  for (int64_t i = 0; i < 32; ++i) {
    const double f = plain[i].item<double>(), wavelen = 2 * M_PI / f;
    if (wavelen < 8192.0 / 4.0)
      EXPECT_DOUBLE_EQ(scaled[i].item<double>(), f);  // high freq
    else if (wavelen > 8192.0)
      EXPECT_NEAR(scaled[i].item<double>(), f / 8.0, 1e-18);  // low freq
    else {
      const double s = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(scaled[i].item<double>(), (1 - s) * f / 8.0 + s * f, 1e-15);
    }
  }
}
