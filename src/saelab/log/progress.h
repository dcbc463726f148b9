// Console progress: a one-line bar redrawn with \r when the stream is a terminal ("tokens
// done/total, tokens/s, ETA, mse, L0, dead"), otherwise a plain line every `interval_s` seconds.
// quiet = true (for --json runs) sends everything to stderr so stdout stays one JSON object.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace saelab {

struct ProgressStats {
  double mse = 0;
  double l0 = 0;
  int64_t dead = 0;
};

struct ProgressOptions {
  int64_t total_tokens = 0;
  bool quiet = false;           // write to stderr instead of stdout
  double interval_s = 10.0;     // plain-line period when not a terminal
  std::optional<bool> tty;      // force terminal / non-terminal (default: isatty of the stream)
  std::FILE* stream = nullptr;  // override the stream (tests); default stdout, or stderr if quiet
  int bar_width = 24;
};

class ConsoleProgress {
 public:
  explicit ConsoleProgress(const ProgressOptions& opts);
  // Call as often as you like (every step); it redraws at most ~10 times a second on a terminal
  // and every interval_s otherwise. tokens_start (a resumed run) is subtracted for the rate.
  void update(int64_t tokens_done, const ProgressStats& stats);
  // Final line (always printed), ending the bar with a newline.
  void finish(int64_t tokens_done, const ProgressStats& stats);
  // Print a message line without corrupting the bar.
  void message(const std::string& line);
  void set_start_tokens(int64_t tokens_start) { tokens_start_ = tokens_start; }

 private:
  std::string render(int64_t tokens_done, const ProgressStats& stats, double elapsed_s) const;
  void draw(int64_t tokens_done, const ProgressStats& stats, bool final);
  ProgressOptions opts_;
  std::FILE* out_;
  bool tty_;
  int64_t tokens_start_ = 0;
  bool bar_open_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
  bool drawn_once_ = false;
};

// The text of one progress line (no \r or newline), exposed for tests:
// "[####....] 1.23M/2.00M tok  45.6k tok/s  ETA 0:17  mse 0.0123  L0 12.3  dead 4"
std::string format_progress_line(int64_t tokens_done, int64_t total_tokens, double tokens_per_s,
                                 const ProgressStats& stats, int bar_width);
// "1.23M", "456.0k", "999"
std::string format_count(double n);
// "1:02:03" or "2:03"; "?" for a non-finite or negative time
std::string format_duration(double seconds);

}  // namespace saelab
