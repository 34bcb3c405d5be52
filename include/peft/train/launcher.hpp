#pragma once
/// torchrun's job on one machine, built in (peft-finetune --nproc-per-node N): start N copies of
/// a program as the local ranks of a data-parallel run, with torchrun's environment variables
/// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GROUP_RANK), and
/// wait for them.
///
///   - Each rank runs in its own process group, so a terminal's Ctrl-C reaches the launcher only;
///     the launcher forwards each SIGINT / SIGTERM it gets to every rank as one SIGINT (first: the
///     ranks agree on a step, checkpoint and exit 130; second: they exit at once).
///   - When a rank fails, the others stop by themselves (their next collective fails at once, or
///     after training.ddp_timeout for a hung rank); those still running after `grace` are killed.
///   - Several machines: the same command on each with nnodes, node_rank and a common
///     master_addr:master_port (rank 0's machine).
/// Body: src/train/launcher.cpp.

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

namespace peft::train {

struct LaunchOptions {
  int nproc_per_node = 1;              ///< ranks on this machine
  int nnodes = 1;                      ///< machines
  int node_rank = 0;                   ///< this machine, 0 .. nnodes - 1 (node 0 hosts rank 0)
  std::string master_addr = "127.0.0.1";
  int master_port = 0;                 ///< 0: a free port of this machine (one machine only)
  std::chrono::milliseconds grace = std::chrono::seconds(60);  ///< after a failure, before SIGKILL
  /// > 0: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS of each rank, unless this environment sets
  /// them (torchrun sets OMP_NUM_THREADS=1): OpenBLAS otherwise starts one thread per core in
  /// every rank, and N ranks oversubscribe the cores.
  int threads_per_rank = 0;
};

/// A TCP port that is free on `addr` now (bound to port 0 and released; another program could
/// take it before the ranks do).
int free_tcp_port(const std::string& addr = "127.0.0.1");

/// Run `program` with `args` (argv[1..]) as ranks node_rank * nproc_per_node + i. Returns 0 when
/// every rank exited 0; 130 when the run was interrupted; else the first failing rank's exit code
/// (128 + signal for a rank killed by a signal). Lines about starts and failures go to `log`
/// (nullptr = none). ConfigError for options out of range (naming the option).
int launch_local_ranks(const std::string& program, const std::vector<std::string>& args, const LaunchOptions& options,
                       std::ostream* log);

}  // namespace peft::train
