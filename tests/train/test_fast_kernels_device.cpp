// The ATen versions of the CSR kernels (what runs on CUDA) against the CPU loops, in float64, on
// random CSR sets with empty rows, repeated latents across tokens and uneven row lengths; the
// CPU loops also against the dense formulas.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "saelab/core/error.h"
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
    fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_loop);
    {
      ForceAten f;
      fast::csr_decode(c.row_ptr, c.col, c.coef, W, dec_aten);
      auto dot_aten = fast::csr_gather_dot(c.row_ptr, c.col, W, v);
      fast::csr_scatter_rows(c.row_ptr, c.col, c.coef, v, sc_aten);
      EXPECT_TRUE(torch::allclose(dot_loop, dot_aten, 1e-12, 1e-12));
    }
    EXPECT_TRUE(torch::allclose(dec_loop, dec_aten, 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(sc_loop, sc_aten, 1e-12, 1e-12));
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
