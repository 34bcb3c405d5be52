// peft-finetune: LoRA fine-tuning of a causal language model from a YAML config.
//
//   peft-finetune                         the embedded default run (examples/train/default.yaml)
//   peft-finetune --config train.yaml     your run (README "Fine-tuning from the command line")
//
// Options: --config FILE, --output-dir DIR (overrides output_dir), --resume (newest checkpoint
// in output_dir/checkpoints), --steps N (overrides training.steps), --print-default-config, --help.
// Data parallel: --nproc-per-node N starts N ranks of this command (launcher.hpp), with
// --nnodes M --node-rank K --master-addr A --master-port P for several machines; a process
// started by torchrun (WORLD_SIZE in the environment) is one rank. Rank 0 prints and writes.
// Exit codes: 0 done; 1 failure while running (I/O, model, the merged-model check, a damaged
// checkpoint); 2 usage or config error (one line on stderr naming file:line; also a fresh run into
// an output_dir that holds checkpoints, and --resume under another config: docs/checkpoints.md);
// 130 interrupted by Ctrl-C / SIGTERM after saving a checkpoint (a second Ctrl-C exits at once
// without saving).
//
// stdout: what is run and a summary; stderr: the progress line, warnings and errors.
// The run is the phases of peft/train/phases.hpp in order (run_phases below).

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "peft/error.hpp"
#include "peft/train/launcher.hpp"
#include "peft/train/phases.hpp"
#include "peft/warnings.hpp"
#include "peft_default_train_config.hpp"  // kDefaultTrainYaml (generated from examples/train/default.yaml)

namespace fs = std::filesystem;
using namespace peft;
using namespace peft::train;

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// A config that cannot be read or used (exit code 2, one line).
struct ConfigFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: peft-finetune [--config FILE] [--output-dir DIR] [--resume] [--steps N]\n"
    "                     [--nproc-per-node N [--nnodes M --node-rank K --master-addr A --master-port P]]\n"
    "       peft-finetune --print-default-config\n"
    "Without --config, runs the embedded default: pre-train builtin:tiny-gpt2 on corpus part A,\n"
    "LoRA-instruction-tune it on data/instructions (answers and exact match before/after), then\n"
    "check that the merged model gives the same held-out loss and answers.\n";

struct Args {
  std::optional<fs::path> config;
  std::optional<std::string> output_dir;
  bool resume = false;
  std::optional<std::int64_t> steps;
  std::optional<LaunchOptions> launch;   ///< --nproc-per-node given: start the ranks
  std::vector<std::string> rank_args;    ///< argv[1..] without the launcher's options
};

/// The rank this process is in a data-parallel run (0 alone), for message prefixes.
int g_rank = 0;

int int_arg(const std::string& name, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || errno == ERANGE || n < lo || n > hi)
    throw UsageError(name + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got `" + v + "`");
  return static_cast<int>(n);
}

Args parse_args(int argc, char** argv) {
  Args a;
  LaunchOptions launch;
  bool launcher_option = false;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      return argv[++i];
    };
    if (s == "--nproc-per-node" || s == "--nnodes" || s == "--node-rank" || s == "--master-addr" || s == "--master-port") {
      const std::string v = value();
      if (s == "--nproc-per-node") {
        launch.nproc_per_node = int_arg(s, v, 1, 4096);
        a.launch = launch;
      } else if (s == "--nnodes") launch.nnodes = int_arg(s, v, 1, 1 << 20);
      else if (s == "--node-rank") launch.node_rank = int_arg(s, v, 0, (1 << 20) - 1);
      else if (s == "--master-addr") launch.master_addr = v;
      else launch.master_port = int_arg(s, v, 1, 65535);
      launcher_option = true;
      continue;
    }
    a.rank_args.push_back(s);
    if (i + 1 < argc && (s == "--config" || s == "-c" || s == "--output-dir" || s == "-o" || s == "--steps"))
      a.rank_args.push_back(argv[i + 1]);
    if (s == "--help" || s == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (s == "--print-default-config") {
      std::cout << kDefaultTrainYaml;
      std::exit(0);
    } else if (s == "--config" || s == "-c") {
      a.config = value();
    } else if (s == "--output-dir" || s == "-o") {
      a.output_dir = value();
    } else if (s == "--resume") {
      a.resume = true;
    } else if (s == "--steps") {
      const std::string v = value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1) throw UsageError("--steps wants a positive integer, got `" + v + "`");
      a.steps = n;
    } else {
      throw UsageError("unknown argument `" + s + "`");
    }
  }
  if (launcher_option && !a.launch) throw UsageError("--nnodes, --node-rank, --master-addr and --master-port need --nproc-per-node");
  if (a.launch) {
    launch.nproc_per_node = a.launch->nproc_per_node;
    if (launch.node_rank >= launch.nnodes)
      throw UsageError("--node-rank " + std::to_string(launch.node_rank) + " is not below --nnodes " + std::to_string(launch.nnodes));
    if (launch.nnodes > 1 && launch.master_port == 0)
      throw UsageError("--nnodes > 1 needs --master-port (and --master-addr: node 0's address) on every machine");
    a.launch = launch;
  }
  return a;
}

/// Where the embedded default's relative paths (../../data/...) resolve: the source tree
/// this binary was built from, else the installed share/peft tree next to the binary.
fs::path default_config_dir(const char* argv0) {
  std::vector<fs::path> candidates = {fs::path(PEFT_SOURCE_DIR) / "examples" / "train"};
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  candidates.push_back(exe.parent_path().parent_path() / "share" / "peft" / "examples" / "train");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c / ".." / ".." / "data" / "instructions" / "train.jsonl", ec)) return c;
  throw Error("the shipped data (data/instructions/train.jsonl) was not found next to the source tree (" +
              candidates[0].string() + ") or the installation (" + candidates[1].string() +
              ") (hint: pass --config with your own data.file)");
}

/// --config FILE or the embedded default, with the shipped corpus where no data file is given;
/// any error here is a ConfigFailure (exit code 2).
std::pair<TrainConfig, std::string> load_config(const Args& args, const char* argv0) {
  try {
    TrainConfig cfg;
    std::string name;
    if (args.config) {
      cfg = load_train_config(*args.config);
      name = args.config->string();
    } else {
      name = "<embedded examples/train/default.yaml>";
      cfg = train_config_from_yaml(kDefaultTrainYaml, name, default_config_dir(argv0));
    }
    // No data file given: the shipped corpus (part B; part A for pre-training).
    if (cfg.data.file.empty()) cfg.data.file = default_config_dir(argv0) / ".." / ".." / "data" / "corpus" / "part_b.txt";
    if (cfg.pretrain && cfg.pretrain->file.empty())
      cfg.pretrain->file = default_config_dir(argv0) / ".." / ".." / "data" / "corpus" / "part_a.txt";
    return {std::move(cfg), std::move(name)};
  } catch (const Error& e) {
    throw ConfigFailure(e.what());
  }
}

/// The run `args` ask for, reporting on stdout with progress on stderr.
TrainingRun prepare(const Args& args, const char* argv0) {
  auto [cfg, name] = load_config(args, argv0);
  RunOverrides o;
  if (args.output_dir) o.output_dir = *args.output_dir;
  o.steps = args.steps;
  o.resume = args.resume;
  o.distributed = DistributedEnv::from_environment();
  const bool quiet = o.distributed && o.distributed->rank != 0;  // rank 0 speaks for the run
  TrainingRun run = prepare_run(std::move(cfg), std::move(name), o, quiet ? nullptr : &std::cout,
                                quiet ? nullptr : &std::cerr, ::isatty(STDERR_FILENO) != 0);
  // Testing aid (tests/finetune_cli.sh): slow each micro-batch down so a test can kill or
  // interrupt the run between two checkpoints. Changes no result.
  const char* delay_env = std::getenv("PEFT_FINETUNE_STEP_DELAY_MS");
  const long delay_ms = delay_env ? std::strtol(delay_env, nullptr, 10) : 0;
  if (delay_ms > 0) run.before_batch = [delay_ms] { std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms)); };
  return run;
}

/// One line on stderr, prefixed like every message of the tool; returns `code`.
int fail(int code, const std::string& message) {
  std::cerr << "peft-finetune" << (g_rank ? "[rank " + std::to_string(g_rank) + "]" : std::string()) << ": " << message
            << "\n";
  return code;
}

/// Where an interrupted fine-tune stopped and the command that continues it.
std::string interrupted_message(const Args& args, const TrainingRun& run, const TokenData& data, const LoopResult& r) {
  return "interrupted at step " + std::to_string(r.step) + "/" + std::to_string(data.steps) +
         "; checkpoint " + (r.last_checkpoint ? r.last_checkpoint->string() : std::string("(none)")) +
         "; continue with: peft-finetune" + (args.config ? " --config " + args.config->string() : "") +
         (args.output_dir ? " --output-dir " + *args.output_dir : "") + " --resume" +
         (run.world_size() > 1 ? " (on " + std::to_string(run.world_size()) + " ranks again, e.g. --nproc-per-node " +
                                     std::to_string(run.world_size()) + ")"
                               : "");
}

int run_phases(const Args& args, const char* argv0) {
  const TrainingRun run = prepare(args, argv0);
  if (run.rank() == 0) std::cout << "peft-finetune: " << describe_run(run) << "\n";
  install_stop_handler();

  const PretrainResult pre = pretrain_base(run);
  if (pre.interrupted) return fail(kExitInterrupted, "interrupted during pre-training (nothing to resume; run again)");
  const BaseModel base = build_model(run, pre.base_source);
  const TokenData data = prepare_data(run, base);
  const double before = evaluate(run, *base.model, data);
  const std::optional<AnswerCheck> answers_before = check_heldout_answers(run, *base.model, data);
  LoraModel adapter = attach_adapter(run, base);
  LoopResult r;
  try {
    r = finetune(run, base, adapter, data, before);
  } catch (const CollectiveError& e) {
    const auto last = latest_checkpoint(run.output_dir / "checkpoints");
    return fail(kExitFailure, std::string(e.what()) + "; last complete checkpoint: " +
                                  (last ? last->string() + " (continue with --resume)" : std::string("none")));
  }
  if (r.interrupted) {
    if (run.rank() != 0) return kExitInterrupted;  // rank 0 says where the run stopped
    return fail(kExitInterrupted, interrupted_message(args, run, data, r));
  }
  if (run.rank() != 0) {
    export_adapter(run, adapter);  // waits for rank 0's save; the merge check is rank 0's
    return 0;
  }
  const std::optional<AnswerCheck> answers_after = check_heldout_answers(run, *base.model, data);
  if (answers_before && answers_after) {
    print_answers(run, data, *answers_before, *answers_after);
    write_answers(run, data, *answers_before, *answers_after);
  }
  const fs::path adapter_dir = export_adapter(run, adapter);
  const MergeCheck merged = verify_merge(run, base.source, adapter_dir, data, *r.final_eval_loss, answers_after);
  print_summary(run, {pre, adapter.get_nb_trainable_parameters(), before, r, adapter_dir, merged, answers_before,
                      answers_after});
  return merged.passed() ? 0 : fail(kExitFailure, merged.failure_message());
}

}  // namespace

/// --nproc-per-node: check the config once here (errors exit 2 before any rank starts), then run
/// this program as the ranks.
int launch(const Args& args, const char* argv0) {
  const auto [cfg, name] = load_config(args, argv0);
  LaunchOptions o = *args.launch;
  o.grace = std::chrono::milliseconds(static_cast<std::int64_t>(cfg.training.ddp_timeout * 1000.0)) + std::chrono::seconds(30);
  // The CPU threads each rank will use (prepare_run's rule), also for OpenMP and OpenBLAS.
  if (cfg.training.device == "cpu") {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    o.threads_per_rank = cfg.training.threads > 0 ? static_cast<int>(cfg.training.threads) : std::max(1, cores / o.nproc_per_node);
  }
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = fs::absolute(argv0);
  return launch_local_ranks(self.string(), args.rank_args, o, &std::cerr);
}

int main(int argc, char** argv) {
  if (const char* r = std::getenv("RANK"); r && std::getenv("WORLD_SIZE")) g_rank = std::atoi(r);
  // One line per warning on stderr, prefixed like every other message of the tool (rank 0's only:
  // the other ranks would repeat them).
  peft::set_warning_handler([](const std::string& m) {
    if (g_rank == 0) std::cerr << "peft-finetune: warning: " << m << "\n";
  });
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    fail(kExitUsage, e.what());
    std::cerr << kUsage;
    return kExitUsage;
  }
  try {
    if (args.launch) {
      if (std::getenv("WORLD_SIZE")) return fail(kExitUsage, "--nproc-per-node inside a launched rank (WORLD_SIZE is set)");
      return launch(args, argv[0]);
    }
    return run_phases(args, argv[0]);
  } catch (const ConfigFailure& e) {
    return fail(kExitUsage, e.what());
  } catch (const ConfigError& e) {
    return fail(kExitUsage, e.what());
  } catch (const TargetNotFoundError& e) {
    return fail(kExitUsage, std::string("lora.target_modules: ") + e.what());
  } catch (const SerializationError& e) {
    return fail(kExitFailure, e.what());  // config files that are not YAML, unreadable files, bad checkpoints
  } catch (const std::exception& e) {
    // LibTorch appends a C++ backtrace after the first line; keep the message one line.
    const std::string m = e.what();
    return fail(kExitFailure, m.substr(0, m.find('\n')));
  }
}
