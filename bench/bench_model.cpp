// Whole-model costs (issue 6), fp32 CPU:
//   io/save_pretrained, io/load_adapter: adapter file throughput (counter MB_per_s) on a stack of
//     L adapted 4096x4096 Linear layers at r=64 (L=64: a 128 MiB adapter). The layers share one
//     base weight tensor, since only adapter bytes are read or written and 64 separate 64 MiB
//     weights would not fit next to the other builds on this machine.
//   io/merge_and_unload: merge every layer's B·A into its base weight and strip the adapters
//     (each iteration gets a freshly injected stack; counter ms_per_layer).
//   model_step/<builtin>: one training step (forward, causal-LM loss, backward, AdamW step) of the
//     builtin tiny models for frozen (forward + backward with only the embedding trainable, so
//     the backward runs through every layer as LoRA's does), LoRA (all linear layers, r=8) and a
//     full fine-tune, paired in one loop like paired_step; counters x_frozen (LoRA / frozen),
//     full_x_frozen, lora_x_full, and the peak bytes of each step (CPU counting allocator).
// BENCH_QUICK=1: L=16.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

#include "peft/io/adapters.hpp"
#include "peft/layers/linear.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/cpu_memory_counter.hpp"

#if __has_include("peft/models/causal_lm.hpp")
#include "peft/models/causal_lm.hpp"
#define PEFT_BENCH_HAVE_MODELS 1
#endif

namespace fs = std::filesystem;

namespace {

bool quick_mode() {
  const char* q = std::getenv("BENCH_QUICK");
  return q && *q && std::string(q) != "0";
}

struct StackImpl : torch::nn::Module {
  StackImpl(std::int64_t layers, std::int64_t d) {
    torch::NoGradGuard no_grad;
    auto w = torch::randn({d, d}) / std::sqrt(static_cast<double>(d));  // one weight for all
    list = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < layers; ++i)
      list->push_back(std::make_shared<peft::LinearImpl>(torch::nn::LinearOptions(d, d).bias(false), w, torch::Tensor()));
  }
  torch::nn::ModuleList list{nullptr};
};

std::shared_ptr<StackImpl> make_stack(std::int64_t layers, std::int64_t d) {
  return std::make_shared<StackImpl>(layers, d);
}

peft::LoraConfig stack_config(std::int64_t layers, std::int64_t r) {
  std::vector<std::string> names;
  for (std::int64_t i = 0; i < layers; ++i) names.push_back("layers." + std::to_string(i));
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(names);
  c.r = r;
  c.lora_alpha = static_cast<double>(2 * r);
  return c;
}

fs::path scratch(const std::string& what) {
  auto dir = fs::temp_directory_path() / ("peft_bench_" + std::to_string(::getpid())) / what;
  fs::create_directories(dir);
  return dir;
}

std::int64_t dir_bytes(const fs::path& dir) {
  std::int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<std::int64_t>(e.file_size());
  return n;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void bench_save(benchmark::State& st, std::int64_t layers, std::int64_t d, std::int64_t r) {
  auto stack = make_stack(layers, d);
  auto pm = peft::get_peft_model(stack, stack_config(layers, r));
  {
    torch::NoGradGuard g;
    for (auto& [k, l] : pm.lora_layers()) l->lora_B("default")->weight.normal_(0, 0.02);
  }
  const auto dir = scratch("save");
  std::vector<double> ms;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    peft::save_pretrained(pm, dir);
    ms.push_back(ms_since(t0));
    st.SetIterationTime(ms.back() / 1000.0);
  }
  const auto bytes = dir_bytes(dir);
  st.counters["MB"] = static_cast<double>(bytes) / 1e6;
  st.counters["MB_per_s"] = static_cast<double>(bytes) / 1e3 / median_of(ms);
  std::error_code ec;
  fs::remove_all(dir.parent_path(), ec);
}

void bench_load(benchmark::State& st, std::int64_t layers, std::int64_t d, std::int64_t r) {
  auto stack = make_stack(layers, d);
  const auto dir = scratch("load");
  {
    auto src = peft::get_peft_model(stack, stack_config(layers, r));
    peft::save_pretrained(src, dir);
    src.unload();
  }
  const auto bytes = dir_bytes(dir);
  peft::LoraModel pm(stack, peft::LoraModelOptions{});
  std::vector<double> ms;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    peft::load_adapter(pm, dir, "default");
    ms.push_back(ms_since(t0));
    st.SetIterationTime(ms.back() / 1000.0);
    pm.delete_adapter("default");
  }
  st.counters["MB"] = static_cast<double>(bytes) / 1e6;
  st.counters["MB_per_s"] = static_cast<double>(bytes) / 1e3 / median_of(ms);
  std::error_code ec;
  fs::remove_all(dir.parent_path(), ec);
}

void bench_merge_and_unload(benchmark::State& st, std::int64_t layers, std::int64_t d, std::int64_t r) {
  std::vector<double> ms;
  for (auto _ : st) {
    auto stack = make_stack(layers, d);
    auto pm = peft::get_peft_model(stack, stack_config(layers, r));
    {
      torch::NoGradGuard g;
      for (auto& [k, l] : pm.lora_layers()) l->lora_B("default")->weight.normal_(0, 0.02);
    }
    const auto t0 = std::chrono::steady_clock::now();
    pm.merge_and_unload();
    ms.push_back(ms_since(t0));
    st.SetIterationTime(ms.back() / 1000.0);
  }
  st.counters["layers"] = static_cast<double>(layers);
  st.counters["ms_per_layer"] = median_of(ms) / static_cast<double>(layers);
}

#if defined(PEFT_BENCH_HAVE_MODELS)

/// One of the three training set-ups of a builtin model: its parameters to train and optimiser.
struct Trainee {
  peft::models::CausalLM model;
  std::optional<peft::LoraModel> lora;
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::AdamW> opt;
};

enum class Mode { Frozen, Lora, Full };

Trainee make_trainee(const std::string& name, Mode mode) {
  Trainee t;
  t.model = peft::models::make_builtin(name, /*seed=*/0);
  t.model->train();
  for (auto& p : t.model->parameters()) p.set_requires_grad(mode == Mode::Full);
  if (mode == Mode::Lora) {
    peft::LoraConfig c;
    c.target_modules = "all-linear";
    c.r = 8;
    c.lora_alpha = 16;
    peft::LoraModelOptions opts;  // as the trainer does: all-linear leaves the LM head out
    opts.plan.model_type = t.model->model_type();
    opts.plan.output_layer = "lm_head";
    t.lora.emplace(peft::get_peft_model(std::static_pointer_cast<torch::nn::Module>(t.model), c, "default", opts));
    t.params = t.lora->trainable_parameters();
  } else if (mode == Mode::Frozen) {
    // Only the token embedding: the backward then runs through every layer, as LoRA's does.
    for (auto& item : t.model->named_parameters()) {
      const auto& k = item.key();
      if (k.find("wte") != std::string::npos || k.find("embed_tokens") != std::string::npos) {
        item.value().set_requires_grad(true);
        t.params.push_back(item.value());
        break;
      }
    }
  } else {
    t.params = t.model->parameters();
  }
  if (mode != Mode::Frozen && !t.params.empty())
    t.opt = std::make_unique<torch::optim::AdamW>(t.params, torch::optim::AdamWOptions(1e-4));
  return t;
}

double train_step(Trainee& t, const torch::Tensor& ids) {
  const auto t0 = std::chrono::steady_clock::now();
  if (t.opt) t.opt->zero_grad();
  auto loss = peft::models::causal_lm_loss(*t.model, ids, ids);
  loss.backward();
  if (t.opt) t.opt->step();
  const double ms = ms_since(t0);
  for (auto& p : t.params) p.mutable_grad() = torch::Tensor();
  return ms;
}

void bench_model_step(benchmark::State& st, std::string name, std::int64_t batch, std::int64_t seq) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  Trainee ts[3] = {make_trainee(name, Mode::Frozen), make_trainee(name, Mode::Lora), make_trainee(name, Mode::Full)};
  seq = std::min<std::int64_t>(seq, ts[0].model->max_positions());
  torch::manual_seed(1);
  const auto ids = torch::randint(ts[0].model->vocab_size(), {batch, seq}, torch::TensorOptions().dtype(torch::kLong));
  for (auto& t : ts) train_step(t, ids);  // warm-up: optimiser state exists from here on
  std::vector<double> lora_frozen, full_frozen, lora_full;
  int turn = 0;
  for (auto _ : st) {
    double ms[3];
    for (int k = 0; k < 3; ++k) {
      const int i = (turn + k) % 3;
      ms[i] = train_step(ts[i], ids);
    }
    ++turn;
    st.SetIterationTime(ms[1] / 1000.0);
    lora_frozen.push_back(ms[1] / ms[0]);
    full_frozen.push_back(ms[2] / ms[0]);
    lora_full.push_back(ms[1] / ms[2]);
  }
  st.counters["x_frozen"] = median_of(lora_frozen);
  st.counters["full_x_frozen"] = median_of(full_frozen);
  st.counters["lora_x_full"] = median_of(lora_full);
  if (counter) {
    const char* keys[3] = {"frozen_peak_MB", "lora_peak_MB", "full_peak_MB"};
    for (int i = 0; i < 3; ++i) {
      const auto before = counter->live_bytes();
      counter->reset_peak();
      train_step(ts[i], ids);
      st.counters[keys[i]] = static_cast<double>(counter->peak_bytes() - before) / (1024.0 * 1024.0);
    }
  }
}

#endif

int register_model_benchmarks() {
  const bool q = quick_mode();
  const std::int64_t layers = q ? 16 : 64, d = 4096, r = 64;
  const std::string tag = std::to_string(layers) + "x" + std::to_string(d) + "x" + std::to_string(d) + "/r" +
                          std::to_string(r);
  benchmark::RegisterBenchmark(("io/save_pretrained/" + tag).c_str(), bench_save, layers, d, r)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(q ? 2 : 5);
  benchmark::RegisterBenchmark(("io/load_adapter/" + tag).c_str(), bench_load, layers, d, r)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(q ? 2 : 5);
  benchmark::RegisterBenchmark(("io/merge_and_unload/" + tag).c_str(), bench_merge_and_unload, layers, d, r)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(q ? 1 : 2);
#if defined(PEFT_BENCH_HAVE_MODELS)
  for (const char* name : {"tiny-gpt2", "tiny-llama"})
    benchmark::RegisterBenchmark((std::string("model_step/") + name + "/b8/t128/lora_r8").c_str(), bench_model_step,
                                 std::string(name), 8, 128)
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime()
        ->Iterations(q ? 5 : 15);
#endif
  return 0;
}

const int registered_models = register_model_benchmarks();

}  // namespace
