#pragma once
/// Non-fatal diagnostics (PEFT's UserWarnings). They go to a process-wide handler; the default
/// writes `peft: warning: <message>` to stderr (never stdout). Tests and applications can swap
/// the handler or capture warnings for a scope with ScopedWarningCapture.

#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace peft {

using WarningHandler = std::function<void(const std::string&)>;

namespace detail {
struct WarningState {
  std::mutex mutex;
  WarningHandler handler;
};
inline WarningState& warning_state() {
  static WarningState state;
  return state;
}
}  // namespace detail

/// Install a handler (empty function = back to the stderr default). Returns the previous one.
inline WarningHandler set_warning_handler(WarningHandler handler) {
  auto& s = detail::warning_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::swap(s.handler, handler);
  return handler;
}

/// Emit one warning through the current handler.
inline void warn(const std::string& message) {
  auto& s = detail::warning_state();
  WarningHandler h;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    h = s.handler;
  }
  if (h) {
    h(message);
  } else {
    std::cerr << "peft: warning: " << message << '\n';
  }
}

/// Collects every warning emitted while it lives (and restores the previous handler after).
class ScopedWarningCapture {
 public:
  ScopedWarningCapture()
      : previous_(set_warning_handler([this](const std::string& m) { messages_.push_back(m); })) {}
  ~ScopedWarningCapture() { set_warning_handler(std::move(previous_)); }
  ScopedWarningCapture(const ScopedWarningCapture&) = delete;
  ScopedWarningCapture& operator=(const ScopedWarningCapture&) = delete;

  const std::vector<std::string>& messages() const { return messages_; }

 private:
  std::vector<std::string> messages_;
  WarningHandler previous_;
};

}  // namespace peft
