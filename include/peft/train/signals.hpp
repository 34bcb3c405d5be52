#pragma once
/// Ctrl-C / SIGTERM for training loops: the handler only sets an atomic flag, the loop checks
/// stop_requested() at each step boundary (saves a checkpoint, exits with 130). A second signal
/// while the first is pending ends the process at once with _exit(130), the only thing besides
/// the flag that is async-signal-safe here.

#include <signal.h>
#include <unistd.h>

#include <atomic>

namespace peft::train {

namespace detail {
inline std::atomic<int> stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free, "signal handler needs a lock-free atomic");
inline void on_stop_signal(int) {
  if (stop_signals.fetch_add(1) >= 1) ::_exit(130);
}
}  // namespace detail

/// Install the handler for SIGINT and SIGTERM (replaces earlier handlers; not for libraries
/// embedded in a program with its own handlers).
inline void install_stop_handler() {
  struct sigaction sa {};
  sa.sa_handler = detail::on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

inline bool stop_requested() { return detail::stop_signals.load() > 0; }
inline void clear_stop_request() { detail::stop_signals.store(0); }

}  // namespace peft::train
