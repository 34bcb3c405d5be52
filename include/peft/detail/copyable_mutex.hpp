#pragma once
/// A std::mutex member that does not make its owner non-copyable: a copy gets a fresh, unlocked
/// mutex (what a copied cache needs; the lock protects the owner's own lazy fills only).

#include <mutex>

namespace peft {

class CopyableMutex {
 public:
  CopyableMutex() = default;
  CopyableMutex(const CopyableMutex&) noexcept {}
  CopyableMutex& operator=(const CopyableMutex&) noexcept { return *this; }
  void lock() { m_.lock(); }
  void unlock() noexcept { m_.unlock(); }
  bool try_lock() { return m_.try_lock(); }

 private:
  std::mutex m_;
};

}  // namespace peft
