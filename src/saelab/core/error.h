// The one error type for user-facing errors: bad config, file, model or dataset.
// Its message is one line that names the thing and what was expected; the CLI prints it and
// exits 1. Messages quote names and values taken from the input (keys, strings of a hostile
// file), so control characters are escaped here: a newline in a key cannot split the one line,
// and an escape sequence cannot reach the user's terminal.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace saelab {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(one_line(msg)) {}

 private:
  static std::string one_line(const std::string& msg) {
    std::string out;
    out.reserve(msg.size());
    for (unsigned char c : msg) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out += static_cast<char>(c);
      }
    }
    return out;
  }
};

// fail("{}: expected {}", path, what) throws saelab::Error with a formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace saelab
