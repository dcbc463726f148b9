// One fuzz target = one parser entry point, written once and driven two ways:
//  - by libFuzzer (scripts/fuzz.sh compiles a target with -DSAELAB_LIBFUZZER and
//    -fsanitize=fuzzer,address,undefined), where SAELAB_FUZZ_TARGET defines LLVMFuzzerTestOneInput;
//  - by ctest (tests/fuzz/), where it registers the body under its name so that a deterministic
//    pass over the seed corpus and seeded mutations runs in the ordinary build.
// The body parses the bytes and may throw saelab::Error to reject them. The contract checked for
// every input: either it parses, or it throws saelab::Error whose message is one non-empty line.
// Anything else (another exception type, a crash, a sanitizer report, an allocation above the cap
// that the runner enforces) is a bug.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "saelab/core/error.h"

namespace saelab::fuzz {

using Body = std::function<void(const uint8_t*, size_t)>;

// Longest error message a rejection may print: long enough for a path and the expected/found
// values, short enough that no parser echoes a whole hostile input back to the terminal.
constexpr size_t kMaxMessage = 1024;

// Empty when `msg` keeps the error contract, else what is wrong with it.
inline std::string message_fault(const std::string& msg) {
  if (msg.empty()) return "empty error message";
  if (msg.find('\n') != std::string::npos || msg.find('\r') != std::string::npos)
    return "error message spans several lines";
  if (msg.size() > kMaxMessage) return "error message longer than " + std::to_string(kMaxMessage);
  return "";
}

// For a body that parses several things from one input and catches each refusal itself: call it
// inside the catch block. It counts the refusal and rethrows a message that breaks the contract,
// so both drivers see it.
inline int& caught_refusals() {
  static int n = 0;
  return n;
}
inline void note_refusal(const saelab::Error& e) {
  ++caught_refusals();
  if (!message_fault(e.what()).empty()) throw;
}

// Targets registered by name (ctest build only).
inline std::map<std::string, Body>& registry() {
  static std::map<std::string, Body> r;
  return r;
}
inline bool add_target(const char* name, Body body) {
  registry()[name] = std::move(body);
  return true;
}

// A private scratch folder for parsers that take a path: created once per process, removed at
// exit. File-based targets write the input under a fixed name there and parse that file.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* base = std::getenv("SAELAB_TEST_TMP");
    if (!base || !*base) base = std::getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    std::string templ = std::string(base) + "/saelab-fuzz-XXXXXX";
    std::system(("mkdir -p '" + std::string(base) + "'").c_str());
    if (!mkdtemp(templ.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    static std::string keep = templ;
    std::atexit([] { std::system(("rm -rf '" + keep + "'").c_str()); });
    return templ;
  }();
  return dir;
}

// Writes the input to scratch_dir()/name and returns that path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

// libFuzzer's side of the contract: a rejection must be a one-line saelab::Error; anything else
// aborts, which libFuzzer reports as a crash and saves the input.
inline void run_libfuzzer_input(const Body& body, const uint8_t* data, size_t size) {
  try {
    body(data, size);
  } catch (const saelab::Error& e) {
    std::string fault = message_fault(e.what());
    if (!fault.empty()) {
      std::fprintf(stderr, "contract broken: %s: %s\n", fault.c_str(), e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "contract broken: exception that is not saelab::Error: %s\n", e.what());
    std::abort();
  }
}

}  // namespace saelab::fuzz

#define SAELAB_FUZZ_CAT2(a, b) a##b
#define SAELAB_FUZZ_CAT(a, b) SAELAB_FUZZ_CAT2(a, b)

#ifdef SAELAB_LIBFUZZER
#define SAELAB_FUZZ_TARGET(name)                                                      \
  static void SAELAB_FUZZ_CAT(fuzz_body_, name)(const uint8_t* data, size_t size);    \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {           \
    saelab::fuzz::run_libfuzzer_input(SAELAB_FUZZ_CAT(fuzz_body_, name), data, size); \
    return 0;                                                                         \
  }                                                                                   \
  static void SAELAB_FUZZ_CAT(fuzz_body_, name)(const uint8_t* data, size_t size)
#else
#define SAELAB_FUZZ_TARGET(name)                                                   \
  static void SAELAB_FUZZ_CAT(fuzz_body_, name)(const uint8_t* data, size_t size); \
  [[maybe_unused]] static const bool SAELAB_FUZZ_CAT(fuzz_registered_, name) =     \
      saelab::fuzz::add_target(#name, SAELAB_FUZZ_CAT(fuzz_body_, name));          \
  static void SAELAB_FUZZ_CAT(fuzz_body_, name)(const uint8_t* data, size_t size)
#endif
