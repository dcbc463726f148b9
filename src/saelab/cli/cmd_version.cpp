// `saelab version`: the build's LibTorch version, threads and BLAS, for bug reports.
#include <torch/torch.h>

#include <iostream>

#include "saelab/cli/command.h"

namespace {
auto setup = [](CLI::App* sub) -> std::function<int()> {
  return [] {
    std::cout << "saelab 0.1.0 (LibTorch " << TORCH_VERSION << ", " << at::get_num_threads()
              << " threads)\n";
    return 0;
  };
};
}  // namespace
SAELAB_COMMAND("version", "Print the saelab and LibTorch versions", setup);
