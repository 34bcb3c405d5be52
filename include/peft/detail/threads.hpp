#pragma once
// The most CPU threads a tool or a config may ask LibTorch for.

#include <algorithm>
#include <cstdint>
#include <thread>

namespace peft::detail {

/// 4 per CPU core, at most 1024: OpenMP pools far past the core count make every parallel region
/// crawl, and ~100k threads exhaust the process (a `threads: 100000` config hung).
inline std::int64_t max_cpu_threads() {
  const auto cores = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  return std::min<std::int64_t>(1024, 4 * cores);
}

}  // namespace peft::detail
