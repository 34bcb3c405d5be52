// The training loop (peft/train/trainer.hpp).

#include "peft/train/trainer.hpp"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstring>

#include "peft/train/data_parallel.hpp"
#include "peft/train/loss_svg.hpp"
#include "peft/train/lr_schedule.hpp"
#include "peft/train/progress.hpp"

namespace peft::train {

LoopResult run_training(torch::nn::Module& model, const std::vector<torch::Tensor>& params, const TrainHooks& hooks,
                        const LoopOptions& o) {
  const TrainingConfig& t = o.training;
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(t.lr).weight_decay(t.weight_decay));
  ProcessGroup* pg = o.process_group && o.process_group->world_size() > 1 ? o.process_group.get() : nullptr;
  const int rank = pg ? pg->rank() : 0;
  const int world = pg ? pg->world_size() : 1;
  TrainerState state;
  state.world_size = world;
  state.run = o.run;
  const auto cuda_device = [&] {
    return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(o.device.has_index() ? o.device.index() : 0));
  };
  if (o.resume_from) {
    if (!o.peft_model) throw Error("resume needs the LoraModel whose adapter the checkpoint holds");
    // The world size first, from the state file alone: a refused resume must leave the adapter
    // and the optimizer as they were.
    const int written_by = read_checkpoint_state(*o.resume_from, /*all_files=*/false).world_size;
    if (written_by != world)
      throw Error(o.resume_from->string() + ": written by a run on " + std::to_string(written_by) +
                  " rank(s), this run has " + std::to_string(world) +
                  " (hint: resume with the same number of ranks, e.g. peft-finetune --nproc-per-node " +
                  std::to_string(written_by) + ", or start a new output_dir)");
    state = load_training_checkpoint(*o.resume_from, *o.peft_model, opt, o.run);
    if (!o.run.empty()) state.run = o.run;
    if (hooks.restore_sampler) hooks.restore_sampler(state.sampler_state);
    const auto r = static_cast<std::size_t>(rank);
    set_rng_state(torch::kCPU, world > 1 ? state.rank_cpu_rng_states.at(r) : state.cpu_rng_state);
    if (o.device.is_cuda()) {
      if (world > 1 && !state.rank_cuda_rng_states.empty()) set_rng_state(cuda_device(), state.rank_cuda_rng_states.at(r));
      else if (world == 1 && !state.cuda_rng_state.empty())
        set_rng_state(torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(state.cuda_device)), state.cuda_rng_state);
    }
  }
  std::optional<GradientReducer> reducer;
  if (pg) {
    broadcast_parameters(*pg, params);
    reducer.emplace(o.process_group, params);
  }
  std::optional<MetricsWriter> metrics;
  if (!o.metrics_path.empty()) metrics.emplace(o.metrics_path, state.metrics);
  std::optional<ProgressBar> bar;
  if (o.progress) bar.emplace(*o.progress, o.label, o.tty, t.log_every);
  LoopResult result;

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const double elapsed0 = state.elapsed_s;
  const std::int64_t first_step = state.step;
  auto elapsed = [&] { return elapsed0 + std::chrono::duration<double>(clock::now() - start).count(); };
  double window_loss = 0.0, window_start = elapsed0;
  std::int64_t window_steps = 0, window_tokens = 0;

  auto evaluate = [&]() -> std::optional<double> {
    if (!hooks.eval_loss) return std::nullopt;
    model.eval();
    double v;
    {
      torch::NoGradGuard no_grad;
      v = hooks.eval_loss();
    }
    model.train();
    return v;
  };
  // Every rank's generator state, gathered to all (each is the same size on every rank).
  auto gather_states = [&](const std::string& mine) {
    torch::Tensor bytes = torch::empty({static_cast<std::int64_t>(mine.size())}, torch::kUInt8);
    std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
    std::vector<std::string> all;
    for (const auto& g : pg->all_gather(bytes)) {
      const torch::Tensor c = g.to(torch::kCPU).contiguous();
      all.emplace_back(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()));
    }
    return all;
  };
  auto checkpoint = [&]() {
    if (o.checkpoints_dir.empty() || !o.peft_model) return;
    state.elapsed_s = elapsed();
    state.sampler_state = hooks.sampler_state ? hooks.sampler_state() : 0;
    state.cpu_rng_state = rng_state(torch::kCPU);
    if (o.device.is_cuda()) {
      state.cuda_device = o.device.has_index() ? o.device.index() : 0;
      state.cuda_rng_state = rng_state(cuda_device());
    }
    if (pg) {
      state.rank_cpu_rng_states = gather_states(state.cpu_rng_state);
      if (o.device.is_cuda()) state.rank_cuda_rng_states = gather_states(state.cuda_rng_state);
      // Rank 0 writes; the barrier after it means the checkpoint exists on return on every rank.
      const std::filesystem::path dir = o.checkpoints_dir / ("step-" + std::to_string(state.step));
      if (rank == 0) save_training_checkpoint(o.checkpoints_dir, *o.peft_model, opt, state, t.keep_checkpoints);
      pg->barrier();
      result.last_checkpoint = dir;
      return;
    }
    result.last_checkpoint = save_training_checkpoint(o.checkpoints_dir, *o.peft_model, opt, state, t.keep_checkpoints);
  };

  model.train();
  while (state.step < t.steps) {
    if (!pg && stop_requested()) {  // ranks agree on stopping through the step's allreduce below
      result.interrupted = true;
      break;
    }
    const double lr = lr_at(state.step, t);
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    opt.zero_grad();
    double step_loss = 0.0;
    std::int64_t step_tokens = 0;
    for (std::int64_t micro = 0; micro < t.grad_accum; ++micro) {
      torch::Tensor batch = hooks.next_batch().to(o.device);
      torch::Tensor loss = hooks.loss(batch) / static_cast<double>(t.grad_accum);
      loss.backward();
      step_loss += loss.item<double>();
      step_tokens += hooks.batch_tokens ? hooks.batch_tokens(batch) : batch.size(0) * (batch.size(1) - 1);
    }
    bool stop_everywhere = false;
    if (reducer) {
      // Gradients averaged, and the ranks' losses, tokens and stop requests summed, in one go.
      const auto sums = reducer->reduce({step_loss, static_cast<double>(step_tokens), stop_requested() ? 1.0 : 0.0});
      step_loss = sums[0] / static_cast<double>(world);
      step_tokens = static_cast<std::int64_t>(sums[1]);
      stop_everywhere = sums[2] > 0;
    }
    state.tokens_seen += step_tokens;
    window_tokens += step_tokens;
    if (t.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, t.max_grad_norm);
    opt.step();
    ++state.step;
    window_loss += step_loss;
    ++window_steps;

    const bool last = state.step == t.steps;
    std::optional<double> eval;
    if (last || (t.eval_every > 0 && state.step % t.eval_every == 0)) eval = evaluate();
    const double now = elapsed();
    const double tok_s = now > window_start ? static_cast<double>(window_tokens) / (now - window_start) : 0.0;
    ProgressInfo info;
    info.step = state.step;
    info.total = t.steps;
    info.loss = step_loss;
    info.lr = lr;
    info.tokens_per_s = tok_s;
    const double run_s = now - elapsed0;
    const std::int64_t run_steps = state.step - first_step;
    info.eta_s = run_steps > 0 ? run_s / static_cast<double>(run_steps) * static_cast<double>(t.steps - state.step) : -1;
    info.eval_loss = eval;
    if (bar) bar->update(info);
    if (last || eval || state.step % t.log_every == 0) {
      MetricsRecord r;
      r.step = state.step;
      r.loss = window_loss / static_cast<double>(window_steps);
      r.lr = lr;
      r.tokens_per_s = tok_s;
      r.elapsed_s = now;
      r.eval_loss = eval;
      r.phase = o.phase;
      state.metrics.push_back(r);
      if (metrics) metrics->write(r);
      window_loss = 0.0;
      window_steps = 0;
      window_tokens = 0;
      window_start = now;
    }
    if (eval && last) result.final_eval_loss = eval;
    if (t.save_every > 0 && state.step % t.save_every == 0) checkpoint();
    if ((pg ? stop_everywhere : stop_requested()) && !last) {
      result.interrupted = true;
      break;
    }
  }
  if (result.interrupted) {
    // Save where we stopped unless the periodic save just did.
    if (!(result.last_checkpoint && detail::checkpoint_step(*result.last_checkpoint) == state.step)) checkpoint();
  }
  if (bar) bar->finish();
  if (!o.svg_path.empty()) write_loss_svg(o.svg_path, state.metrics, o.svg_title);
  result.step = state.step;
  result.metrics = state.metrics;
  result.tokens_seen = state.tokens_seen;
  result.elapsed_s = elapsed();
  return result;
}

}  // namespace peft::train
