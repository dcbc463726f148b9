// Collectives helpers built on the interface (collectives.h).
#include "saelab/core/collectives.h"

#include <torch/torch.h>

#include <cstring>

namespace saelab {

namespace {
struct Done : Collectives::Pending {
  void wait() override {}
};
}  // namespace

std::unique_ptr<Collectives::Pending> Collectives::start_sum_(at::Tensor& t) {
  sum_(t);
  return std::make_unique<Done>();
}

std::string Collectives::broadcast_string(const std::string& s, int root) {
  at::Tensor n = torch::full({1}, static_cast<int64_t>(s.size()), torch::kInt64);
  broadcast_(n, root);
  at::Tensor bytes = torch::zeros({n.item<int64_t>()}, torch::kUInt8);
  if (rank() == root && !s.empty()) std::memcpy(bytes.data_ptr<uint8_t>(), s.data(), s.size());
  broadcast_(bytes, root);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<size_t>(bytes.numel()));
}

}  // namespace saelab
