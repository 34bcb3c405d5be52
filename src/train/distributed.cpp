// Process groups on c10d (peft/train/distributed.hpp). The only file that includes c10d's headers:
// ProcessGroupGloo.hpp needs gloo's headers (Debian: libgloo-dev) and USE_C10D_GLOO, which CMake
// defines when it finds them (PEFT_HAVE_C10D_GLOO); ProcessGroupNCCL.hpp needs a CUDA LibTorch and
// PEFT_WITH_NCCL. Without either, create() refuses with a ConfigError instead of a stub.

#include "peft/train/distributed.hpp"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#if defined(PEFT_HAVE_C10D_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(PEFT_HAVE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <iomanip>
#include <sstream>

namespace peft::train {

namespace {

using Clock = std::chrono::steady_clock;

/// An integer environment variable in [lo, hi], or `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi, const std::string& range) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (!*v || *end || errno == ERANGE || n < lo || n > hi)
    throw ConfigError::about("environment", name, v, "expected an integer in " + range,
                             "torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and MASTER_PORT; "
                             "peft-finetune --nproc-per-node N sets them for its ranks");
  return static_cast<int>(n);
}

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(ms.count()) / 1000.0;
  return s.str();
}

/// c10d's messages can carry a C++ backtrace after the first line.
std::string first_line(const std::string& m) { return m.substr(0, m.find('\n')); }

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

}  // namespace

std::optional<DistributedEnv> DistributedEnv::from_environment() {
  if (!std::getenv("WORLD_SIZE")) return std::nullopt;
  DistributedEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20, "[1, 1048576]");
  const std::string ranks = "[0, " + std::to_string(e.world_size - 1) + "] (WORLD_SIZE = " + std::to_string(e.world_size) + ")";
  e.rank = env_int("RANK", 0, 0, e.world_size - 1, ranks);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, e.world_size, "[1, WORLD_SIZE]");
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, e.local_world_size - 1,
                         "[0, " + std::to_string(e.local_world_size - 1) + "] (LOCAL_WORLD_SIZE)");
  if (const char* a = std::getenv("MASTER_ADDR")) {
    if (!*a) throw ConfigError::about("environment", "MASTER_ADDR", "", "empty", "the address of rank 0's machine");
    e.master_addr = a;
  }
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535, "[1, 65535]");
  return e;
}

bool gloo_available() {
#if defined(PEFT_HAVE_C10D_GLOO)
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#if defined(PEFT_HAVE_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

struct ProcessGroup::Impl {
  int rank = 0;
  int world = 1;
  std::string backend;
  std::chrono::milliseconds timeout{0};
  torch::Device device = torch::kCPU;
  c10::intrusive_ptr<c10d::Store> store;
#if defined(PEFT_HAVE_C10D_GLOO)
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#if defined(PEFT_HAVE_C10D_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  /// Run a collective and wait for it; any failure becomes a CollectiveError naming the rank,
  /// the operation and how long it waited.
  template <class Start>
  void run(const char* op, Start&& start) {
    const auto t0 = Clock::now();
    try {
      c10::intrusive_ptr<c10d::Work> work = start();
      work->wait(timeout);
    } catch (const std::exception& e) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
      throw CollectiveError("rank " + std::to_string(rank) + " of " + std::to_string(world) + ": " + op +
                            " failed after " + seconds(waited) + " s: " + first_line(e.what()) +
                            " (hint: another rank stopped or hung, see its own error; collectives wait at most " +
                            seconds(timeout) + " s, training.ddp_timeout)");
    }
  }

  template <class Fn>
  void with_group(const char* op, Fn&& fn) {
#if defined(PEFT_HAVE_C10D_NCCL)
    if (nccl) return run(op, [&] { return fn(*nccl); });
#endif
#if defined(PEFT_HAVE_C10D_GLOO)
    if (gloo) return run(op, [&] { return fn(*gloo); });
#endif
    (void)fn;
    throw CollectiveError(std::string(op) + ": the process group has no backend");
  }

  /// NCCL only takes CUDA tensors: CPU ones (scalars, RNG states) go through the group's device.
  torch::Tensor staged(const torch::Tensor& t) const {
    return backend == "nccl" && !t.is_cuda() ? t.to(device) : t;
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::create(const DistributedEnv& env, torch::Device device,
                                                   const DistributedOptions& options) {
  std::string backend = options.backend;
  if (backend == "auto") backend = device.is_cuda() && nccl_available() ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl")
    throw ConfigError::about("training", "ddp_backend", backend, "unknown backend", "auto, gloo or nccl");
  if (backend == "nccl" && (!nccl_available() || !device.is_cuda()))
    throw ConfigError::about("training", "ddp_backend", backend,
                             device.is_cuda() ? "this build of peft-cpp has no c10d NCCL"
                                              : "NCCL needs CUDA tensors and the device is " + device.str(),
                             device.is_cuda() ? "build with -DPEFT_WITH_NCCL=ON against a CUDA LibTorch, or use gloo"
                                              : "use gloo (or auto) on CPU");
  if (backend == "gloo" && !gloo_available())
    throw ConfigError::about("training", "ddp_backend", backend,
                             "this build of peft-cpp has no c10d Gloo (gloo's headers were not found)",
                             "install libgloo-dev (Debian) and rebuild");
  if (options.timeout.count() <= 0)
    throw ConfigError::about("training", "ddp_timeout", std::to_string(options.timeout.count()) + " ms",
                             "must be positive", "seconds that a rank waits for the others");

  auto impl = std::make_unique<Impl>();
  impl->rank = env.rank;
  impl->world = env.world_size;
  impl->backend = backend;
  impl->timeout = options.timeout;
  impl->device = device;
  const auto t0 = Clock::now();
  const std::string where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = options.timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
#if defined(PEFT_HAVE_C10D_NCCL)
    if (backend == "nccl") {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      impl->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, env.rank, env.world_size, o);
    }
#endif
#if defined(PEFT_HAVE_C10D_GLOO)
    if (backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      // torch.distributed's choice of interface: GLOO_SOCKET_IFNAME, else the hostname's address;
      // a loopback rendezvous stays on loopback (single-machine runs need no resolvable hostname).
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
        std::string first(ifname);
        first = first.substr(0, first.find(','));
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(first));
      } else if (is_loopback(env.master_addr)) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      o->threads = 2;
      impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world_size, o);
    }
#endif
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    throw CollectiveError(where + ": rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) +
                          " (" + backend + ") failed after " + seconds(waited) + " s: " + first_line(e.what()) +
                          " (hint: start all " + std::to_string(env.world_size) +
                          " ranks with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE; the port must be free on "
                          "rank 0's machine and reachable from the others)");
  }
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::world_size() const { return impl_->world; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
std::chrono::milliseconds ProcessGroup::timeout() const { return impl_->timeout; }

void ProcessGroup::allreduce_sum(torch::Tensor& t) {
  std::vector<torch::Tensor> ts{impl_->staged(t)};
  impl_->with_group("allreduce", [&](auto& pg) {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return pg.allreduce(ts, o);
  });
  if (!ts[0].is_same(t)) t.copy_(ts[0]);
}

void ProcessGroup::broadcast(torch::Tensor& t, int root) {
  std::vector<torch::Tensor> ts{impl_->staged(t)};
  impl_->with_group("broadcast", [&](auto& pg) {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    return pg.broadcast(ts, o);
  });
  if (!ts[0].is_same(t)) t.copy_(ts[0]);
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& t) {
  std::vector<torch::Tensor> in{impl_->staged(t.contiguous())};
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < impl_->world; ++r) out[0].push_back(torch::empty_like(in[0]));
  impl_->with_group("all_gather", [&](auto& pg) { return pg.allgather(out, in, c10d::AllgatherOptions()); });
  for (auto& o : out[0]) o = o.to(t.device());
  return out[0];
}

void ProcessGroup::barrier() {
  impl_->with_group("barrier", [&](auto& pg) { return pg.barrier(c10d::BarrierOptions()); });
}

}  // namespace peft::train
