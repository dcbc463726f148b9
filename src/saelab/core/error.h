// The one error type for user-facing errors: bad config, file, model or dataset.
// Its message is one line that names the thing and what was expected; the CLI prints it and
// exits 1.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace saelab {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// fail("{}: expected {}", path, what) throws saelab::Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace saelab
