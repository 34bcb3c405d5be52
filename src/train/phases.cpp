// The phases of a fine-tuning run (peft/train/phases.hpp). The lines they print are
// peft-finetune's output, which tests/finetune_cli.sh and README quote: keep them stable.

#include "peft/train/phases.hpp"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <thread>

#include <dlfcn.h>

#include "peft/error.hpp"
#include "peft/io/adapters.hpp"
#include "peft/models/load_4bit.hpp"
#include "peft/quant/quantize_model.hpp"

namespace peft::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string fmt(double v, int prec = 4) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

torch::Tensor next_token_loss(models::CausalLMImpl& model, const torch::Tensor& batch) {
  return models::causal_lm_loss(model, batch, batch);  // chunked over the vocabulary where the head allows
}

/// The loop options every run_training call of a run shares: schedule, device, progress stream.
LoopOptions loop_options(const TrainingRun& run, std::string label) {
  LoopOptions o;
  o.training = run.config.training;
  o.device = run.device;
  o.label = std::move(label);
  o.progress = run.progress;
  o.tty = run.tty;
  return o;
}

/// LibTorch's intra-op threads and OpenBLAS's own pool, both `n`. OpenBLAS sizes its pool from
/// OPENBLAS_NUM_THREADS or the core count, not from LibTorch; its multi-threaded sgemm sums in
/// another order on some CPUs (seen on AMD EPYC: last-bit differences), so a rank started by
/// hand (torchrun style) computed other bits than one started by our launcher, which sets the
/// variable. Setting the pool here makes the result depend on training.threads alone.
void set_cpu_threads(int n) {
  torch::set_num_threads(n);
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

}  // namespace

TrainingRun prepare_run(TrainConfig config, std::string config_name, const RunOverrides& overrides,
                        std::ostream* out, std::ostream* progress, bool tty) {
  if (overrides.output_dir) config.output_dir = *overrides.output_dir;
  if (overrides.steps) {
    config.training.steps = *overrides.steps;
    config.training.num_train_epochs = 0;  // --steps wins over epochs
  }
  if (overrides.resume) config.resume = true;
  TrainingRun run;
  const TrainingConfig& t = config.training;
  const DistributedEnv* env =
      overrides.distributed && overrides.distributed->world_size > 1 ? &*overrides.distributed : nullptr;
  run.device = parse_device(t.device, config_name);
  if (env && run.device.is_cuda() && !run.device.has_index())  // torchrun's convention: one GPU per local rank
    run.device = parse_device("cuda:" + std::to_string(env->local_rank), config_name + " (LOCAL_RANK)");
  run.dtype = t.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  run.output_dir = config.output_dir;
  fs::create_directories(run.output_dir);
  // LibTorch's default can be 1 on machines whose cores it counts as one physical core; local
  // ranks share the cores.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned local_ranks = env ? static_cast<unsigned>(env->local_world_size) : 1u;
  set_cpu_threads(static_cast<int>(t.threads > 0 ? t.threads : std::max(1u, cores / local_ranks)));
  // Which run this is, and what output_dir already holds, before anything is written there:
  // checkpoints of another run are never continued or pruned silently (docs/checkpoints.md).
  run.fingerprint = run_fingerprint(config);
  const fs::path checkpoints = run.output_dir / "checkpoints";
  if (!config.resume) {
    if (const auto existing = latest_checkpoint(checkpoints))
      throw TrainConfigError(config_name, "output_dir", run.output_dir.string(),
                             "already holds checkpoints of a run (newest: " + existing->filename().string() +
                                 "); a new run there would mix with them",
                             "pass --resume (resume: true) to continue that run, choose another --output-dir, or "
                             "delete " + checkpoints.string());
  } else {
    if (!config.resume_from.empty()) run.resume_from = config.resume_from;
    else run.resume_from = latest_checkpoint(checkpoints);
    if (!run.resume_from && out) *out << "resume: no checkpoint in " << checkpoints.string() << ", starting fresh\n";
    if (run.resume_from)
      check_same_run(*run.resume_from, read_checkpoint_state(*run.resume_from, /*all_files=*/false).run,
                     run.fingerprint, config_name);
  }
  if (env) {
    DistributedOptions d;
    d.backend = t.ddp_backend;
    d.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(t.ddp_timeout * 1000.0));
    run.process_group = ProcessGroup::create(*env, run.device, d);
  }
  if (run.process_group) {
    // Every rank must continue from the same step (an output_dir local to each machine would not).
    const std::int64_t mine = run.resume_from ? detail::checkpoint_step(*run.resume_from) : -1;
    const auto all = run.process_group->all_gather(torch::tensor({mine}, torch::kInt64));
    for (std::size_t r = 0; r < all.size(); ++r)
      if (all[r].item<std::int64_t>() != mine)
        throw Error("rank " + std::to_string(env->rank) + " resumes from " +
                    (mine < 0 ? std::string("nothing") : "step " + std::to_string(mine)) + " but rank " +
                    std::to_string(r) + " from " +
                    (all[r].item<std::int64_t>() < 0 ? std::string("nothing")
                                                     : "step " + std::to_string(all[r].item<std::int64_t>())) +
                    " (hint: every rank must see the same output_dir; on several machines put it on a shared "
                    "filesystem)");
  }
  run.config = std::move(config);
  run.config_name = std::move(config_name);
  run.out = out;
  run.progress = progress;
  run.tty = tty;
  return run;
}

std::string describe_run(const TrainingRun& run) {
  const TrainingConfig& t = run.config.training;
  std::ostringstream s;
  s << "config " << run.config_name << ", output " << run.output_dir.string() << ", device " << t.device
    << ", dtype " << t.dtype << ", " << torch::get_num_threads() << " threads";
  if (run.process_group)
    s << (run.process_group->world_size() > 1 ? " per rank" : "") << ", data parallel on "
      << run.process_group->world_size() << " ranks (" << run.process_group->backend() << ", batch " << t.batch_size
      << " per rank)";
  return s.str();
}

PretrainResult pretrain_base(const TrainingRun& run) {
  const TrainConfig& cfg = run.config;
  const TrainingConfig& t = cfg.training;
  PretrainResult result;
  result.base_source = cfg.base_model;
  if (!cfg.pretrain) return result;
  const PretrainConfig& p = *cfg.pretrain;
  const fs::path base_dir = run.output_dir / p.save_dir;
  if (run.resume_from && fs::is_regular_file(base_dir / "config.json")) {
    if (run.out) *run.out << "pretrain: reusing the saved base " << base_dir.string() << "\n";
    result.base_source = base_dir.string();
    return result;
  }
  if (run.process_group) {
    // Rank 0 pre-trains and saves the base; the others wait (up to training.ddp_timeout) and load it.
    TrainingRun solo = run;
    solo.process_group = nullptr;
    if (run.rank() == 0) result = pretrain_base(solo);
    torch::Tensor interrupted = torch::tensor({result.interrupted ? 1.0 : 0.0}, torch::kFloat64);
    run.process_group->allreduce_sum(interrupted);
    result.interrupted = interrupted.item<double>() > 0;
    if (!result.interrupted) result.base_source = base_dir.string();
    return result;
  }
  const auto started = Clock::now();
  torch::manual_seed(static_cast<std::int64_t>(t.seed));
  models::CausalLM model = models::make_builtin(cfg.base_model, t.seed);
  model->to(run.device);  // pre-trained in fp32 whatever training.dtype says; the LoRA run casts
  const text::ByteTokenizer tokenizer;  // the builtin models' vocabulary
  const TokenData d = load_token_data(p.file, "text", tokenizer, t.seq_len, 0.05, model->vocab_size());
  std::int64_t n_params = 0;
  for (const auto& param : model->parameters()) n_params += param.numel();
  if (run.out)
    *run.out << "pretrain: " << cfg.base_model << " (" << n_params << " parameters, all trained) on "
             << p.file.filename().string() << " (" << d.tokens << " tokens, " << d.blocks.train.size(0) << " train / "
             << d.blocks.heldout.size(0) << " held-out blocks of " << t.seq_len << ")\n";
  text::BatchSampler sampler(d.blocks.train, p.batch_size, t.seed + 1);
  TrainHooks h;
  h.next_batch = [&] { return sampler.next(); };
  h.loss = [&](const torch::Tensor& b) { return next_token_loss(*model, b); };
  h.eval_loss = [&] {
    return heldout_loss(*model, d.blocks.heldout, p.batch_size, t.eval_batches * p.batch_size, run.device);
  };
  LoopOptions o = loop_options(run, "pretrain");
  o.training.steps = p.steps;
  o.training.batch_size = p.batch_size;
  o.training.lr = p.lr;
  o.training.warmup_steps = p.warmup_steps;
  o.training.grad_accum = 1;
  o.training.eval_every = 0;
  o.training.save_every = 0;
  o.phase = "pretrain";
  o.metrics_path = run.output_dir / "pretrain_metrics.jsonl";
  o.svg_path = run.output_dir / "pretrain_loss.svg";
  o.svg_title = "Pre-training " + cfg.base_model;
  const LoopResult r = run_training(*model, model->parameters(), h, o);
  if (r.interrupted) {
    result.interrupted = true;
    return result;
  }
  if (run.out)
    *run.out << "pretrain: held-out loss on part A " << fmt(*r.final_eval_loss) << " after " << r.step << " steps ("
             << fmt(r.elapsed_s, 1) << " s)\n";
  for (auto& param : model->parameters()) param.set_requires_grad(false);  // frozen from here on
  models::save_causal_lm(*model, base_dir);
  if (run.out) *run.out << "pretrain: saved the frozen base to " << base_dir.string() << " (Hugging Face format)\n";
  result.seconds = seconds_since(started);
  result.base_source = base_dir.string();
  return result;
}

BaseModel build_model(const TrainingRun& run, const std::string& source) {
  const TrainConfig& cfg = run.config;
  const TrainingConfig& t = cfg.training;
  BaseModel base;
  base.source = source;
  if (cfg.base_model.rfind("builtin:", 0) == 0) base.tokenizer = std::make_shared<text::ByteTokenizer>();
  else base.tokenizer = text::load_tokenizer(cfg.base_model);
  torch::manual_seed(static_cast<std::int64_t>(t.seed));
  if (cfg.quantization) {
    // QLoRA: bnb's Linear4bit storage for every Linear but the head (quantised as the checkpoint
    // streams in), then PEFT's prepare_model_for_kbit_training (everything frozen, half-precision
    // parameters in fp32).
    base.model = models::load_causal_lm_4bit(source, *cfg.quantization, run.device, run.dtype);
    prepare_model_for_kbit_training(*base.model);
    const auto f = quantized_footprint(*base.model);
    if (run.out)
      *run.out << "quantization: " << f.layers << " Linear layers to 4-bit " << cfg.quantization->bnb_4bit_quant_type
               << (cfg.quantization->bnb_4bit_use_double_quant ? " (double quantisation)" : "") << ", "
               << f.parameters << " weights in " << (f.code_bytes + f.state_bytes) << " bytes ("
               << f.bytes_per_parameter() << " bytes/weight), compute dtype "
               << cfg.quantization->bnb_4bit_compute_dtype << "\n";
  } else {
    base.model = models::load_causal_lm(source, run.device, run.dtype);
  }
  base.model->set_gradient_checkpointing(t.gradient_checkpointing);
  const std::int64_t positions = base.model->max_positions();
  if (t.seq_len > positions)
    throw TrainConfigError(run.config_name, "training.seq_len", std::to_string(t.seq_len),
                           "longer than the model's " + std::to_string(positions) + " positions",
                           "at most " + std::to_string(positions));
  return base;
}

void check_nothing_dropped(const text::Tokenizer& tokenizer, std::uint64_t before, const fs::path& data) {
  const std::uint64_t dropped = tokenizer.dropped_characters() - before;
  if (dropped > 0)
    throw Error(data.string() + ": the tokenizer has no token for " + std::to_string(dropped) +
                " character(s) of the data and dropped them (no unk_token, no byte_fallback; HF drops them too) "
                "(hint: use the model's own tokenizer, or clean the data of those characters)");
}

TokenData load_token_data(const fs::path& file, const std::string& jsonl_field, const text::Tokenizer& tokenizer,
                          std::int64_t seq_len, double heldout_fraction, std::int64_t vocab) {
  TokenData d;
  const auto docs = text::load_documents(file, jsonl_field);
  d.documents = docs.size();
  const std::uint64_t dropped_before = tokenizer.dropped_characters();
  const auto ids = text::encode_documents(tokenizer, docs);
  check_nothing_dropped(tokenizer, dropped_before, file);
  d.tokens = static_cast<std::int64_t>(ids.size());
  if (tokenizer.vocab_size() > vocab)
    throw Error("the tokenizer has " + std::to_string(tokenizer.vocab_size()) + " ids but the model only " +
                std::to_string(vocab) + " embeddings (hint: use the tokenizer that belongs to the model)");
  d.blocks = text::make_blocks(ids, seq_len, heldout_fraction);
  return d;
}

TokenData prepare_data(const TrainingRun& run, const BaseModel& base) {
  const TrainConfig& cfg = run.config;
  const TrainingConfig& t = cfg.training;
  const std::int64_t seq_len = t.seq_len;
  const std::string ext = cfg.data.file.extension().string();
  const bool jsonl = ext == ".jsonl" || ext == ".ndjson";
  if (!jsonl && cfg.data.format != "auto" && cfg.data.format != "text")
    throw TrainConfigError(run.config_name, "data.format", cfg.data.format,
                           "needs a .jsonl file of records, not " + cfg.data.file.filename().string(),
                           "format: text (or auto) for plain text");
  TokenData d;
  if (jsonl && cfg.data.format != "text") {
    auto records = text::load_records(cfg.data.file, *text::parse_record_format(cfg.data.format), cfg.data.jsonl_field);
    if (records.front().format != text::RecordFormat::Text) d = prepare_instruction_data(run, base, records);
  }
  if (!d.instructions) {
    d = load_token_data(cfg.data.file, cfg.data.jsonl_field, *base.tokenizer, seq_len, cfg.data.heldout_fraction,
                        base.model->vocab_size());
    if (run.out)
      *run.out << "data: " << cfg.data.file.string() << " (" << d.documents << " documents, " << d.tokens
               << " tokens, " << base.tokenizer->kind() << " tokenizer) -> " << d.blocks.train.size(0) << " train / "
               << d.blocks.heldout.size(0) << " held-out blocks of " << seq_len << " tokens\n";
  }
  const auto rows = d.instructions ? static_cast<std::int64_t>(d.instructions->train.size()) : d.blocks.train.size(0);
  // A step consumes grad_accum x batch_size rows on every rank.
  const std::int64_t per_step = t.batch_size * t.grad_accum * run.world_size();
  d.steps = t.num_train_epochs > 0
                ? std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(
                                                t.num_train_epochs * static_cast<double>(rows) /
                                                static_cast<double>(per_step) - 1e-9)))
                : t.steps;
  if (t.num_train_epochs > 0 && run.out)
    *run.out << "data: " << t.num_train_epochs << " epochs of " << rows << " rows in batches of " << t.grad_accum
             << " x " << t.batch_size << (run.world_size() > 1 ? " x " + std::to_string(run.world_size()) + " ranks" : "")
             << " = " << d.steps << " steps\n";
  return d;
}

// Every block has the same number of targets, so the mean of chunk means weighted by rows is the
// token mean.
double heldout_loss(models::CausalLMImpl& model, const torch::Tensor& heldout, std::int64_t batch,
                    std::int64_t max_blocks, torch::Device device) {
  return heldout_loss_sum(model, heldout, batch, max_blocks, device, Shard{}).mean();
}

LossSum heldout_loss_sum(models::CausalLMImpl& model, const torch::Tensor& heldout, std::int64_t batch,
                         std::int64_t max_blocks, torch::Device device, const Shard& shard) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  std::int64_t n = heldout.size(0);
  if (max_blocks > 0) n = std::min(n, max_blocks);
  LossSum sum;
  for (std::int64_t i = 0, chunk = 0; i < n; i += batch, ++chunk) {
    if (!shard.owns(chunk)) continue;
    const auto rows = heldout.slice(0, i, std::min(n, i + batch)).to(device);
    sum.total += next_token_loss(model, rows).item<double>() * static_cast<double>(rows.size(0));
    sum.weight += static_cast<double>(rows.size(0));
  }
  if (was_training) model.train();
  return sum;
}

namespace {
/// evaluate()'s sum over the chunks `shard` owns.
LossSum evaluate_sum(const TrainingRun& run, models::CausalLMImpl& model, const TokenData& data, const Shard& shard) {
  const TrainingConfig& t = run.config.training;
  // eval_batches counts global batches (batch_size rows on each of the ranks), so W ranks
  // evaluate the rows one process with batch W x batch_size would.
  const std::int64_t rows = t.eval_batches * t.batch_size * run.world_size();
  if (data.instructions)
    return instruction_heldout_loss_sum(model, *data.instructions, t.batch_size, rows, run.device, shard);
  return heldout_loss_sum(model, data.blocks.heldout, t.batch_size, rows, run.device, shard);
}
}  // namespace

double evaluate(const TrainingRun& run, models::CausalLMImpl& model, const TokenData& data) {
  if (!run.process_group) return evaluate_sum(run, model, data, Shard{}).mean();
  return allreduce(*run.process_group, evaluate_sum(run, model, data, run.shard())).mean();
}

LoraModelOptions adapter_options(const models::CausalLMImpl& model) {
  LoraModelOptions o;
  o.plan.model_type = model.model_type();
  o.plan.output_layer = "lm_head";
  o.plan.input_embeddings = model.model_type() == "gpt2" ? "wte" : "embed_tokens";  // trainable_token_indices list form
  return o;
}

LoraModel attach_adapter(const TrainingRun& run, const BaseModel& base) {
  LoraConfig lora = run.config.lora;
  lora.base_model_name_or_path = base.source;
  LoraModel pm(base.model, lora, "default", adapter_options(*base.model));
  if (run.out)
    *run.out << "lora: r " << lora.r << ", alpha " << lora.lora_alpha.value << ", " << pm.targeted_module_names().size()
             << " adapted modules; " << pm.trainable_parameters_summary() << "\n";
  return pm;
}

LoopResult finetune(const TrainingRun& run, const BaseModel& base, LoraModel& adapter, const TokenData& data,
                    double loss_before) {
  const TrainConfig& cfg = run.config;
  const TrainingConfig& t = cfg.training;
  models::CausalLMImpl& model = *base.model;
  const InstructionSet* set = data.instructions ? &*data.instructions : nullptr;
  // One sampler of global batches (batch_size rows per rank) on every rank; each takes its rows,
  // so W ranks see what one process with batch W x batch_size would, and resume alike.
  const Shard shard = run.shard();
  const std::int64_t rows_total = set ? static_cast<std::int64_t>(set->train.size()) : data.blocks.train.size(0);
  text::BatchSampler sampler(rows_total, t.batch_size * shard.world, t.seed);
  TrainHooks h;
  h.next_batch = [&] {
    if (run.before_batch) run.before_batch();
    const std::vector<std::int64_t> mine = shard.rows_of(sampler.next_indices(), t.batch_size);
    if (!set) return data.blocks.train.index_select(0, torch::tensor(mine, torch::kInt64));
    // Examples of different lengths: one right-padded batch (ids, labels, mask) per draw.
    std::vector<const text::Example*> rows;
    for (std::int64_t i : mine) rows.push_back(&set->train[static_cast<std::size_t>(i)]);
    return text::collate(rows, set->pad_id).stacked();
  };
  h.sampler_state = [&] { return sampler.state(); };
  h.restore_sampler = [&](std::uint64_t s) { sampler.restore(s); };
  h.loss = [&](const torch::Tensor& b) { return set ? labeled_batch_loss(model, b) : next_token_loss(model, b); };
  if (set) h.batch_tokens = [](const torch::Tensor& b) { return b.select(1, 2).sum().item<std::int64_t>(); };
  h.eval_loss = [&] { return evaluate(run, model, data); };
  LoopOptions o = loop_options(run, "lora");
  o.training.steps = data.steps > 0 ? data.steps : t.steps;
  if (run.rank() == 0) {
    o.metrics_path = run.output_dir / "metrics.jsonl";
    o.svg_path = run.output_dir / "loss.svg";
  }
  o.process_group = run.process_group;
  o.svg_title = "LoRA fine-tune of " + base.source + " on " + cfg.data.file.filename().string();
  o.checkpoints_dir = run.output_dir / "checkpoints";
  o.peft_model = &adapter;
  o.resume_from = run.resume_from;
  o.run = run.fingerprint;
  std::size_t longest = 0;
  if (set)
    for (const auto& e : set->train) longest = std::max(longest, e.ids.size());
  if (run.out) {
    if (run.resume_from) *run.out << "resume: from " << run.resume_from->string() << "\n";
    *run.out << "lora: held-out loss before fine-tuning " << fmt(loss_before) << "; training " << o.training.steps
             << " steps of " << t.grad_accum << " x " << t.batch_size << " x "
             << (set ? "up to " + std::to_string(longest) : std::to_string(t.seq_len)) << " tokens\n";
  }
  // Dropout differs per rank (rank 0 keeps the stream a single process would use).
  if (shard.rank > 0) torch::manual_seed(static_cast<std::int64_t>(t.seed + 1000003ULL * static_cast<std::uint64_t>(shard.rank)));
  LoopResult r = run_training(model, adapter.trainable_parameters(), h, o);
  if (!r.interrupted && !r.final_eval_loss) r.final_eval_loss = evaluate(run, model, data);
  return r;
}

fs::path export_adapter(const TrainingRun& run, const LoraModel& adapter) {
  const fs::path dir = run.output_dir / "adapter";
  if (run.rank() == 0) save_pretrained(adapter, dir);
  if (run.process_group) run.process_group->barrier();  // the adapter exists when any rank returns
  return dir;
}

std::string MergeCheck::failure_message() const {
  std::ostringstream s;
  if (!answers_match())
    s << "the merged model answers " << merged_answers->correct << " held-out prompts right, the LoRA model "
      << *lora_correct;
  else
    s << "the merged model's held-out loss " << merged_loss << " differs from the LoRA model's " << lora_loss
      << " by " << relative_difference << " (relative), more than " << tolerance;
  return s.str();
}

MergeCheck verify_merge(const TrainingRun& run, const std::string& base_source, const fs::path& adapter_dir,
                        const TokenData& data, double lora_loss, const std::optional<AnswerCheck>& lora_answers) {
  torch::manual_seed(static_cast<std::int64_t>(run.config.training.seed));
  const bool quantized = run.config.quantization.has_value();
  models::CausalLM fresh = quantized
                               ? models::load_causal_lm_4bit(base_source, *run.config.quantization, run.device, run.dtype)
                               : models::load_causal_lm(base_source, run.device, run.dtype);
  if (quantized) {
    // The same (deterministic) 4-bit base as training, then dense again in fp32 so the merge is
    // exact: the merged model computes with the very weights the 4-bit forward dequantised.
    prepare_model_for_kbit_training(*fresh);
    dequantize_model(*fresh, torch::kFloat32);
  }
  LoraModel reloaded(fresh, adapter_options(*fresh));
  load_adapter(reloaded, adapter_dir, "default");
  reloaded.set_adapter("default");
  reloaded.merge_and_unload();
  MergeCheck m;
  m.lora_loss = lora_loss;
  m.merged_loss = evaluate_sum(run, *fresh, data, Shard{}).mean();  // rank 0 alone in a data-parallel run
  m.relative_difference = std::abs(m.merged_loss - lora_loss) / std::max(1e-12, std::abs(lora_loss));
  // bf16 base weights round the merged W + BA to 8 bits of mantissa; fp32 only reorders sums.
  // A bf16 compute dtype on a 4-bit base rounds the training forward the same way.
  const bool bf16_compute = quantized && run.config.quantization->bnb_4bit_compute_dtype != "float32";
  m.tolerance = run.dtype == torch::kBFloat16 || bf16_compute ? 2e-2 : 1e-4;
  if (lora_answers) {
    m.lora_correct = lora_answers->correct;
    m.merged_answers = check_heldout_answers(run, *fresh, data);
  }
  return m;
}

void print_summary(const TrainingRun& run, const RunSummary& s) {
  if (!run.out) return;
  std::ostream& os = *run.out;
  const double total_s = seconds_since(run.started);
  const auto [trainable, all] = s.parameters;
  const double before = s.loss_before, after = s.merge.lora_loss;
  const bool resumed = run.resume_from.has_value();
  const fs::path& out = run.output_dir;
  os << "\nsummary\n";
  if (s.pretrain.seconds)
    os << "  pre-trained base:        " << s.pretrain.base_source << " (" << fmt(*s.pretrain.seconds, 1) << " s)\n";
  os << "  trainable parameters:    " << trainable << " of " << all << " ("
     << fmt(100.0 * static_cast<double>(trainable) / static_cast<double>(all), 2) << "%)\n";
  const fs::path& heldout_file = run.config.data.heldout_file.empty() ? run.config.data.file : run.config.data.heldout_file;
  os << "  held-out loss (" << heldout_file.filename().string() << "): before " << fmt(before) << " -> after "
     << fmt(after) << " (" << fmt(100.0 * (after - before) / before, 1) << "%)\n";
  const std::streamsize precision = os.precision();
  os << "  merged model:            " << fmt(s.merge.merged_loss, 6) << " vs LoRA " << fmt(after, 6)
     << " (relative difference " << std::scientific << std::setprecision(1) << s.merge.relative_difference
     << std::defaultfloat << ", limit " << s.merge.tolerance << ")\n";
  os.precision(precision);
  if (s.answers_before && s.answers_after) {
    auto pct = [](const AnswerCheck& a) { return fmt(100.0 * a.exact_match(), 1) + "%"; };
    os << "  held-out exact match:    before " << s.answers_before->correct << "/" << s.answers_before->total << " ("
       << pct(*s.answers_before) << ") -> after " << s.answers_after->correct << "/" << s.answers_after->total << " ("
       << pct(*s.answers_after) << ")";
    if (s.merge.merged_answers) os << ", merged " << s.merge.merged_answers->correct << "/" << s.merge.merged_answers->total;
    os << "\n";
  }
  os << "  steps:                   " << s.training.step << ", " << s.training.tokens_seen << " tokens, "
     << fmt(s.training.elapsed_s, 1) << " s training" << (resumed ? " (all runs)" : "") << ", " << fmt(total_s, 1)
     << " s in all" << (resumed ? " (this run)" : "") << "\n";
  os << "  adapter:                 " << s.adapter_dir.string() << "\n";
  if (fs::is_directory(out / "checkpoints")) os << "  checkpoints:             " << (out / "checkpoints").string() << "\n";
  os << "  metrics / loss curve:    " << (out / "metrics.jsonl").string() << ", " << (out / "loss.svg").string() << "\n";
  if (s.answers_after) os << "  held-out answers:        " << (out / "answers.jsonl").string() << "\n";
}

}  // namespace peft::train
