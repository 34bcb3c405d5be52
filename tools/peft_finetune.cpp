// peft-finetune: LoRA fine-tuning of a causal language model from a YAML config.
//
//   peft-finetune                         the embedded default run (examples/train/default.yaml)
//   peft-finetune --config train.yaml     your run (README "Fine-tuning from the command line")
//
// Options: --config FILE, --output-dir DIR (overrides output_dir), --resume (newest checkpoint
// in output_dir/checkpoints), --steps N (overrides training.steps), --print-default-config, --help.
// Exit codes: 0 done; 1 failure while running (I/O, model, the merged-model check); 2 usage or
// config error (one line on stderr naming file:line); 130 interrupted by Ctrl-C / SIGTERM after
// saving a checkpoint (a second Ctrl-C exits at once without saving).
//
// stdout: what is run and a summary; stderr: the progress line, warnings and errors.
// The run is the phases of peft/train/phases.hpp in order (run_phases below).

#include <unistd.h>

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
    "       peft-finetune --print-default-config\n"
    "Without --config, runs the embedded default: pre-train builtin:tiny-gpt2 on corpus part A,\n"
    "LoRA-instruction-tune it on data/instructions (answers and exact match before/after), then\n"
    "check that the merged model gives the same held-out loss and answers.\n";

struct Args {
  std::optional<fs::path> config;
  std::optional<std::string> output_dir;
  bool resume = false;
  std::optional<std::int64_t> steps;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      return argv[++i];
    };
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
  TrainingRun run = prepare_run(std::move(cfg), std::move(name), o, &std::cout, &std::cerr, ::isatty(STDERR_FILENO) != 0);
  // Testing aid (tests/finetune_cli.sh): slow each micro-batch down so a test can kill or
  // interrupt the run between two checkpoints. Changes no result.
  const char* delay_env = std::getenv("PEFT_FINETUNE_STEP_DELAY_MS");
  const long delay_ms = delay_env ? std::strtol(delay_env, nullptr, 10) : 0;
  if (delay_ms > 0) run.before_batch = [delay_ms] { std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms)); };
  return run;
}

/// One line on stderr, prefixed like every message of the tool; returns `code`.
int fail(int code, const std::string& message) {
  std::cerr << "peft-finetune: " << message << "\n";
  return code;
}

/// Where an interrupted fine-tune stopped and the command that continues it.
std::string interrupted_message(const Args& args, const TokenData& data, const LoopResult& r) {
  return "interrupted at step " + std::to_string(r.step) + "/" + std::to_string(data.steps) +
         "; checkpoint " + (r.last_checkpoint ? r.last_checkpoint->string() : std::string("(none)")) +
         "; continue with: peft-finetune" + (args.config ? " --config " + args.config->string() : "") +
         (args.output_dir ? " --output-dir " + *args.output_dir : "") + " --resume";
}

int run_phases(const Args& args, const char* argv0) {
  const TrainingRun run = prepare(args, argv0);
  std::cout << "peft-finetune: " << describe_run(run) << "\n";
  install_stop_handler();

  const PretrainResult pre = pretrain_base(run);
  if (pre.interrupted) return fail(kExitInterrupted, "interrupted during pre-training (nothing to resume; run again)");
  const BaseModel base = build_model(run, pre.base_source);
  const TokenData data = prepare_data(run, base);
  const double before = evaluate(run, *base.model, data);
  const std::optional<AnswerCheck> answers_before = check_heldout_answers(run, *base.model, data);
  LoraModel adapter = attach_adapter(run, base);
  const LoopResult r = finetune(run, base, adapter, data, before);
  if (r.interrupted) return fail(kExitInterrupted, interrupted_message(args, data, r));
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

int main(int argc, char** argv) {
  // One line per warning on stderr, prefixed like every other message of the tool.
  peft::set_warning_handler([](const std::string& m) { std::cerr << "peft-finetune: warning: " << m << "\n"; });
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    fail(kExitUsage, e.what());
    std::cerr << kUsage;
    return kExitUsage;
  }
  try {
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
