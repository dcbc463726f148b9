// The raw loops of fast_loops.cpp against LibTorch: the three selections against torch.topk (and,
// where values tie, against a stable descending sort, which is the documented rule: the earlier
// entry in row-major order wins), the latent-grouped gradient scatter against dense products, and
// fused Adam / clipping / parallel-gradient removal against the ATen formulas they replace.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <utility>

#include "saelab/sae/kernels/fast_kernels.h"
#include "saelab/sae/kernels/fast_loops.h"
#include "saelab/sae/kernels/fire_counts.h"
#include "saelab/sae/training_sae.h"
#include "saelab/train/adam.h"
#include "saelab/train/init.h"

namespace saelab {
namespace {

// Restores LibTorch's thread count (tests run with OMP_NUM_THREADS=1; these use 2 as well).
struct Threads {
  int before = at::get_num_threads();
  explicit Threads(int n) { at::set_num_threads(n); }
  ~Threads() { at::set_num_threads(before); }
};

using Entry = std::pair<int64_t, double>;  // (column or flat index, value)

std::vector<std::set<Entry>> rows_of(const fast::SparseRows& s) {
  auto rp = s.row_ptr.contiguous();
  auto col = s.col.contiguous();
  auto val = s.val.to(torch::kFloat64).contiguous();
  const int64_t N = rp.numel() - 1;
  std::vector<std::set<Entry>> out(N);
  for (int64_t n = 0; n < N; ++n) {
    int64_t prev = -1;
    for (int64_t e = rp[n].item<int64_t>(); e < rp[n + 1].item<int64_t>(); ++e) {
      int64_t j = col[e].item<int64_t>();
      EXPECT_GT(j, prev) << "columns increase within a row";
      prev = j;
      out[n].insert({j, val[e].item<double>()});
    }
  }
  return out;
}

// The expected per-row set: the first k of a stable descending sort, positives only.
std::vector<std::set<Entry>> expected_rows(const at::Tensor& z, int64_t k, bool positive_only) {
  auto sorted = z.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true);
  auto v = std::get<0>(sorted).to(torch::kFloat64);
  auto i = std::get<1>(sorted);
  std::vector<std::set<Entry>> out(z.size(0));
  for (int64_t n = 0; n < z.size(0); ++n)
    for (int64_t r = 0; r < std::min(k, z.size(1)); ++r) {
      double x = v[n][r].item<double>();
      if (positive_only && !(x > 0)) break;
      out[n].insert({i[n][r].item<int64_t>(), x});
    }
  return out;
}

at::Tensor dense_of(const fast::SparseRows& s, int64_t S, const at::TensorOptions& opts) {
  const int64_t N = s.row_ptr.numel() - 1;
  auto d = torch::zeros({N, S}, opts);
  auto rows = rows_of(s);
  for (int64_t n = 0; n < N; ++n)
    for (const auto& [j, v] : rows[n]) d[n][j] = v;
  return d;
}

TEST(FastPath, TopKRowsEqualsTorchTopK) {
  for (int threads : {1, 2}) {
    Threads t(threads);
    uint64_t seed = 10;
    // S not a multiple of the 64-wide blocks; k above the number of positives; k = S; the last
    // two start from the lower bound of the group maxima (more than k groups of 64·m entries).
    for (auto [N, S, k] : {std::tuple<int64_t, int64_t, int64_t>{5, 1, 1},
                           {9, 7, 3},
                           {17, 100, 8},
                           {3, 1000, 32},
                           {4, 70, 70},
                           {6, 130, 200},
                           {33, 4099, 32},
                           {24, 8192, 32}})
      for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
        SCOPED_TRACE("N=" + std::to_string(N) + " S=" + std::to_string(S) +
                     " k=" + std::to_string(k));
        torch::manual_seed(seed++);
        auto z = torch::randn({N, S}, dtype);
        if (S == 100) z.sub_(2.0);  // few positives per row: fewer than k for some rows
        // Half the cases with the encoder bias added by the selection.
        auto bias = seed % 2 ? torch::randn({S}, dtype) : at::Tensor();
        auto orig = bias.defined() ? z + bias : z.clone();
        auto got = fast::topk_rows_positive(z, bias, k, /*write_back=*/true);
        // torch.topk's set (values are distinct) with ReLU's zeros dropped.
        auto top = orig.topk(std::min(k, S), 1);
        auto want =
            torch::zeros_like(orig).scatter(1, std::get<1>(top), torch::relu(std::get<0>(top)));
        EXPECT_TRUE(z.equal(want)) << "dense activations written back";
        EXPECT_TRUE(dense_of(got, S, orig.options()).equal(want));
        EXPECT_EQ(rows_of(got), expected_rows(orig, k, true));
      }
  }
}

TEST(FastPath, TopKRowsTiesKeepTheLowestColumn) {
  Threads t(2);
  torch::manual_seed(3);
  // Small integers: many ties at the boundary, zeros and negatives. At S = 4096 every k here
  // starts from the lower bound of the group maxima, which then ties with many entries.
  for (int64_t S : {300, 4096}) {
    auto z = torch::randint(-3, 4, {21, S}).to(torch::kFloat32);
    for (int64_t k : {1, 5, 40, 300}) {
      auto zc = z.clone();
      auto got = fast::topk_rows_positive(zc, at::Tensor(), k, false);
      EXPECT_TRUE(zc.equal(z)) << "write_back=false leaves z alone";
      EXPECT_EQ(rows_of(got), expected_rows(z, k, true)) << "S=" << S << " k=" << k;
    }
  }
}

TEST(FastPath, TopKRowsNeverSelectNaN) {
  Threads t(2);
  torch::manual_seed(4);
  // NaN scattered through rows long enough for the lower bound (one row all NaN but three).
  auto z = torch::randn({9, 8192});
  z.masked_fill_(torch::rand({9, 8192}) < 0.05, NAN);
  z[3].fill_(NAN);
  z[3][100] = 1.0;
  z[3][5000] = 2.0;
  z[3][8000] = -1.0;
  auto clean = torch::where(torch::isnan(z), torch::full({}, -INFINITY), z);
  auto got = fast::topk_rows_positive(z, at::Tensor(), 32, false);
  EXPECT_EQ(rows_of(got), expected_rows(clean, 32, true));
}

// The flat selection's expected entries, per row, from a stable descending sort of the whole.
std::vector<std::set<Entry>> expected_batch(const at::Tensor& z, int64_t keep) {
  auto sorted = z.reshape({-1}).sort(/*stable=*/true, 0, /*descending=*/true);
  auto v = std::get<0>(sorted).to(torch::kFloat64);
  auto i = std::get<1>(sorted);
  const int64_t S = z.size(1);
  std::vector<std::set<Entry>> out(z.size(0));
  for (int64_t r = 0; r < std::min<int64_t>(keep, z.numel()); ++r) {
    double x = v[r].item<double>();
    if (!(x > 0)) break;
    int64_t f = i[r].item<int64_t>();
    out[f / S].insert({f % S, x});
  }
  return out;
}

TEST(FastPath, BatchTopKEqualsTorchTopKOfTheFlatBatch) {
  for (int threads : {1, 2}) {
    Threads t(threads);
    uint64_t seed = 40;
    // Small (no sampled bound) and large enough for the sampled bound (N·S >= 1024, k·N/(N·S) < 5
    // %); keep above the number of positives; shapes that divide nothing.
    for (auto [N, S, k] : {std::tuple<int64_t, int64_t, int64_t>{7, 13, 2},
                           {33, 40, 5},
                           {64, 3001, 5},
                           {257, 1031, 3},
                           {5, 11, 40},
                           {16, 500, 1}})
      for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
        SCOPED_TRACE("N=" + std::to_string(N) + " S=" + std::to_string(S) +
                     " k=" + std::to_string(k));
        torch::manual_seed(seed++);
        auto z = torch::randn({N, S}, dtype);
        auto bias = seed % 2 ? torch::randn({S}, dtype) * 0.5 : at::Tensor();
        auto orig = bias.defined() ? z + bias : z.clone();
        const int64_t keep = std::min(k * N, N * S);
        auto got = fast::topk_batch_positive(z, bias, keep, true);
        auto flat = torch::relu(orig).reshape({-1});
        auto top = flat.topk(keep);
        auto want =
            torch::zeros_like(flat).scatter(0, std::get<1>(top), std::get<0>(top)).view({N, S});
        EXPECT_TRUE(z.equal(want)) << "dense activations written back";
        EXPECT_EQ(rows_of(got), expected_batch(orig, keep));
      }
  }
}

TEST(FastPath, BatchTopKSkewedRowsAndTies) {
  Threads t(2);
  torch::manual_seed(7);
  // Most of the mass in a few tokens (a strided sample sees few of them), and integer ties.
  auto z = torch::randn({200, 777});
  z.narrow(0, 3, 2).mul_(50.0);
  for (int64_t keep : {10, 200, 1554, 5000}) {
    auto zc = z.clone();
    EXPECT_EQ(rows_of(fast::topk_batch_positive(zc, at::Tensor(), keep, false)),
              expected_batch(z, keep))
        << keep;
  }
  auto zi = torch::randint(-2, 3, {150, 333}).to(torch::kFloat32);
  for (int64_t keep : {1, 150, 1000, 20000, 49950}) {
    auto zc = zi.clone();
    EXPECT_EQ(rows_of(fast::topk_batch_positive(zc, at::Tensor(), keep, false)),
              expected_batch(zi, keep))
        << keep;
  }
  auto neg = -torch::rand({40, 50});  // no positives at all
  EXPECT_EQ(fast::topk_batch_positive(neg, at::Tensor(), 100, true).col.numel(), 0);
  EXPECT_EQ(neg.abs().sum().item<double>(), 0.0);
}

TEST(FastPath, BatchTopKAtTrainingShapesEqualsTorchTopK) {
  // Shapes where the sampled bound applies (k per token a small share of the latents), so the
  // candidates are collected in one scan: latents of very different scales (as in training),
  // with a bias, and integer values with many ties at the boundary; one and two threads.
  for (int threads : {1, 2}) {
    Threads t(threads);
    for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
      torch::manual_seed(26);
      auto scale = torch::exp(torch::randn({4096}, dtype) * 1.5);
      auto z = torch::randn({256, 4096}, dtype) * scale;
      auto bias = torch::randn({4096}, dtype) * 0.1;
      auto zi = torch::randint(-3000, 2000, {256, 4096}).to(dtype);
      for (int64_t k : {8, 32}) {
        SCOPED_TRACE("threads " + std::to_string(threads) + " k " + std::to_string(k));
        const int64_t keep = k * 256;
        auto zc = z.clone();
        EXPECT_EQ(rows_of(fast::topk_batch_positive(zc, bias, keep, true)),
                  expected_batch(z + bias, keep));
        EXPECT_EQ((zc > 0).sum().item<int64_t>(), keep);
        auto zic = zi.clone();
        EXPECT_EQ(rows_of(fast::topk_batch_positive(zic, at::Tensor(), keep, false)),
                  expected_batch(zi, keep));
      }
    }
  }
}

TEST(FastPath, BatchTopKWhenTheSampleMisjudgesTheBoundary) {
  Threads t(2);
  // The selection's bound comes from a sample of 16,384 values (row s·N/16384, column
  // s·2654435761 mod S). Here the sampled positions hold small values and every other one a
  // large value, so far more than the expected ~2·keep values lie above the sampled bound: the
  // one-scan candidate list overflows and the selection is redone by histogram. The answer must
  // not depend on which way it went.
  const int64_t N = 2, S = 100000;
  auto z = torch::rand({N, S}) + 1.0;
  auto acc = z.accessor<float, 2>();
  for (int64_t s = 0; s < 16384; ++s) {
    const int64_t n = (s * N) / 16384;
    const int64_t j = static_cast<int64_t>((static_cast<uint64_t>(s) * 2654435761u) % S);
    acc[n][j] = 0.001f * static_cast<float>(s % 7 + 1);
  }
  for (int64_t keep : {1000, 5000}) {
    auto zc = z.clone();
    EXPECT_EQ(rows_of(fast::topk_batch_positive(zc, at::Tensor(), keep, true)),
              expected_batch(z, keep))
        << keep;
    // The write-back: z holds the kept values and zeros.
    EXPECT_EQ((zc > 0).sum().item<int64_t>(), keep);
  }
}

TEST(FastPath, AuxKColumnsEqualTorchTopKOverDeadLatents) {
  Threads t(2);
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    auto z = torch::randn({19, 203}, dtype);
    auto dead = torch::rand({203}) < 0.3;
    auto cols = dead.nonzero().squeeze(1);
    const int64_t C = cols.numel();
    auto bias = torch::randn({203}, dtype);
    for (int64_t k : {int64_t{1}, int64_t{7}, C}) {
      bool with_bias = k == 7;
      auto got = fast::topk_rows_of_columns(z, with_bias ? bias : at::Tensor(), cols, k);
      auto zb = with_bias ? z + bias : z;
      auto masked = torch::where(dead.unsqueeze(0), zb, torch::full({}, -INFINITY, z.options()));
      auto top = masked.topk(k, 1);
      std::vector<std::set<Entry>> want(19);
      for (int64_t n = 0; n < 19; ++n)
        for (int64_t r = 0; r < k; ++r)
          want[n].insert(
              {std::get<1>(top)[n][r].item<int64_t>(), std::get<0>(top)[n][r].item<double>()});
      EXPECT_EQ(rows_of(got), want) << "k=" << k;
    }
  }
}

// S not a multiple of the 16-latent blocks; the second shape's [N, D + Di] float64 rows (9 MiB)
// are summed in two passes over column slices, of different widths for the decoder (D) and the
// encoder (Di, a transcoder's input width).
void check_sparse_weight_grads(int64_t N, int64_t S, int64_t D, int64_t Di) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto za = torch::randn({N, S}, opts), zz = torch::randn({N, S}, opts);
  auto A = fast::topk_rows_positive(za, at::Tensor(), 6, false);
  auto cols = (torch::rand({S}) < 0.4).nonzero().squeeze(1);
  auto Z = fast::topk_rows_of_columns(zz, at::Tensor(), cols, 4);
  auto g = torch::randn({N, D}, opts), h = torch::randn({N, D}, opts),
       x = torch::randn({N, Di}, opts);
  auto dz = torch::randn({A.col.numel()}, opts), dzz = torch::randn({Z.col.numel()}, opts);
  auto gW_dec = torch::full({S, D}, 7.0, opts), gW_enc = torch::full({Di, S}, 7.0, opts);
  auto gb = torch::full({S}, 7.0, opts);
  // Dense coefficient matrices.
  auto Fa = dense_of(A, S, opts), Fz = dense_of(Z, S, opts);
  fast::SparseRows Adz{A.row_ptr, A.col, dz}, Zdz{Z.row_ptr, Z.col, dzz};
  auto Da = dense_of(Adz, S, opts), Dz = dense_of(Zdz, S, opts);
  // A third group with a decoder term only, a fourth with an encoder term only (latents shared
  // with A and Z: every group adds to the same rows).
  auto zw = torch::randn({N, S}, opts);
  auto W = fast::topk_rows_positive(zw, at::Tensor(), 3, false);
  auto dzw = torch::randn({W.col.numel()}, opts), v = torch::randn({N, D}, opts);
  fast::SparseRows Wdz{W.row_ptr, W.col, dzw};
  auto Fw = dense_of(W, S, opts), Dw = dense_of(Wdz, S, opts);
  auto zeros_dec = torch::zeros({S, D}, opts), zeros_enc = torch::zeros({Di, S}, opts);
  for (int groups_used : {1, 2, 4}) {
    std::vector<fast::GradGroup> groups{{A, A.val, g, dz}};
    if (groups_used >= 2) groups.push_back({Z, Z.val, h, dzz});
    if (groups_used >= 4) {
      groups.push_back({W, W.val, v, at::Tensor()});
      groups.push_back({W, at::Tensor(), at::Tensor(), dzw});
    }
    const bool aux = groups_used >= 2, extra = groups_used >= 4;
    fast::sparse_weight_grads(groups, x, gW_dec, gW_enc, gb);
    auto want_dec =
        Fa.t().mm(g) + (aux ? Fz.t().mm(h) : zeros_dec) + (extra ? Fw.t().mm(v) : zeros_dec);
    auto want_enc =
        x.t().mm(Da) + (aux ? x.t().mm(Dz) : zeros_enc) + (extra ? x.t().mm(Dw) : zeros_enc);
    auto want_b = Da.sum(0) + (aux ? Dz.sum(0) : torch::zeros({S}, opts)) +
                  (extra ? Dw.sum(0) : torch::zeros({S}, opts));
    EXPECT_LT((gW_dec - want_dec).abs().max().item<double>(), 1e-12) << groups_used;
    EXPECT_LT((gW_enc - want_enc).abs().max().item<double>(), 1e-12) << groups_used;
    EXPECT_LT((gb - want_b).abs().max().item<double>(), 1e-12) << groups_used;
  }
}

TEST(FastPath, SparseWeightGradsEqualDenseProducts) {
  Threads t(2);
  torch::manual_seed(12);
  check_sparse_weight_grads(23, 45, 9, 9);
  check_sparse_weight_grads(2048, 45, 300, 260);
}

// The ATen Adam update the fused loop replaced.
void adam_reference(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, double b1,
                    double b2, double eps, double lr, int64_t t) {
  double bias1 = 1.0 - std::pow(b1, static_cast<double>(t));
  double bias2 = 1.0 - std::pow(b2, static_cast<double>(t));
  m.mul_(b1).add_(g, 1.0 - b1);
  v.mul_(b2).addcmul_(g, g, 1.0 - b2);
  auto denom = (v.sqrt() / std::sqrt(bias2)).add_(eps);
  p.addcdiv_(m, denom, -lr / bias1);
}

TEST(AdamFused, EqualsTheAtenFormulaInFloat64AndFloat32) {
  Threads t(2);
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(21);
    auto p0 = torch::randn({37, 129}, dtype);
    std::map<std::string, at::Tensor> params = {{"w", p0.clone()}, {"b", torch::randn({5}, dtype)}};
    auto rp = params.at("w").clone(), rb = params.at("b").clone();
    auto mw = torch::zeros_like(rp), vw = torch::zeros_like(rp), mb = torch::zeros_like(rb),
         vb = torch::zeros_like(rb);
    Adam adam(0.9, 0.999);
    for (int64_t s = 1; s <= 5; ++s) {
      auto gw = torch::randn({37, 129}, dtype), gb = torch::randn({5}, dtype);
      if (s == 3) gw.narrow(0, 4, 10).zero_();  // idle latents: moments still decay
      adam.step(params, {{"w", gw}, {"b", gb}}, 1e-3 * s);
      adam_reference(rp, gw, mw, vw, 0.9, 0.999, 1e-8, 1e-3 * s, s);
      adam_reference(rb, gb, mb, vb, 0.9, 0.999, 1e-8, 1e-3 * s, s);
    }
    const double tol = dtype == torch::kFloat64 ? 1e-14 : 1e-6;
    EXPECT_LT((params.at("w") - rp).abs().max().item<double>(), tol);
    EXPECT_LT((params.at("b") - rb).abs().max().item<double>(), tol);
    EXPECT_LT((adam.exp_avg().at("w") - mw).abs().max().item<double>(), tol);
    EXPECT_LT((adam.exp_avg_sq().at("w") - vw).abs().max().item<double>(), tol);
  }
  // A non-contiguous gradient takes the ATen path, with the same result.
  auto p = torch::randn({6, 4}, torch::kFloat64);
  std::map<std::string, at::Tensor> a = {{"w", p.clone()}}, b = {{"w", p.clone()}};
  auto g = torch::randn({4, 6}, torch::kFloat64);
  Adam fa(0.9, 0.99), fb(0.9, 0.99);
  fa.step(a, {{"w", g.t()}}, 0.01);
  fb.step(b, {{"w", g.t().contiguous()}}, 0.01);
  EXPECT_LT((a.at("w") - b.at("w")).abs().max().item<double>(), 1e-15);
}

TEST(AdamFused, ClipGradNormEqualsTheFloat64Formula) {
  Threads t(2);
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    torch::manual_seed(22);
    std::map<std::string, at::Tensor> g = {
        {"a", torch::randn({301, 17}, dtype)},
        {"b", torch::randn({7}, dtype)},
        {"c", torch::randn({5, 3}, dtype).t()}};  // non-contiguous: ATen
    auto copy = g;
    for (auto& [n, t2] : copy) t2 = t2.clone();
    double sq = 0;
    for (auto& [n, t2] : copy) sq += t2.to(torch::kFloat64).pow(2).sum().item<double>();
    double want = std::sqrt(sq);
    double norm = clip_grad_norm(g, 1.0);
    EXPECT_NEAR(norm, want, 1e-12 * want);
    double coef = 1.0 / (want + 1e-6);
    for (auto& [n, t2] : g)
      EXPECT_LT((t2.to(torch::kFloat64) - (copy.at(n) * coef).to(torch::kFloat64))
                    .abs()
                    .max()
                    .item<double>(),
                dtype == torch::kFloat64 ? 1e-15 : 1e-7)
          << n;
  }
}

TEST(AdamFused, RemoveParallelGradientEqualsTheAtenFormula) {
  Threads t(2);
  TrainingSaeConfig c;
  c.architecture = "topk";
  c.d_in = 13;
  c.d_sae = 50;
  c.k = 4;
  auto sae = make_training_sae(c);
  torch::manual_seed(23);
  auto W = torch::randn({50, 13}, torch::kFloat64);
  W = W / W.norm(2, {1}, true);
  auto g = torch::randn({50, 13}, torch::kFloat64);
  sae->params()["W_dec"] = W;
  sae->grads()["W_dec"] = g.clone();
  remove_gradient_parallel_to_decoder_directions(*sae);
  auto want = g - (g * W).sum(1, true) * W;
  EXPECT_LT((sae->grads()["W_dec"] - want).abs().max().item<double>(), 1e-14);
  EXPECT_LT((sae->grads()["W_dec"] * W).sum(1).abs().max().item<double>(), 1e-14);
}

TEST(FastPath, AllFiniteFindsEveryNaNAndInfinity) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    torch::manual_seed(24);
    auto x = torch::randn({37, 29}, dtype);
    EXPECT_TRUE(fast::all_finite(x));
    // The largest finite value is finite (x − x must not overflow into a false alarm).
    x[3][4] = dtype == torch::kFloat32 ? 3.4e38 : 1.7e308;
    x[5][6] = dtype == torch::kFloat32 ? -3.4e38 : -1.7e308;
    EXPECT_TRUE(fast::all_finite(x));
    const double bad[] = {std::nan(""), INFINITY, -INFINITY};
    for (double v : bad)
      for (int64_t i : {int64_t(0), int64_t(500), x.numel() - 1}) {
        auto y = x.clone();
        y.view({-1})[i] = v;
        EXPECT_FALSE(fast::all_finite(y)) << v << " at " << i;
        EXPECT_EQ(fast::all_finite(y), at::isfinite(y).all().item<bool>());
      }
  }
}

TEST(FastPath, ExplainedVarianceSumsEqualTheFloat64Formula) {
  for (int threads : {1, 2}) {
    Threads t(threads);
    for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
      torch::manual_seed(25);
      auto x = torch::randn({301, 23}, dtype) * 3 + 1;
      auto x_hat = x + torch::randn({301, 23}, dtype) * 0.5;
      auto got = fast::explained_variance_sums(x, x_hat);
      auto xd = x.to(torch::kFloat64), hd = x_hat.to(torch::kFloat64);
      auto want = torch::cat(
          {(xd - hd).pow(2).sum().reshape({1}), xd.sum(0), xd.pow(2).sum().reshape({1})});
      ASSERT_EQ(got.scalar_type(), torch::kFloat64);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT(((got - want).abs() / want.abs().clamp_min(1)).max().item<double>(), 1e-12)
          << dtype << " threads " << threads;
    }
  }
}

TEST(FastPath, BatchTopKThresholdUpdateMatchesAutograd) {
  for (const char* arch : {"batchtopk", "matryoshka_batchtopk"}) {
    SCOPED_TRACE(arch);
    TrainingSaeConfig c;
    c.architecture = arch;
    c.d_in = 8;
    c.d_sae = 40;
    c.k = 4;
    c.matryoshka_widths = {6, 20};
    c.topk_threshold_lr = 0.3;
    c.use_fast_path = true;
    auto fast = make_training_sae(c);
    c.use_fast_path = false;
    auto ref = make_training_sae(c);
    torch::manual_seed(24);
    for (auto& [name, p] : ref->params()) {
      p = torch::randn(p.sizes(), torch::kFloat64) * 0.5;
      fast->params()[name] = p.clone();
    }
    for (int s = 0; s < 3; ++s) {
      auto x = torch::randn({21, 8}, torch::kFloat64);
      auto a = fast->forward_backward(x, {});
      auto b = ref->forward_backward(x, {});
      fast->after_step(a);
      ref->after_step(b);
      EXPECT_NEAR(fast->buffers().at("topk_threshold").item<double>(),
                  ref->buffers().at("topk_threshold").item<double>(), 1e-15);
    }
    EXPECT_GT(fast->buffers().at("topk_threshold").item<double>(), 0.0);
  }
}

// The ATen selection and scatter of the k-sparse step (what a non-CPU device runs), on the CPU.
TEST(FastPath, SparseStepsAtenPathMatchesAutograd) {
  struct Reset {
    ~Reset() { fast::set_force_aten_kernels(false); }
  } reset;
  fast::set_force_aten_kernels(true);
  uint64_t seed = 600;
  for (const char* arch : {"topk", "batchtopk", "matryoshka_batchtopk"})
    for (double dead : {0.0, 0.5}) {
      TrainingSaeConfig c;
      c.architecture = arch;
      c.d_in = 8;
      c.d_sae = 40;
      c.k = 5;
      c.matryoshka_widths = {10, 25};
      c.use_fast_path = true;
      auto fast_sae = make_training_sae(c);
      c.use_fast_path = false;
      auto ref = make_training_sae(c);
      torch::manual_seed(seed++);
      for (auto& [name, p] : ref->params()) {
        p = torch::randn(p.sizes(), torch::kFloat64) * 0.5;
        fast_sae->params()[name] = p.clone();
      }
      StepContext ctx;
      if (dead > 0) ctx.dead_mask = torch::rand({40}, torch::kFloat64) < dead;
      auto x = torch::randn({33, 8}, torch::kFloat64);
      auto a = fast_sae->forward_backward(x, ctx);
      auto b = ref->forward_backward(x, ctx);
      EXPECT_NEAR(a.loss, b.loss, 1e-10 * std::max(1.0, std::abs(b.loss)))
          << arch << " dead " << dead;
      for (const auto& [name, v] : b.losses)
        EXPECT_NEAR(a.losses.count(name) ? a.losses.at(name) : NAN, v,
                    1e-10 * std::max(1.0, std::abs(v)))
            << arch << " " << name;
      EXPECT_LT((a.feature_acts - b.feature_acts).abs().max().item<double>(), 1e-10) << arch;
      for (const auto& [name, g] : ref->grads())
        EXPECT_LT((fast_sae->grads().at(name) - g).abs().max().item<double>(),
                  1e-10 * std::max(1.0, g.abs().max().item<double>()))
            << arch << " grad " << name << " dead " << dead;
    }
}

// The trainer's fire counts: column counts of f > 0, against ATen's, for both float dtypes, widths
// that are not a multiple of the stripe, one row, and values at the boundary (0, -0, NaN, inf).
TEST(FireCounts, EqualATenColumnCountsOfPositives) {
  torch::manual_seed(3);
  for (auto dt : {torch::kFloat32, torch::kFloat64})
    for (auto [n, s] : {std::pair<int64_t, int64_t>{1, 5}, {7, 4097}, {300, 9000}, {64, 4096}}) {
      auto f = torch::relu(torch::randn({n, s}, dt));
      f.view({-1}).index_put_({torch::randint(0, n * s, {std::min<int64_t>(n * s, 40)})}, -0.0);
      if (n * s > 10) {
        f.view({-1})[3] = std::nan("");
        f.view({-1})[7] = INFINITY;
        f.view({-1})[9] = -INFINITY;
      }
      const auto got = count_positive_per_column(f);
      EXPECT_EQ(got.scalar_type(), torch::kLong);
      EXPECT_TRUE(got.equal((f > 0).sum(0).to(torch::kLong))) << n << "x" << s;
      // A non-contiguous view goes through ATen and agrees.
      EXPECT_TRUE(count_positive_per_column(f.t().contiguous().t()).equal(got));
    }
}

}  // namespace
}  // namespace saelab
