#pragma once
/// Training progress line for a terminal or a log (the library never writes to stdout; the caller
/// passes the stream, peft-finetune gives std::cerr):
///
///   train  120/200 [##########--------]  60%  loss 2.3141  lr 8.1e-04  1843 tok/s  ETA 0:41
///
/// On a tty the line is redrawn in place with '\r' (at most ~10 times a second, and always on
/// the last step); otherwise one line is printed every `log_every` steps and on the last step,
/// so logs stay readable.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <string>

namespace peft::train {

struct ProgressInfo {
  std::int64_t step = 0;   ///< steps done (1-based after the first step)
  std::int64_t total = 0;
  double loss = 0.0;
  double lr = 0.0;
  double tokens_per_s = 0.0;
  double eta_s = -1.0;     ///< < 0: unknown
  std::optional<double> eval_loss;
};

/// "1:05", "12:00:03", "?" for negative / non-finite.
inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

/// One progress line without the leading '\r' or a newline; `bar_width` 0 omits the bar.
inline std::string render_progress(const std::string& label, const ProgressInfo& p, int bar_width = 20) {
  const double frac = p.total > 0 ? std::min(1.0, static_cast<double>(p.step) / static_cast<double>(p.total)) : 0.0;
  std::string out = label;
  const std::string total = std::to_string(p.total);
  std::string step = std::to_string(p.step);
  if (step.size() < total.size()) step = std::string(total.size() - step.size(), ' ') + step;
  out += " " + step + "/" + total;
  if (bar_width > 0) {
    const int filled = static_cast<int>(std::floor(frac * bar_width));
    out += " [" + std::string(static_cast<std::size_t>(filled), '#') +
           std::string(static_cast<std::size_t>(bar_width - filled), '-') + "]";
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, " %3d%%  loss %.4f  lr %.1e  %.0f tok/s  ETA %s",
                static_cast<int>(std::floor(frac * 100.0)), p.loss, p.lr, p.tokens_per_s,
                format_duration(p.eta_s).c_str());
  out += buf;
  if (p.eval_loss) {
    std::snprintf(buf, sizeof buf, "  eval %.4f", *p.eval_loss);
    out += buf;
  }
  return out;
}

class ProgressBar {
 public:
  ProgressBar(std::ostream& os, std::string label, bool tty, std::int64_t log_every)
      : os_(os), label_(std::move(label)), tty_(tty), log_every_(log_every < 1 ? 1 : log_every) {}
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(const ProgressInfo& p) {
    const bool last = p.step >= p.total;
    if (tty_) {
      const auto now = std::chrono::steady_clock::now();
      if (!last && drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && !p.eval_loss) return;
      last_draw_ = now;
      std::string line = render_progress(label_, p);
      const std::size_t width = line.size();
      if (width < last_width_) line += std::string(last_width_ - width, ' ');  // erase leftovers
      last_width_ = width;
      os_ << '\r' << line << std::flush;
      drawn_ = true;
    } else if (last || p.step % log_every_ == 0 || p.eval_loss) {
      os_ << render_progress(label_, p, 0) << '\n' << std::flush;
    }
  }
  /// Print a message on its own line (ends the in-place line first on a tty).
  void message(const std::string& text) {
    end_line();
    os_ << text << '\n' << std::flush;
  }
  /// Ends the in-place line (idempotent).
  void finish() { end_line(); }

 private:
  void end_line() {
    if (tty_ && drawn_) os_ << '\n' << std::flush;
    drawn_ = false;
    last_width_ = 0;
  }
  std::ostream& os_;
  std::string label_;
  bool tty_;
  std::int64_t log_every_;
  bool drawn_ = false;
  std::size_t last_width_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace peft::train
