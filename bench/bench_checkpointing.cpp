// Gradient checkpointing (models/checkpointing.hpp) on a whole model: one LoRA training step
// (r 16, all-linear, AdamW) of a random Llama with and without checkpointing, same weights and
// batch, alternating. Counters: time ratio and the peak of LibTorch's CPU tensor storage during
// the step (support/cpu_memory_counter.hpp), each run measured in the same process.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "llama_step_run.hpp"
#include "support/cpu_memory_counter.hpp"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

peft_bench::LlamaStepRun make_run(std::int64_t hidden, std::int64_t layers, bool ckpt) {
  peft::models::LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 8 / 3;
  c.num_hidden_layers = layers;
  c.num_attention_heads = hidden / 64;
  c.num_key_value_heads = hidden / 128;
  c.max_position_embeddings = 1024;
  torch::manual_seed(0);  // the same weights in both runs
  auto model = std::make_shared<peft::models::LlamaForCausalLMImpl>(c);
  model->set_gradient_checkpointing(ckpt);
  return peft_bench::LlamaStepRun(model);
}

double step(peft_bench::LlamaStepRun& r, const torch::Tensor& ids) { return r.step(ids); }

void bench_checkpointing(benchmark::State& st, std::int64_t hidden, std::int64_t layers, std::int64_t batch,
                         std::int64_t seq) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  peft_bench::LlamaStepRun runs[2] = {make_run(hidden, layers, false), make_run(hidden, layers, true)};
  const auto ids = torch::randint(32000, {batch, seq}, torch::kInt64);
  for (auto& r : runs) step(r, ids);  // optimiser state exists from here on
  std::vector<double> ratio;
  for (auto _ : st) {
    const double plain = step(runs[0], ids), ckpt = step(runs[1], ids);
    st.SetIterationTime(ckpt / 1000.0);
    ratio.push_back(ckpt / plain);
  }
  st.counters["ckpt_x_plain_time"] = median(ratio);
  if (counter) {
    const char* keys[2] = {"plain_peak_MB", "ckpt_peak_MB"};
    for (int i = 0; i < 2; ++i) {
      const auto before = counter->live_bytes();
      counter->reset_peak();
      step(runs[i], ids);
      st.counters[keys[i]] = static_cast<double>(counter->peak_bytes() - before) / (1024.0 * 1024.0);
    }
  }
}

int register_checkpointing() {
  benchmark::RegisterBenchmark("model_step_ckpt/llama_h512_l4/b4/t256/lora_r16", bench_checkpointing, 512, 4, 4, 256)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime()
      ->Iterations(3);
  return 0;
}

const int registered = register_checkpointing();

}  // namespace
