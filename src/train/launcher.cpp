// The local launcher (peft/train/launcher.hpp): fork + execve of N ranks, signal forwarding,
// waiting with a grace period after the first failure.

#include "peft/train/launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "peft/error.hpp"

extern char** environ;

namespace peft::train {

namespace {

std::atomic<int> forwarded_signals{0};
void on_launcher_signal(int) { forwarded_signals.fetch_add(1); }

/// The environment of this process without torchrun's variables, plus `set`.
std::vector<std::string> rank_environment(const std::vector<std::pair<std::string, std::string>>& set) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    bool replaced = false;
    for (const auto& [k, v] : set) replaced = replaced || k == key;
    if (!replaced) env.push_back(kv);
  }
  for (const auto& [k, v] : set) env.push_back(k + "=" + v);
  return env;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  ::strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_tcp_port(const std::string& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("free_tcp_port: socket() failed: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  if (::inet_pton(AF_INET, addr == "localhost" ? "127.0.0.1" : addr.c_str(), &a.sin_addr) != 1) a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("free_tcp_port: no free port on " + addr + ": " + why + " (hint: pass --master-port)");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

int launch_local_ranks(const std::string& program, const std::vector<std::string>& args, const LaunchOptions& o,
                       std::ostream* log) {
  auto bad = [](const char* field, int value, const std::string& hint) {
    return ConfigError::about("launcher", field, std::to_string(value), "out of range", hint);
  };
  if (o.nproc_per_node < 1 || o.nproc_per_node > 4096) throw bad("nproc_per_node", o.nproc_per_node, "1 .. 4096 ranks on this machine");
  if (o.nnodes < 1) throw bad("nnodes", o.nnodes, "the number of machines, >= 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw bad("node_rank", o.node_rank, "0 .. " + std::to_string(o.nnodes - 1) + " (node 0 hosts rank 0)");
  if (o.master_port < 0 || o.master_port > 65535) throw bad("master_port", o.master_port, "1 .. 65535, or 0 for a free port");
  if (o.master_port == 0 && o.nnodes > 1)
    throw bad("master_port", 0, "several machines need the same --master-port (and --master-addr of node 0) on each");
  const int port = o.master_port ? o.master_port : free_tcp_port(o.master_addr);
  const int world = o.nnodes * o.nproc_per_node;

  // Arguments and environments are built before fork: the child only calls execve.
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::vector<std::string>> envs;
  for (int i = 0; i < o.nproc_per_node; ++i) {
    std::vector<std::pair<std::string, std::string>> vars = {{"RANK", std::to_string(o.node_rank * o.nproc_per_node + i)},
                                                             {"WORLD_SIZE", std::to_string(world)},
                                                             {"LOCAL_RANK", std::to_string(i)},
                                                             {"LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node)},
                                                             {"GROUP_RANK", std::to_string(o.node_rank)},
                                                             {"MASTER_ADDR", o.master_addr},
                                                             {"MASTER_PORT", std::to_string(port)}};
    if (o.threads_per_rank > 0)
      for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"})
        if (!std::getenv(name)) vars.emplace_back(name, std::to_string(o.threads_per_rank));
    envs.push_back(rank_environment(vars));
  }

  struct sigaction sa {}, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  forwarded_signals.store(0);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids;
  std::string start_error;
  for (int i = 0; i < o.nproc_per_node; ++i) {
    std::vector<char*> envp;
    for (auto& e : envs[static_cast<std::size_t>(i)]) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      start_error = std::string("fork failed: ") + std::strerror(errno);
      break;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::execve(program.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    ::setpgid(pid, pid);  // also here, so a signal sent right after fork cannot reach the old group
    pids.push_back(pid);
  }
  if (log)
    *log << "launcher: " << pids.size() << " rank(s) of " << world << " on this machine (node " << o.node_rank << " of "
         << o.nnodes << "), rendezvous " << o.master_addr << ":" << port << "\n";

  std::vector<std::optional<int>> status(pids.size());
  std::optional<std::size_t> first_failure;
  if (!start_error.empty()) {
    if (log) *log << "launcher: " << start_error << "; stopping the ranks already started\n";
    for (pid_t p : pids) ::kill(p, SIGKILL);
  }
  bool kill_pending = false;  // a rank failed: the others get `grace` to stop by themselves
  auto kill_at = std::chrono::steady_clock::now();
  int forwarded = 0;
  std::size_t running = pids.size();
  while (running > 0) {
    const int requested = forwarded_signals.load();
    for (; forwarded < requested; ++forwarded)
      for (std::size_t i = 0; i < pids.size(); ++i)
        if (!status[i]) ::kill(pids[i], SIGINT);
    int st = 0;
    const pid_t done = ::waitpid(-1, &st, WNOHANG);
    if (done > 0) {
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != done || status[i]) continue;
        status[i] = st;
        --running;
        const bool ok = WIFEXITED(st) && (WEXITSTATUS(st) == 0 || (WEXITSTATUS(st) == 130 && forwarded > 0));
        if (!ok && !first_failure) {
          first_failure = i;
          kill_at = std::chrono::steady_clock::now() + o.grace;
          kill_pending = true;
          if (log)
            *log << "launcher: rank " << o.node_rank * o.nproc_per_node + static_cast<int>(i) << " (pid " << done
                 << ") " << describe_status(st) << "; waiting up to " << o.grace.count() / 1000
                 << " s for the other ranks to stop\n";
        }
      }
      continue;
    }
    if (done < 0 && errno != EINTR) break;
    if (kill_pending && std::chrono::steady_clock::now() >= kill_at) {
      for (std::size_t i = 0; i < pids.size(); ++i)
        if (!status[i]) {
          if (log) *log << "launcher: rank " << o.node_rank * o.nproc_per_node + static_cast<int>(i) << " (pid " << pids[i]
                        << ") still running after the grace period: killing it\n";
          ::kill(pids[i], SIGKILL);
        }
      kill_pending = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (!start_error.empty()) throw Error("launcher: " + start_error);
  if (first_failure) return exit_code(*status[*first_failure]);
  for (const auto& s : status)
    if (s && exit_code(*s) != 0) return exit_code(*s);
  return 0;
}

}  // namespace peft::train
