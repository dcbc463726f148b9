// Console progress bar / periodic lines (see progress.h).
#include "saelab/log/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace saelab {

std::string format_count(double n) {
  if (!std::isfinite(n)) return "?";
  double a = std::fabs(n);
  if (a >= 1e9) return fmt::format("{:.2f}G", n / 1e9);
  if (a >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (a >= 1e3) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = int64_t(std::llround(seconds));
  int64_t h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  if (h > 0) return fmt::format("{}:{:02d}:{:02d}", h, m, sec);
  return fmt::format("{}:{:02d}", m, sec);
}

std::string format_progress_line(int64_t tokens_done, int64_t total_tokens, double tokens_per_s,
                                 const ProgressStats& st, int bar_width) {
  double frac =
      total_tokens > 0 ? std::clamp(double(tokens_done) / double(total_tokens), 0.0, 1.0) : 0.0;
  std::string bar;
  if (bar_width > 0) {
    int filled = int(frac * bar_width);
    bar = "[" + std::string(size_t(filled), '#') + std::string(size_t(bar_width - filled), '.') +
          "] ";
  }
  double eta = tokens_per_s > 0 ? double(total_tokens - tokens_done) / tokens_per_s : NAN;
  return fmt::format("{}{}/{} tok  {} tok/s  ETA {}  mse {:.4g}  L0 {:.1f}  dead {}", bar,
                     format_count(double(tokens_done)), format_count(double(total_tokens)),
                     format_count(tokens_per_s), format_duration(eta), st.mse, st.l0, st.dead);
}

ConsoleProgress::ConsoleProgress(const ProgressOptions& opts) : opts_(opts) {
  out_ = opts.stream ? opts.stream : (opts.quiet ? stderr : stdout);
  tty_ = opts.tty ? *opts.tty : bool(isatty(fileno(out_)));
  t0_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string ConsoleProgress::render(int64_t tokens_done, const ProgressStats& stats,
                                    double elapsed_s) const {
  double rate = elapsed_s > 0 ? double(tokens_done - tokens_start_) / elapsed_s : 0.0;
  return format_progress_line(tokens_done, opts_.total_tokens, rate, stats,
                              tty_ ? opts_.bar_width : 0);
}

void ConsoleProgress::draw(int64_t tokens_done, const ProgressStats& stats, bool final) {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - t0_).count();
  std::string line = render(tokens_done, stats, elapsed);
  if (tty_) {
    // \r returns to the line start; \x1b[K clears what a longer previous line left behind.
    std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
    bar_open_ = !final;
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  last_draw_ = now;
  drawn_once_ = true;
}

void ConsoleProgress::update(int64_t tokens_done, const ProgressStats& stats) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  double period = tty_ ? 0.1 : opts_.interval_s;
  if (drawn_once_ && since < period) return;
  if (!drawn_once_ && !tty_ && since < period) return;  // first plain line after one period
  draw(tokens_done, stats, false);
}

void ConsoleProgress::finish(int64_t tokens_done, const ProgressStats& stats) {
  draw(tokens_done, stats, true);
}

void ConsoleProgress::message(const std::string& line) {
  if (bar_open_) std::fprintf(out_, "\r\x1b[K");
  std::fprintf(out_, "%s\n", line.c_str());
  bar_open_ = false;
  std::fflush(out_);
}

}  // namespace saelab
