// `saelab <verb>`: parses the command line, runs the verb, and turns errors into one-line messages
// with a non-zero exit (1 for bad input, 2 for usage, 3 for an internal error).
#include <ATen/Parallel.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
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

namespace {

// "rank R: " in a rank of a distributed run (torchrun's or --nproc's ranks share one terminal),
// else "".
std::string rank_tag() {
  const char* ws = std::getenv("WORLD_SIZE");
  const char* r = std::getenv("RANK");
  if (!ws || !r || std::atoi(ws) <= 1) return "";
  return std::string("rank ") + r + ": ";
}

// Writes "saelab: <what>: <message>\n" to stderr in one write(2): ranks share one terminal or
// pipe, and a line written piecewise (std::cerr is unbuffered) interleaves with another rank's.
void print_error(const std::string& what, const std::string& message) {
  const std::string line = "saelab: " + what + ": " + message + "\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += size_t(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace saelab::cli;
  // A write past RLIMIT_FSIZE would kill the process with SIGXFSZ; ignored, the write fails with
  // EFBIG and is reported like a full disk (one line naming the file).
  std::signal(SIGXFSZ, SIG_IGN);
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
    // --help / --version print and exit 0; a usage error is one line like every other error.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string msg = e.what();
    if (argc > 1 && argv[1][0] != '-' &&
        std::none_of(reg.begin(), reg.end(), [&](auto& c) { return c.name == argv[1]; })) {
      msg = std::string("unknown verb '") + argv[1] + "' (expected one of:";
      for (const auto& c : reg) msg += " " + c.name;
      msg += ")";
    }
    print_error("error", std::string(saelab::Error(msg).what()) + " (see saelab --help)");
    return 2;
  } catch (const saelab::Error& e) {
    print_error("error", e.what());
    return 1;
  }
  try {
    for (auto& [sub, run] : runs)
      if (sub->parsed()) return run();
  } catch (const saelab::Error& e) {
    print_error("error", rank_tag() + e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    print_error("internal error (torch)", rank_tag() + msg.substr(0, msg.find('\n')));
    return 3;
  } catch (const std::exception& e) {
    print_error("internal error", rank_tag() + e.what());
    return 3;
  }
  return 2;
}
