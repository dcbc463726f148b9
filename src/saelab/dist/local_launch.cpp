// The local launcher behind `saelab train --nproc N` (local_launch.h).
#include "saelab/dist/local_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "saelab/core/error.h"

namespace saelab {
namespace {

// This process's command line, from /proc (the verb does not see main's argv).
std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') {
      args.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  return args;
}

}  // namespace

int free_local_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) fail("cannot open a socket to find a free local port: {}", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(s);
    fail("cannot bind a free local port: {}", std::strerror(errno));
  }
  const int port = ntohs(a.sin_port);
  ::close(s);
  return port;
}

namespace {

std::atomic<int> g_forward_signal{0};

// SIGKILL, SIGSEGV, ...: what a user looks up (strsignal's text varies with the locale).
const char* signal_cause(int sig) {
  switch (sig) {
    case SIGKILL:
      return "SIGKILL: killed from outside, e.g. by the kernel's out-of-memory killer";
    case SIGSEGV:
      return "SIGSEGV: a crash";
    case SIGABRT:
      return "SIGABRT: an abort";
    case SIGBUS:
      return "SIGBUS: a bad memory access";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "see kill -l";
  }
}
void remember_signal(int sig) { g_forward_signal.store(sig); }

}  // namespace

int launch_local_ranks(int nproc) {
  if (nproc < 1) fail("--nproc: expected a positive number of ranks, got {}", nproc);
  if (std::getenv("WORLD_SIZE") && *std::getenv("WORLD_SIZE"))
    fail("--nproc: WORLD_SIZE is already set (this process is a rank of a distributed run)");
  // The command line without --nproc N / --nproc=N.
  std::vector<std::string> args;
  const auto all = own_command_line();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == "--nproc") {
      ++i;
      continue;
    }
    if (all[i].rfind("--nproc=", 0) == 0) continue;
    args.push_back(all[i]);
  }
  const std::string port = std::to_string(free_local_port());
  const long cores = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  const std::string threads = std::to_string(std::max(1L, cores / nproc));

  struct sigaction sa {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) fail("--nproc: cannot start rank {}: {}", r, std::strerror(errno));
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      const std::string rs = std::to_string(r), ws = std::to_string(nproc);
      ::setenv("RANK", rs.c_str(), 1);
      ::setenv("LOCAL_RANK", rs.c_str(), 1);
      ::setenv("WORLD_SIZE", ws.c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", ws.c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "saelab: error: --nproc: cannot start rank %d: %s\n", r,
                   std::strerror(errno));
      std::_Exit(127);
    }
    pids.push_back(pid);
  }

  int result = 0;
  size_t running = pids.size();
  // When a rank fails, the others see its connections close and fail too (writing their error);
  // any still running after a grace period are stuck and killed.
  std::optional<std::chrono::steady_clock::time_point> failed_at;
  while (running > 0) {
    if (const int sig = g_forward_signal.exchange(0); sig != 0)
      for (pid_t p : pids)
        if (p > 0) ::kill(p, sig);
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) {
      if (failed_at && std::chrono::steady_clock::now() - *failed_at > std::chrono::seconds(20))
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int rank = -1;
    for (size_t r = 0; r < pids.size(); ++r)
      if (pids[r] == done) pids[r] = -1, rank = int(r);
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    // A rank killed by a signal could not say so itself (one that fails prints its own error).
    if (WIFSIGNALED(status))
      std::fprintf(stderr, "saelab: error: rank %d (pid %d) was killed by signal %d (%s)\n", rank,
                   int(done), WTERMSIG(status), signal_cause(WTERMSIG(status)));
    if (code != 0 && result == 0) result = code;
    if (code != 0 && code != 130 && code != 143 && !failed_at)
      failed_at = std::chrono::steady_clock::now();
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace saelab
