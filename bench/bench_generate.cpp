// Decoding cost per new token (issue 15), fp32, batch 1, greedy, through
// peft::models::generate:
//   generate/<model>/<mode>/<context>: the time of one decoding step once the sequence holds
//     `context` tokens. A prompt of `context` random tokens is generated from for kSteps + 1
//     tokens; the step callback's timestamps give the mean time between the first new token and
//     the last (kSteps steps at context .. context + kSteps - 1), set as the iteration time.
//   mode: `cache` (the prompt once, then one token per step against the KV cache) or `full`
//     (GenerationConfig::use_cache = false: the whole sequence again at every step, as without
//     a cache).
//   models: `tiny-llama` (the builtin's shape: hidden 64, 2 layers, 4 heads / 2 KV heads, vocab
//     257) and `llama-512x4` (hidden 512, 4 layers, 8 heads / 4 KV heads, SwiGLU 1376, vocab
//     32000), random weights, max_position_embeddings 1024.
// Counter ms_per_token; with the cache it should stay flat as the context grows, without it
// grow with the context. BENCH_QUICK=1: contexts 16 and 256 only.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#if __has_include("peft/models/generate.hpp")
#include "peft/models/generate.hpp"
#include "peft/models/llama.hpp"

namespace {

constexpr std::int64_t kSteps = 8;

bool quick_mode() {
  const char* q = std::getenv("BENCH_QUICK");
  return q && *q && std::string(q) != "0";
}

peft::models::LlamaConfig bench_config(const std::string& name) {
  peft::models::LlamaConfig c;
  c.max_position_embeddings = 1024;
  if (name == "tiny-llama") {
    c.vocab_size = 257;
    c.hidden_size = 64;
    c.intermediate_size = 192;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
  } else {  // llama-512x4
    c.vocab_size = 32000;
    c.hidden_size = 512;
    c.intermediate_size = 1376;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
  }
  return c;
}

std::shared_ptr<peft::models::CausalLMImpl> bench_model(const std::string& name) {
  static std::map<std::string, std::shared_ptr<peft::models::CausalLMImpl>> models;
  auto& m = models[name];
  if (!m) {
    torch::manual_seed(0);
    auto llama = std::make_shared<peft::models::LlamaForCausalLMImpl>(bench_config(name));
    llama->eval();
    m = llama;
  }
  return m;
}

void BM_generate(benchmark::State& state, const std::string& model, bool cache) {
  const std::int64_t context = state.range(0);
  auto m = bench_model(model);
  torch::manual_seed(1);
  const auto prompt = torch::randint(std::min<std::int64_t>(m->vocab_size(), 256), {1, context}, torch::kLong);
  peft::models::GenerationConfig g;
  g.max_new_tokens = kSteps + 1;
  g.use_cache = cache;
  double total_ms = 0.0;
  std::int64_t n = 0;
  for (auto _ : state) {
    std::vector<std::chrono::steady_clock::time_point> stamps;
    auto out = peft::models::generate(*m, prompt, g, {}, [&](const peft::models::GenerationStep&) {
      stamps.push_back(std::chrono::steady_clock::now());
    });
    benchmark::DoNotOptimize(out);
    const double seconds = std::chrono::duration<double>(stamps.back() - stamps.front()).count() / kSteps;
    state.SetIterationTime(seconds);
    total_ms += seconds * 1e3;
    ++n;
  }
  state.counters["ms_per_token"] = total_ms / static_cast<double>(n);
}

void register_generate() {
  const std::vector<std::int64_t> contexts = quick_mode() ? std::vector<std::int64_t>{16, 256}
                                                          : std::vector<std::int64_t>{16, 64, 256, 512};
  for (const char* model : {"tiny-llama", "llama-512x4"})
    for (bool cache : {true, false}) {
      auto* b = benchmark::RegisterBenchmark(
          ("generate/" + std::string(model) + "/" + (cache ? "cache" : "full")).c_str(),
          [model, cache](benchmark::State& s) { BM_generate(s, model, cache); });
      for (auto c : contexts) b->Arg(c);
      b->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
    }
}

const int kRegistered = (register_generate(), 0);

}  // namespace
#endif
