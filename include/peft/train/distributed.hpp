#pragma once
/// Process groups for data-parallel training, on LibTorch's own c10d engine (no communication
/// code of ours): Gloo on CPU, NCCL on CUDA where LibTorch was built with it, Gloo as the CUDA
/// fallback. The rendezvous is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
/// MASTER_ADDR, MASTER_PORT; rank 0 serves a c10d TCPStore on MASTER_ADDR:MASTER_PORT.
///
///   if (auto env = DistributedEnv::from_environment())          // WORLD_SIZE set and > 1
///     auto pg = ProcessGroup::create(*env, torch::kCPU, {});     // blocks until every rank joined
///   pg->allreduce_sum(t);                                        // t summed over ranks, in place
///
/// Every collective waits at most DistributedOptions::timeout; a rank that died (its sockets
/// close: the others fail at once) or hangs (they fail after the timeout) makes the collective
/// throw CollectiveError on the others. c10d's headers stay in src/train/distributed.cpp, so this
/// header is the same for LibTorch 1.13 and 2.x. Body: src/train/distributed.cpp.

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/error.hpp"

namespace peft::train {

/// A collective that failed or timed out, or a rendezvous that did not complete. what():
/// "rank R of W: <operation> failed after S s: <c10d's reason> (hint: ...)".
class CollectiveError : public Error {
 public:
  using Error::Error;
};

/// torchrun's environment variables, parsed and checked.
struct DistributedEnv {
  int rank = 0;                        ///< RANK, 0 <= rank < world_size
  int world_size = 1;                  ///< WORLD_SIZE
  int local_rank = 0;                  ///< LOCAL_RANK (default: rank); picks cuda:<local_rank>
  int local_world_size = 1;            ///< LOCAL_WORLD_SIZE (default: world_size)
  std::string master_addr = "127.0.0.1";  ///< MASTER_ADDR (default 127.0.0.1)
  int master_port = 29500;             ///< MASTER_PORT (default 29500, torchrun's)

  /// nullopt when WORLD_SIZE is unset; ConfigError naming the variable, its value and the
  /// expected range when one is malformed (e.g. RANK=2 with WORLD_SIZE=2).
  static std::optional<DistributedEnv> from_environment();
};

struct DistributedOptions {
  /// "auto" (nccl for CUDA when this build has it, else gloo), "gloo" or "nccl".
  std::string backend = "auto";
  /// Longest wait of the rendezvous and of each collective (HF TrainingArguments.ddp_timeout: 1800 s).
  std::chrono::milliseconds timeout = std::chrono::seconds(1800);
};

/// True when this build of peft-cpp has c10d Gloo (peft::train compiled with its headers).
bool gloo_available();
/// True when this build has c10d NCCL (CMake option PEFT_WITH_NCCL with a CUDA LibTorch).
bool nccl_available();

/// One c10d process group. Tensors passed to the collectives live on the group's device
/// (CPU for gloo, cuda:<local_rank> for nccl; gloo also takes CUDA tensors), are contiguous and
/// have the same shape and dtype on every rank.
class ProcessGroup {
 public:
  /// Rendezvous (TCPStore; rank 0 serves it) and the backend's connections; every rank must call
  /// this. Throws CollectiveError when the others do not arrive within options.timeout, and
  /// ConfigError for a backend this build or device cannot use.
  static std::shared_ptr<ProcessGroup> create(const DistributedEnv& env, torch::Device device,
                                              const DistributedOptions& options = {});
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;
  const std::string& backend() const;   ///< "gloo" or "nccl"
  std::chrono::milliseconds timeout() const;

  /// t <- sum over ranks of t (in place).
  void allreduce_sum(torch::Tensor& t);
  /// t <- root's t on every rank (in place).
  void broadcast(torch::Tensor& t, int root = 0);
  /// Every rank's t (same shape everywhere), in rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t);
  /// Returns when every rank has called it.
  void barrier();

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::train
