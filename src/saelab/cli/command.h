// Subcommand registry of the `saelab` executable. Each verb lives in its own file and registers
// itself with SAELAB_COMMAND; main.cpp parses argv and runs the chosen verb.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace saelab::cli {

// A verb's setup adds its options to `sub` and returns the function that runs it (exit code).
using Setup = std::function<std::function<int()>(CLI::App* sub)>;

struct CommandSpec {
  std::string name;
  std::string summary;
  Setup setup;
};

std::vector<CommandSpec>& command_registry();
bool register_command(std::string name, std::string summary, Setup setup);

}  // namespace saelab::cli

#define SAELAB_CONCAT_(a, b) a##b
#define SAELAB_CONCAT(a, b) SAELAB_CONCAT_(a, b)
#define SAELAB_COMMAND(name, summary, setup_fn)                   \
  static const bool SAELAB_CONCAT(saelab_registered_, __LINE__) = \
      ::saelab::cli::register_command(name, summary, setup_fn)
