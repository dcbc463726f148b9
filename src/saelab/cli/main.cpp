// `saelab <verb>`: parses the command line, runs the verb, and turns errors into one-line messages
// with a non-zero exit (1 for bad input, 2 for usage, 3 for an internal error).
#include <ATen/Parallel.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "saelab/cli/command.h"
#include "saelab/core/error.h"

namespace saelab::cli {

std::vector<CommandSpec>& command_registry() {
  static std::vector<CommandSpec> r;
  return r;
}

bool register_command(std::string name, std::string summary, Setup setup) {
  command_registry().push_back({std::move(name), std::move(summary), std::move(setup)});
  return true;
}

}  // namespace saelab::cli

int main(int argc, char** argv) {
  using namespace saelab::cli;
  // Debian's LibTorch starts with one intra-op thread; use every core unless the user chose.
  if (!std::getenv("OMP_NUM_THREADS"))
    at::set_num_threads(std::max(1u, std::thread::hardware_concurrency()));
  CLI::App app{
      "saelab: train, evaluate and inspect sparse autoencoders on transformer activations"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Help for every verb");
  std::vector<std::pair<CLI::App*, std::function<int()>>> runs;
  auto& reg = command_registry();
  std::sort(reg.begin(), reg.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (auto& spec : reg) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.summary);
    runs.emplace_back(sub, spec.setup(sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const saelab::Error& e) {
    std::cerr << "saelab: error: " << e.what() << "\n";
    return 1;
  }
  try {
    for (auto& [sub, run] : runs)
      if (sub->parsed()) return run();
  } catch (const saelab::Error& e) {
    std::cerr << "saelab: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    std::cerr << "saelab: internal error (torch): " << msg.substr(0, msg.find('\n')) << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "saelab: internal error: " << e.what() << "\n";
    return 3;
  }
  return 2;
}
