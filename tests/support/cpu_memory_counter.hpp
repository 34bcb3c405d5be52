#pragma once
/// Live and peak bytes of LibTorch's CPU tensor storage, for the memory assertions of the unit
/// tests and the peak-memory counters of peft_bench (issue 6).
///
/// install() puts a counting wrapper in front of LibTorch's CPU allocator (c10::SetAllocator with
/// a higher priority, once per process); every CPU tensor allocated afterwards is counted until
/// it is freed. Tensors allocated before install() are freed by their own deleter and never
/// counted. Only tensor storage is counted (not OpenBLAS work buffers or the allocator's slack),
/// which is what "saved activations" and "peak of a training step" mean here.
///
/// Why a wrapping allocator rather than VmHWM (peak RSS): glibc keeps freed large blocks mapped
/// when its mmap threshold has grown, so RSS mixes in the process history; the allocator sees the
/// exact bytes at every allocation and free.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace peft::testing {

class CpuMemoryCounter final : public c10::Allocator {
 public:
  /// The process-wide counter; installs itself in front of the CPU allocator on first use.
  /// Returns nullptr where the CPU allocator has no raw deleter (then nothing can be counted).
  static CpuMemoryCounter* install() {
    static CpuMemoryCounter* self = [] () -> CpuMemoryCounter* {
      c10::Allocator* inner = c10::GetCPUAllocator();
      if (!inner || !inner->raw_deleter()) return nullptr;
      static CpuMemoryCounter counter(inner);
      c10::SetAllocator(c10::DeviceType::CPU, &counter, /*priority=*/100);
      return &counter;
    }();
    return self;
  }

  std::int64_t live_bytes() const { return live_.load(); }
  std::int64_t peak_bytes() const { return peak_.load(); }
  /// Starts a new peak window at the current live bytes.
  void reset_peak() { peak_.store(live_.load()); }

  // The allocator interface. LibTorch 1.13-2.2 declare `allocate(size_t) const`, 2.3+ a non-const
  // `allocate(size_t)` plus a pure `copy_data`: both spellings are defined (no `override`), and
  // whichever the base declares is the one overridden.
  c10::DataPtr allocate(std::size_t n) const { return do_allocate(n); }
  c10::DataPtr allocate(std::size_t n) { return do_allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &deallocate; }

 private:
  explicit CpuMemoryCounter(c10::Allocator* inner) : inner_(inner), inner_delete_(inner->raw_deleter()) {}

  c10::DataPtr do_allocate(std::size_t n) const {
    auto* self = const_cast<CpuMemoryCounter*>(this);
    void* p = self->inner_->raw_allocate(n);
    if (p) {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->sizes_[p] = n;
      const std::int64_t now = self->live_.fetch_add(static_cast<std::int64_t>(n)) + static_cast<std::int64_t>(n);
      std::int64_t peak = self->peak_.load();
      while (now > peak && !self->peak_.compare_exchange_weak(peak, now)) {
      }
    }
    return c10::DataPtr(p, p, &deallocate, c10::Device(c10::DeviceType::CPU));
  }

  static void deallocate(void* p) {
    if (!p) return;
    auto* self = install();
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      auto it = self->sizes_.find(p);
      if (it != self->sizes_.end()) {
        self->live_.fetch_sub(static_cast<std::int64_t>(it->second));
        self->sizes_.erase(it);
      }
    }
    self->inner_delete_(p);
  }

  c10::Allocator* inner_;
  c10::DeleterFnPtr inner_delete_;
  std::mutex mutex_;
  std::unordered_map<void*, std::size_t> sizes_;
  std::atomic<std::int64_t> live_{0}, peak_{0};
};

}  // namespace peft::testing
