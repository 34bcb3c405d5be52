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

#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "peft/io/adapters.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/text/dataset.hpp"
#include "peft/text/tokenizer.hpp"
#include "peft/train/trainer.hpp"
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
    "LoRA-fine-tune it on part B, then check that the merged model gives the same held-out loss.\n";

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

/// Where the embedded default's relative paths (../../data/corpus/...) resolve: the source tree
/// this binary was built from, else the installed share/peft tree next to the binary.
fs::path default_config_dir(const char* argv0) {
  std::vector<fs::path> candidates = {fs::path(PEFT_SOURCE_DIR) / "examples" / "train"};
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  candidates.push_back(exe.parent_path().parent_path() / "share" / "peft" / "examples" / "train");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c / ".." / ".." / "data" / "corpus" / "part_b.txt", ec)) return c;
  throw Error("the shipped corpus (data/corpus/part_b.txt) was not found next to the source tree (" +
              candidates[0].string() + ") or the installation (" + candidates[1].string() +
              ") (hint: pass --config with your own data.file)");
}

std::string fmt(double v, int prec = 4) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}

/// Mean next-token loss over the held-out blocks (at most `max_blocks`; 0 = all), in chunks of
/// `batch` rows; every block has the same number of targets, so the mean of chunk means weighted
/// by rows is the token mean.
double heldout_loss(models::CausalLMImpl& model, const torch::Tensor& heldout, std::int64_t batch,
                    std::int64_t max_blocks, torch::Device device) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  std::int64_t n = heldout.size(0);
  if (max_blocks > 0) n = std::min(n, max_blocks);
  double total = 0.0;
  for (std::int64_t i = 0; i < n; i += batch) {
    const auto chunk = heldout.slice(0, i, std::min(n, i + batch)).to(device);
    total += models::causal_lm_loss(model.forward(chunk), chunk).item<double>() * static_cast<double>(chunk.size(0));
  }
  if (was_training) model.train();
  return total / static_cast<double>(n);
}

struct Data {
  text::TokenBlocks blocks;
  std::int64_t tokens = 0;
  std::size_t documents = 0;
};

Data load_data(const fs::path& file, const std::string& field, const text::Tokenizer& tok, std::int64_t seq_len,
               double heldout_fraction, std::int64_t vocab) {
  Data d;
  const auto docs = text::load_documents(file, field);
  d.documents = docs.size();
  const auto ids = text::encode_documents(tok, docs);
  d.tokens = static_cast<std::int64_t>(ids.size());
  if (tok.vocab_size() > vocab)
    throw Error("the tokenizer has " + std::to_string(tok.vocab_size()) + " ids but the model only " +
                std::to_string(vocab) + " embeddings (hint: use the tokenizer that belongs to the model)");
  d.blocks = text::make_blocks(ids, seq_len, heldout_fraction);
  return d;
}

torch::Device parse_device(const std::string& s, const std::string& where) {
  torch::Device dev(s);
  if (dev.is_cuda()) {
    if (!torch::cuda::is_available())
      throw TrainConfigError(where, "training.device", s,
                             "CUDA is not available (this LibTorch has no CUDA support or no GPU is visible)",
                             "set `device: cpu`");
    if (dev.has_index() && dev.index() >= static_cast<int>(torch::cuda::device_count()))
      throw TrainConfigError(where, "training.device", s,
                             "only " + std::to_string(torch::cuda::device_count()) + " CUDA device(s) visible",
                             "cuda:0 .. cuda:" + std::to_string(torch::cuda::device_count() - 1));
  }
  return dev;
}

int run(const Args& args, const char* argv0) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // ---- config ----
  TrainConfig cfg;
  std::string config_name;
  try {
    if (args.config) {
      cfg = load_train_config(*args.config);
      config_name = args.config->string();
    } else {
      config_name = "<embedded examples/train/default.yaml>";
      cfg = train_config_from_yaml(kDefaultTrainYaml, config_name, default_config_dir(argv0));
    }
    // No data file given: the shipped corpus (part B; part A for pre-training).
    if (cfg.data.file.empty()) cfg.data.file = default_config_dir(argv0) / ".." / ".." / "data" / "corpus" / "part_b.txt";
    if (cfg.pretrain && cfg.pretrain->file.empty())
      cfg.pretrain->file = default_config_dir(argv0) / ".." / ".." / "data" / "corpus" / "part_a.txt";
  } catch (const Error& e) {
    throw ConfigFailure(e.what());
  }
  if (args.output_dir) cfg.output_dir = *args.output_dir;
  if (args.steps) cfg.training.steps = *args.steps;
  if (args.resume) cfg.resume = true;
  const TrainingConfig& t = cfg.training;
  const torch::Device device = parse_device(t.device, config_name);
  const torch::Dtype dtype = t.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  const fs::path out = cfg.output_dir;
  fs::create_directories(out);
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  // LibTorch's default can be 1 on machines whose cores it counts as one physical core.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(t.threads > 0 ? t.threads : cores));

  std::optional<fs::path> resume_from;
  if (cfg.resume) {
    if (!cfg.resume_from.empty()) resume_from = cfg.resume_from;
    else resume_from = latest_checkpoint(out / "checkpoints");
    if (!resume_from) std::cout << "resume: no checkpoint in " << (out / "checkpoints").string() << ", starting fresh\n";
  }

  std::cout << "peft-finetune: config " << config_name << ", output " << out.string() << ", device " << t.device
            << ", dtype " << t.dtype << ", " << torch::get_num_threads() << " threads\n";
  install_stop_handler();

  // ---- base model (+ the default run's pre-training) ----
  const bool builtin = cfg.base_model.rfind("builtin:", 0) == 0;
  std::string base_source = cfg.base_model;
  std::unique_ptr<text::Tokenizer> tokenizer =
      builtin ? std::make_unique<text::ByteTokenizer>() : text::load_tokenizer(cfg.base_model);
  std::optional<double> pretrain_seconds;
  if (cfg.pretrain) {
    const fs::path base_dir = out / cfg.pretrain->save_dir;
    if (resume_from && fs::is_regular_file(base_dir / "config.json")) {
      std::cout << "pretrain: reusing the saved base " << base_dir.string() << "\n";
    } else {
      const auto tp = clock::now();
      torch::manual_seed(static_cast<std::int64_t>(t.seed));
      models::CausalLM model = models::make_builtin(cfg.base_model, t.seed);
      model->to(device);  // pre-trained in fp32 whatever training.dtype says; the LoRA run casts
      const Data d = load_data(cfg.pretrain->file, "text", *tokenizer, t.seq_len, 0.05, model->vocab_size());
      std::int64_t n_params = 0;
      for (const auto& p : model->parameters()) n_params += p.numel();
      std::cout << "pretrain: " << cfg.base_model << " (" << n_params << " parameters, all trained) on "
                << cfg.pretrain->file.filename().string() << " (" << d.tokens << " tokens, " << d.blocks.train.size(0)
                << " train / " << d.blocks.heldout.size(0) << " held-out blocks of " << t.seq_len << ")\n";
      text::BatchSampler sampler(d.blocks.train, cfg.pretrain->batch_size, t.seed + 1);
      TrainHooks h;
      h.next_batch = [&] { return sampler.next(); };
      h.loss = [&](const torch::Tensor& b) { return models::causal_lm_loss(model->forward(b), b); };
      h.eval_loss = [&] { return heldout_loss(*model, d.blocks.heldout, cfg.pretrain->batch_size, t.eval_batches * cfg.pretrain->batch_size, device); };
      LoopOptions o;
      o.training = t;
      o.training.steps = cfg.pretrain->steps;
      o.training.batch_size = cfg.pretrain->batch_size;
      o.training.lr = cfg.pretrain->lr;
      o.training.warmup_steps = cfg.pretrain->warmup_steps;
      o.training.grad_accum = 1;
      o.training.eval_every = 0;
      o.training.save_every = 0;
      o.device = device;
      o.label = "pretrain";
      o.phase = "pretrain";
      o.metrics_path = out / "pretrain_metrics.jsonl";
      o.svg_path = out / "pretrain_loss.svg";
      o.svg_title = "Pre-training " + cfg.base_model;
      o.progress = &std::cerr;
      o.tty = tty;
      const LoopResult r = run_training(*model, model->parameters(), h, o);
      if (r.interrupted) {
        std::cerr << "peft-finetune: interrupted during pre-training (nothing to resume; run again)\n";
        return kExitInterrupted;
      }
      std::cout << "pretrain: held-out loss on part A " << fmt(*r.final_eval_loss) << " after " << r.step
                << " steps (" << fmt(r.elapsed_s, 1) << " s)\n";
      for (auto& p : model->parameters()) p.set_requires_grad(false);  // frozen from here on
      models::save_causal_lm(*model, base_dir);
      std::cout << "pretrain: saved the frozen base to " << base_dir.string() << " (Hugging Face format)\n";
      pretrain_seconds = std::chrono::duration<double>(clock::now() - tp).count();
    }
    base_source = base_dir.string();
  }

  torch::manual_seed(static_cast<std::int64_t>(t.seed));
  models::CausalLM model = models::load_causal_lm(base_source, device, dtype);
  if (t.seq_len > model->max_positions())
    throw TrainConfigError(config_name, "training.seq_len", std::to_string(t.seq_len),
                           "longer than the model's " + std::to_string(model->max_positions()) + " positions",
                           "at most " + std::to_string(model->max_positions()));
  const Data data = load_data(cfg.data.file, cfg.data.jsonl_field, *tokenizer, t.seq_len, cfg.data.heldout_fraction,
                              model->vocab_size());
  std::cout << "data: " << cfg.data.file.string() << " (" << data.documents << " documents, " << data.tokens
            << " tokens, " << tokenizer->kind() << " tokenizer) -> " << data.blocks.train.size(0) << " train / "
            << data.blocks.heldout.size(0) << " held-out blocks of " << t.seq_len << " tokens\n";
  const std::int64_t eval_blocks = t.eval_batches * t.batch_size;
  auto eval = [&] { return heldout_loss(*model, data.blocks.heldout, t.batch_size, eval_blocks, device); };
  const double loss_before = eval();

  // ---- LoRA ----
  LoraConfig lora = cfg.lora;
  lora.base_model_name_or_path = base_source;
  LoraModelOptions lopts;
  lopts.plan.model_type = model->model_type();
  lopts.plan.output_layer = "lm_head";
  LoraModel pm(model, lora, "default", lopts);
  const auto [trainable, all] = pm.get_nb_trainable_parameters();
  std::cout << "lora: r " << lora.r << ", alpha " << lora.lora_alpha.value << ", "
            << pm.targeted_module_names().size() << " adapted modules; " << pm.trainable_parameters_summary() << "\n";

  text::BatchSampler sampler(data.blocks.train, t.batch_size, t.seed);
  // Testing aid (tests/finetune_cli.sh): slow each micro-batch down so a test can kill or
  // interrupt the run between two checkpoints. Changes no result.
  const char* delay_env = std::getenv("PEFT_FINETUNE_STEP_DELAY_MS");
  const long delay_ms = delay_env ? std::strtol(delay_env, nullptr, 10) : 0;
  TrainHooks h;
  h.next_batch = [&] {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    return sampler.next();
  };
  h.sampler_state = [&] { return sampler.state(); };
  h.restore_sampler = [&](std::uint64_t s) { sampler.restore(s); };
  h.loss = [&](const torch::Tensor& b) { return models::causal_lm_loss(model->forward(b), b); };
  h.eval_loss = eval;
  LoopOptions o;
  o.training = t;
  o.device = device;
  o.label = "lora";
  o.metrics_path = out / "metrics.jsonl";
  o.svg_path = out / "loss.svg";
  o.svg_title = "LoRA fine-tune of " + base_source + " on " + cfg.data.file.filename().string();
  o.checkpoints_dir = out / "checkpoints";
  o.peft_model = &pm;
  o.resume_from = resume_from;
  o.progress = &std::cerr;
  o.tty = tty;
  if (resume_from) std::cout << "resume: from " << resume_from->string() << "\n";
  std::cout << "lora: held-out loss before fine-tuning " << fmt(loss_before) << "; training " << t.steps
            << " steps of " << t.grad_accum << " x " << t.batch_size << " x " << t.seq_len << " tokens\n";
  const LoopResult r = run_training(*model, pm.trainable_parameters(), h, o);
  if (r.interrupted) {
    std::cerr << "peft-finetune: interrupted at step " << r.step << "/" << t.steps << "; checkpoint "
              << (r.last_checkpoint ? r.last_checkpoint->string() : std::string("(none)"))
              << "; continue with: peft-finetune" << (args.config ? " --config " + args.config->string() : "")
              << (args.output_dir ? " --output-dir " + *args.output_dir : "") << " --resume\n";
    return kExitInterrupted;
  }
  const fs::path adapter_dir = out / "adapter";
  save_pretrained(pm, adapter_dir);
  const double loss_after = r.final_eval_loss ? *r.final_eval_loss : eval();

  // ---- reload + merge check: a fresh base, the saved adapter, merge_and_unload ----
  torch::manual_seed(static_cast<std::int64_t>(t.seed));
  models::CausalLM fresh = models::load_causal_lm(base_source, device, dtype);
  LoraModel reloaded(fresh, lopts);
  load_adapter(reloaded, adapter_dir, "default");
  reloaded.set_adapter("default");
  reloaded.merge_and_unload();
  const double loss_merged = heldout_loss(*fresh, data.blocks.heldout, t.batch_size, eval_blocks, device);
  const double rel = std::abs(loss_merged - loss_after) / std::max(1e-12, std::abs(loss_after));
  // bf16 base weights round the merged W + BA to 8 bits of mantissa; fp32 only reorders sums.
  const double tol = dtype == torch::kBFloat16 ? 2e-2 : 1e-4;
  const double total_s = std::chrono::duration<double>(clock::now() - t0).count();

  std::cout << "\nsummary\n";
  if (pretrain_seconds) std::cout << "  pre-trained base:        " << base_source << " (" << fmt(*pretrain_seconds, 1) << " s)\n";
  std::cout << "  trainable parameters:    " << trainable << " of " << all << " ("
            << fmt(100.0 * static_cast<double>(trainable) / static_cast<double>(all), 2) << "%)\n";
  std::cout << "  held-out loss (" << cfg.data.file.filename().string() << "): before " << fmt(loss_before)
            << " -> after " << fmt(loss_after) << " (" << fmt(100.0 * (loss_after - loss_before) / loss_before, 1)
            << "%)\n";
  std::cout << "  merged model:            " << fmt(loss_merged, 6) << " vs LoRA " << fmt(loss_after, 6)
            << " (relative difference " << std::scientific << std::setprecision(1) << rel << std::defaultfloat
            << ", limit " << tol << ")\n";
  std::cout << "  steps:                   " << r.step << ", " << r.tokens_seen << " tokens, "
            << fmt(r.elapsed_s, 1) << " s training" << (resume_from ? " (all runs)" : "") << ", "
            << fmt(total_s, 1) << " s in all" << (resume_from ? " (this run)" : "") << "\n";
  std::cout << "  adapter:                 " << adapter_dir.string() << "\n";
  if (fs::is_directory(out / "checkpoints"))
    std::cout << "  checkpoints:             " << (out / "checkpoints").string() << "\n";
  std::cout << "  metrics / loss curve:    " << (out / "metrics.jsonl").string() << ", " << (out / "loss.svg").string()
            << "\n";
  if (!(rel <= tol)) {
    std::cerr << "peft-finetune: the merged model's held-out loss " << loss_merged << " differs from the LoRA model's "
              << loss_after << " by " << rel << " (relative), more than " << tol << "\n";
    return kExitFailure;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // One line per warning on stderr, prefixed like every other message of the tool.
  peft::set_warning_handler([](const std::string& m) { std::cerr << "peft-finetune: warning: " << m << "\n"; });
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "peft-finetune: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  }
  try {
    return run(args, argv[0]);
  } catch (const ConfigFailure& e) {
    std::cerr << "peft-finetune: " << e.what() << "\n";
    return kExitUsage;
  } catch (const ConfigError& e) {
    std::cerr << "peft-finetune: " << e.what() << "\n";
    return kExitUsage;
  } catch (const TargetNotFoundError& e) {
    std::cerr << "peft-finetune: lora.target_modules: " << e.what() << "\n";
    return kExitUsage;
  } catch (const SerializationError& e) {
    // Config files that are not YAML, unreadable files, bad checkpoints.
    std::cerr << "peft-finetune: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::string m = e.what();
    // LibTorch appends a C++ backtrace after the first line; keep the message one line.
    if (auto nl = m.find('\n'); nl != std::string::npos) m = m.substr(0, nl);
    std::cerr << "peft-finetune: " << m << "\n";
    return kExitFailure;
  }
}
