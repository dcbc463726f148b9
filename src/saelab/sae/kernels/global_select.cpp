// Global BatchTopK selection across ranks (global_select.h).
#include "saelab/sae/kernels/global_select.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "saelab/core/collectives.h"

namespace saelab {

int64_t global_keep_count(const at::Tensor& candidates, int64_t keep, Collectives& c) {
  auto mine = candidates.reshape({-1}).to(at::kCPU, at::kDouble);
  const int64_t n_mine = mine.numel();
  auto all = c.gather_rows(mine);
  if (all.numel() <= keep) return n_mine;
  // The boundary value: the keep-th largest of all candidates.
  const double tau =
      std::get<0>(all.topk(keep, 0, /*largest=*/true, /*sorted=*/false)).min().item<double>();
  auto sizes = c.gather_rows(torch::full({1}, n_mine, torch::kInt64));
  const int64_t above_all = (all > tau).sum().item<int64_t>();
  int64_t ties_left = keep - above_all;  // boundary ties still to give out, in rank order
  int64_t offset = 0;
  for (int r = 0; r < c.rank(); ++r) {
    const int64_t n = sizes[r].item<int64_t>();
    ties_left -= (all.narrow(0, offset, n) == tau).sum().item<int64_t>();
    offset += n;
  }
  const int64_t above = (mine > tau).sum().item<int64_t>();
  const int64_t ties = (mine == tau).sum().item<int64_t>();
  return above + std::clamp<int64_t>(ties_left, 0, ties);
}

double global_min(double local, Collectives& c) {
  const double inf = std::numeric_limits<double>::infinity();
  auto t = torch::full({1}, std::isnan(local) ? inf : local, torch::kFloat64);
  c.min_(t);
  const double m = t.item<double>();
  return m == inf ? std::numeric_limits<double>::quiet_NaN() : m;
}

}  // namespace saelab
