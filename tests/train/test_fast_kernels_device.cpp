// The ATen versions of the CSR kernels (what runs on a GPU without the CUDA kernels) against the
// CPU loops, in float64, on random CSR sets with empty rows, repeated latents across tokens and
// uneven row lengths; the CPU loops also against the dense formulas. The CUDA kernels' threads
// (csr_kernel_bodies.h) run on the host against the loops, and on a GPU, when there is one,
// the kernels themselves against the ATen versions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
#include "saelab/sae/kernels/csr_kernel_bodies.h"
#include "saelab/sae/kernels/fast_kernels.h"
#include "saelab/sae/training_sae.h"

namespace saelab {
namespace {

struct Csr {
  at::Tensor row_ptr, col, coef;
};

// Token n gets n % 5 distinct latents (rows 0, 5, 10, ... empty); tokens share latents.
Csr random_csr(int64_t N, int64_t S) {
  std::vector<int64_t> rp{0}, cl;
  for (int64_t n = 0; n < N; ++n) {
    auto perm = torch::randperm(S, torch::kInt64);
    for (int64_t j = 0; j < n % 5; ++j) cl.push_back(perm[j].item<int64_t>());
    rp.push_back(static_cast<int64_t>(cl.size()));
  }
  Csr c;
  c.row_ptr = torch::tensor(rp, torch::kInt64);
  c.col = torch::tensor(cl, torch::kInt64);
  c.coef = torch::randn({static_cast<int64_t>(cl.size())}, torch::kFloat64);
  return c;
}

struct ForceAten {
  ForceAten() { fast::set_force_aten_kernels(true); }
  ~ForceAten() { fast::set_force_aten_kernels(false); }
};

TEST(FastKernelsDevice, AtenVersionsEqualCpuLoops) {
  torch::manual_seed(3);
  // The last shape's decoder (31 MiB of float64) is read in three passes over column slices.
  for (auto [N, S, D] :
       {std::tuple<int64_t, int64_t, int64_t>{17, 40, 9}, {64, 300, 33}, {64, 4096, 1000}}) {
    Csr c = random_csr(N, S);
    auto W = torch::randn({S, D}, torch::kFloat64);
    auto v = torch::randn({N, D}, torch::kFloat64);
    auto dec_start = torch::randn({N, D}, torch::kFloat64), dec_loop = dec_start.clone(),
         dec_aten = dec_start.clone();
    auto sc_start = torch::randn({S, D}, torch::kFloat64), sc_loop = sc_start.clone(),
         sc_aten = sc_start.clone();
    fast::csr_decode(c.row_ptr, c.col, c.coef, W, dec_loop);
    auto dot_loop = fast::csr_gather_dot(c.row_ptr, c.col, W, v);
    auto sums_start = torch::randn({S}, torch::kFloat64), sums_loop = sums_start.clone(),
         sums_aten = sums_start.clone();
    fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_loop, &sums_loop);
    {
      ForceAten f;
      fast::csr_decode(c.row_ptr, c.col, c.coef, W, dec_aten);
      auto dot_aten = fast::csr_gather_dot(c.row_ptr, c.col, W, v);
      fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_aten, &sums_aten);
      EXPECT_TRUE(torch::allclose(dot_loop, dot_aten, 1e-12, 1e-12));
    }
    EXPECT_TRUE(torch::allclose(dec_loop, dec_aten, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(sc_loop, sc_aten, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(sums_loop, sums_aten, 1e-12, 1e-12));
    // Both against the dense formulas, written here: A [N, S] holds each entry's coefficient.
    auto A = torch::zeros({N, S}, torch::kFloat64);
    auto dot_ref = torch::zeros({c.col.numel()}, torch::kFloat64);
    auto rp = c.row_ptr.accessor<int64_t, 1>();
    auto cl = c.col.accessor<int64_t, 1>();
    auto cf = c.coef.accessor<double, 1>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t e = rp[n]; e < rp[n + 1]; ++e) {
        A[n][cl[e]] += cf[e];
        dot_ref[e] = (W[cl[e]] * v[n]).sum();
      }
    EXPECT_TRUE(torch::allclose(dot_loop, dot_ref, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(dec_loop - dec_start, A.mm(W), 1e-10, 1e-10));
    EXPECT_TRUE(torch::allclose(sc_loop - sc_start, A.t().mm(v), 1e-10, 1e-10));
    EXPECT_TRUE(torch::allclose(sums_loop - sums_start, A.sum(0), 1e-10, 1e-10));
  }
}

// The entries grouped by latent as the scatter kernel reads them, built here with a stable sort
// of the entry indices by column: perm, col_ptr [S + 1] and each entry's token.
struct ByLatent {
  std::vector<int64_t> perm, col_ptr, rows;
};
ByLatent by_latent(const Csr& c, int64_t S) {
  const int64_t E = c.col.numel(), N = c.row_ptr.numel() - 1;
  auto cl = c.col.accessor<int64_t, 1>();
  auto rp = c.row_ptr.accessor<int64_t, 1>();
  ByLatent g;
  for (int64_t e = 0; e < E; ++e) g.perm.push_back(e);
  std::stable_sort(g.perm.begin(), g.perm.end(),
                   [&](int64_t a, int64_t b) { return cl[a] < cl[b]; });
  g.col_ptr.assign(S + 1, 0);
  for (int64_t e = 0; e < E; ++e) ++g.col_ptr[cl[e] + 1];
  for (int64_t s = 0; s < S; ++s) g.col_ptr[s + 1] += g.col_ptr[s];
  g.rows.resize(E);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = rp[n]; e < rp[n + 1]; ++e) g.rows[e] = n;
  return g;
}

// Every thread of each CUDA kernel's grid, run in turn on the host (block sizes below, at and
// above D, not dividing it), against the ATen versions and the CPU loops.
TEST(FastKernelsDevice, CudaKernelThreadsEqualCpuLoops) {
  torch::manual_seed(4);
  for (auto [N, S, D] : {std::tuple<int64_t, int64_t, int64_t>{17, 40, 9}, {64, 300, 77}}) {
    Csr c = random_csr(N, S);
    auto W = torch::randn({S, D}, torch::kFloat64);
    auto v = torch::randn({N, D}, torch::kFloat64);
    const int64_t* rp = c.row_ptr.data_ptr<int64_t>();
    const int64_t* cl = c.col.data_ptr<int64_t>();
    const double* cf = c.coef.data_ptr<double>();
    auto dec_start = torch::randn({N, D}, torch::kFloat64), dec_loop = dec_start.clone();
    fast::csr_decode(c.row_ptr, c.col, c.coef, W, dec_loop);
    auto dot_loop = fast::csr_gather_dot(c.row_ptr, c.col, W, v);
    auto sc_start = torch::randn({S, D}, torch::kFloat64), sc_loop = sc_start.clone();
    auto sums_start = torch::randn({S}, torch::kFloat64), sums_loop = sums_start.clone();
    fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_loop, &sums_loop);
    auto dec_aten = dec_start.clone(), sc_aten = sc_start.clone(), sums_aten = sums_start.clone();
    at::Tensor dot_aten;
    {
      ForceAten f;
      fast::csr_decode(c.row_ptr, c.col, c.coef, W, dec_aten);
      dot_aten = fast::csr_gather_dot(c.row_ptr, c.col, W, v);
      fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_aten, &sums_aten);
    }
    const ByLatent g = by_latent(c, S);
    for (int64_t threads : {int64_t{32}, int64_t{64}, int64_t{256}}) {
      SCOPED_TRACE("D " + std::to_string(D) + ", threads " + std::to_string(threads));
      auto dec = dec_start.clone();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t t = 0; t < threads; ++t)
          fast::csr_body::decode<double>(n, t, threads, rp, cl, cf, W.data_ptr<double>(),
                                         dec.data_ptr<double>(), D);
      EXPECT_TRUE(torch::allclose(dec, dec_loop, 1e-12, 1e-12));
      EXPECT_TRUE(torch::allclose(dec, dec_aten, 1e-12, 1e-12));
      auto sc = sc_start.clone(), sums = sums_start.clone();
      for (int64_t s = 0; s < S; ++s)
        for (int64_t t = 0; t < threads; ++t)
          fast::csr_body::scatter<double>(s, t, threads, g.col_ptr.data(), g.perm.data(),
                                          g.rows.data(), cf, v.data_ptr<double>(),
                                          sc.data_ptr<double>(), sums.data_ptr<double>(), D);
      EXPECT_TRUE(torch::allclose(sc, sc_loop, 1e-12, 1e-12));
      EXPECT_TRUE(torch::allclose(sums, sums_loop, 1e-12, 1e-12));
      EXPECT_TRUE(torch::allclose(sc, sc_aten, 1e-12, 1e-12));
      EXPECT_TRUE(torch::allclose(sums, sums_aten, 1e-12, 1e-12));
    }
    auto dot = torch::empty({c.col.numel()}, torch::kFloat64);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = rp[n]; i < rp[n + 1]; ++i) {
        double lanes[fast::csr_body::kWarp];
        for (int lane = 0; lane < fast::csr_body::kWarp; ++lane)
          lanes[lane] = fast::csr_body::gather_dot_lane<double>(
              i, n, lane, cl, W.data_ptr<double>(), v.data_ptr<double>(), D);
        dot[i] = fast::csr_body::warp_tree_sum(lanes);
      }
    EXPECT_TRUE(torch::allclose(dot, dot_loop, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(dot, dot_aten, 1e-12, 1e-12));
  }
}

// The CUDA kernels themselves, where a GPU and a build with them exist, against the ATen
// versions on the same GPU, in float64 and float32.
TEST(FastKernelsDevice, CudaKernelsEqualAtenOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (!fast::have_cuda_kernels()) GTEST_SKIP() << "this build has no CUDA kernels";
  torch::manual_seed(5);
  const auto cuda = torch::Device(torch::kCUDA);
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-4;
    for (auto [N, S, D] : {std::tuple<int64_t, int64_t, int64_t>{17, 40, 9}, {512, 8192, 768}}) {
      Csr c = random_csr(N, S);
      auto rp = c.row_ptr.to(cuda), cl = c.col.to(cuda), cf = c.coef.to(cuda).to(dtype);
      auto W = torch::randn({S, D}, torch::dtype(dtype).device(cuda));
      auto v = torch::randn({N, D}, torch::dtype(dtype).device(cuda));
      auto dec = torch::randn({N, D}, W.options()), dec_aten = dec.clone();
      auto sc = torch::randn({S, D}, W.options()), sc_aten = sc.clone();
      auto sums = torch::randn({S}, W.options()), sums_aten = sums.clone();
      fast::csr_decode(rp, cl, cf, W, dec);
      auto dot = fast::csr_gather_dot(rp, cl, W, v);
      fast::csr_scatter_rows(rp, cl, cf, v, sc, &sums);
      ForceAten f;
      fast::csr_decode(rp, cl, cf, W, dec_aten);
      auto dot_aten = fast::csr_gather_dot(rp, cl, W, v);
      fast::csr_scatter_rows(rp, cl, cf, v, sc_aten, &sums_aten);
      EXPECT_TRUE(torch::allclose(dec, dec_aten, tol, tol));
      EXPECT_TRUE(torch::allclose(dot, dot_aten, tol, tol));
      EXPECT_TRUE(torch::allclose(sc, sc_aten, tol, tol));
      EXPECT_TRUE(torch::allclose(sums, sums_aten, tol, tol));
    }
  }
}

std::string error_of(const std::string& device) {
  try {
    training_device(device);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainingDevice, NamesAndOneLineErrors) {
  EXPECT_TRUE(training_device("cpu").is_cpu());
  EXPECT_NE(error_of("gpu").find("expected cpu, cuda or cuda:N"), std::string::npos)
      << error_of("gpu");
  EXPECT_NE(error_of("mps").find("cpu or cuda"), std::string::npos) << error_of("mps");
  if (!torch::cuda::is_available()) {
    EXPECT_NE(error_of("cuda").find("without CUDA"), std::string::npos) << error_of("cuda");
    EXPECT_NE(error_of("cuda:1").find("without CUDA"), std::string::npos);
  }
}

}  // namespace
}  // namespace saelab
