// LoRA on peft::Conv2d and peft::Embedding against the frozen layer, in one run (fp32 CPU; bf16
// on CUDA when a GPU is present). Names: "<where>/paired_step/<layer>/<shape>/r<r>/<variant>".
//   Conv2d 64->64, 3x3, padding 1, input [32, 64, 32, 32]: a training step is forward + backward
//     with the input gradient (a conv inside a network passes it on), base weight frozen.
//   Embedding 32000 x 1024, ids [8, 512]: a frozen embedding has nothing to back-propagate, so
//     its "step" is the lookup alone; "full" (the whole table trained, dense gradient) is the
//     other reference a user weighs LoRA against (counter x_full).
// Each iteration runs frozen, lora and the variant in a rotating order; the counters x_frozen /
// x_lora (/ x_full) are medians of the per-iteration ratios (robust on a noisy machine).

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"

namespace {

enum class Kind { Frozen, Lora, Dora, Full };

void sync_device(const torch::Device& dev) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  if (dev.is_cuda()) torch::cuda::synchronize();
#else
  (void)dev;
#endif
}

double median_ratio(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// A trained adapter (B != 0) of rank r on `layer`, fp32 factors, active and trainable.
void add_adapter(peft::LoraLayer& layer, std::int64_t r, Kind k) {
  if (k == Kind::Frozen || k == Kind::Full) return;
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = 2.0 * static_cast<double>(r);
  s.scaling = 2.0;
  s.use_dora = k == Kind::Dora;
  layer.update_layer("default", s);
  layer.upcast_adapter("default");
  layer.set_adapter({"default"}, /*trainable=*/true);
  torch::NoGradGuard g;
  for (auto& [suffix, t] : layer.adapter_tensors("default"))
    if (suffix.find("B") != std::string::npos) t.normal_(0, 0.02);
}

/// One timed training step: forward, then backward of <y, g> when anything requires a gradient.
struct Step {
  std::function<torch::Tensor()> forward;
  std::function<void()> clear;
};

double timed(const Step& s, const torch::Tensor& g, const torch::Device& dev) {
  const auto t0 = std::chrono::steady_clock::now();
  auto y = s.forward();
  if (y.requires_grad()) y.backward(g);
  sync_device(dev);
  const auto t1 = std::chrono::steady_clock::now();
  s.clear();
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

/// After a step: drop the gradients and bump the version of every trainable tensor, as an
/// optimiser step would, so that nothing cached on the factors (DoRA's norm) outlives the step.
void clear_grads(torch::nn::Module& m) {
  torch::NoGradGuard g;
  for (auto& p : m.parameters()) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    if (p.requires_grad()) p.add_(0);
  }
}

/// Paired steps of the kinds in `kinds` (kinds[0] = frozen, kinds[1] = lora, last = measured).
void paired(benchmark::State& st, const std::vector<Step>& steps, const std::vector<Kind>& kinds, const torch::Tensor& g,
            const torch::Device& dev) {
  const std::size_t n = steps.size();
  std::vector<std::vector<double>> ratio(n);
  std::size_t turn = 0;
  for (auto _ : st) {
    std::vector<double> t(n);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (turn + k) % n;
      t[i] = timed(steps[i], g, dev);
    }
    ++turn;
    st.SetIterationTime(t[n - 1] / 1000.0);
    for (std::size_t i = 0; i < n; ++i) ratio[i].push_back(t[n - 1] / t[i]);
  }
  st.counters["x_frozen"] = median_ratio(ratio[0]);
  st.counters["x_lora"] = median_ratio(ratio[1]);
  for (std::size_t i = 0; i < n; ++i)
    if (kinds[i] == Kind::Full) st.counters["x_full"] = median_ratio(ratio[i]);
}

void bench_conv2d(benchmark::State& st, Kind measured, std::int64_t r, torch::Device dev, torch::ScalarType dt) {
  const std::int64_t batch = 32, ch = 64, hw = 32;
  const std::vector<Kind> kinds{Kind::Frozen, Kind::Lora, measured};
  std::vector<peft::Conv2d> layers;
  for (auto k : kinds) {
    torch::manual_seed(0);
    peft::Conv2d c(torch::nn::Conv2dOptions(ch, ch, 3).padding(1));
    c->to(dev, dt);
    c->weight.set_requires_grad(false);
    c->bias.set_requires_grad(false);
    add_adapter(*c, r, k);
    c->train();
    layers.push_back(c);
  }
  auto x = torch::randn({batch, ch, hw, hw}, torch::TensorOptions().device(dev).dtype(dt)).requires_grad_(true);
  auto g = torch::randn({batch, ch, hw, hw}, torch::TensorOptions().device(dev).dtype(dt));
  std::vector<Step> steps;
  for (auto& c : layers)
    steps.push_back({[c, x]() mutable { return c(x); }, [c, x]() mutable {
                       clear_grads(*c);
                       if (x.grad().defined()) x.mutable_grad() = torch::Tensor();
                     }});
  paired(st, steps, kinds, g, dev);
}

void bench_embedding(benchmark::State& st, Kind measured, std::int64_t r, torch::Device dev, torch::ScalarType dt) {
  const std::int64_t vocab = 32000, dim = 1024, batch = 8, seq = 512;
  std::vector<Kind> kinds{Kind::Frozen, Kind::Lora, Kind::Full, measured};
  if (measured == Kind::Lora) kinds = {Kind::Frozen, Kind::Lora, Kind::Full, Kind::Lora};
  std::vector<peft::Embedding> layers;
  for (auto k : kinds) {
    torch::manual_seed(0);
    peft::Embedding e(vocab, dim);
    e->to(dev, dt);
    e->weight.set_requires_grad(k == Kind::Full);
    add_adapter(*e, r, k);
    e->train();
    layers.push_back(e);
  }
  auto ids = torch::randint(vocab, {batch, seq}, torch::TensorOptions().device(dev).dtype(torch::kLong));
  auto g = torch::randn({batch, seq, dim}, torch::TensorOptions().device(dev).dtype(dt));
  std::vector<Step> steps;
  for (auto& e : layers) steps.push_back({[e, ids]() mutable { return e(ids); }, [e]() mutable { clear_grads(*e); }});
  paired(st, steps, kinds, g, dev);
}

/// Trainable tokens (1000 rows) on the same Embedding: peft::Embedding's lookup-then-rows forward
/// against PEFT's way (the whole table copied with the rows written in, LoraLayer::token_forward),
/// forward + backward into the rows; x_frozen here = the lookup of the frozen table.
void bench_tokens(benchmark::State& st, torch::Device dev, torch::ScalarType dt) {
  const std::int64_t vocab = 32000, dim = 1024;
  torch::manual_seed(0);
  peft::Embedding frozen(vocab, dim), e(vocab, dim);
  for (auto* m : {&frozen, &e}) {
    (*m)->to(dev, dt);
    (*m)->weight.set_requires_grad(false);
  }
  std::vector<std::int64_t> rows(1000);
  for (std::int64_t i = 0; i < 1000; ++i) rows[static_cast<std::size_t>(i)] = i * 31;
  e->add_trainable_tokens("t", rows);
  e->set_adapter({"t"});
  auto ids = torch::randint(vocab, {8, 512}, torch::TensorOptions().device(dev).dtype(torch::kLong));
  auto g = torch::randn({8, 512, dim}, torch::TensorOptions().device(dev).dtype(dt));
  auto clear = [e]() mutable { clear_grads(*e); };
  const std::vector<Step> steps{{[frozen, ids]() mutable { return frozen(ids); }, [] {}},
                                {[e, ids]() mutable { return e->LoraLayer::token_forward(ids, "t"); }, clear},
                                {[e, ids]() mutable { return e->token_forward(ids, "t"); }, clear}};
  paired(st, steps, {Kind::Frozen, Kind::Lora, Kind::Lora}, g, dev);
}

int register_all() {
  std::vector<std::pair<torch::Device, torch::ScalarType>> targets{{torch::kCPU, torch::kFloat32}};
  if (torch::cuda::is_available()) targets.emplace_back(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  const std::int64_t r = 16;
  for (const auto& [dev, dt] : targets) {
    const std::string where = dev.is_cuda() ? "cuda_bf16/" : "cpu_fp32/";
    const int iters = dev.is_cuda() ? 50 : 15;
    for (auto k : {Kind::Lora, Kind::Dora}) {
      const std::string v = k == Kind::Lora ? "lora" : "dora";
      benchmark::RegisterBenchmark((where + "paired_step/conv2d/64x64_k3/b32_32x32/r16/" + v).c_str(), bench_conv2d, k,
                                   r, dev, dt)
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime()
          ->Iterations(iters);
      benchmark::RegisterBenchmark((where + "paired_step/embedding/32000x1024/8x512/r16/" + v).c_str(), bench_embedding,
                                   k, r, dev, dt)
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime()
          ->Iterations(iters);
    }
  }
  for (const auto& [dev, dt] : targets)
    benchmark::RegisterBenchmark(((dev.is_cuda() ? "cuda_bf16/" : "cpu_fp32/") +
                                  std::string("paired_step/embedding_tokens/32000x1024/8x512/t1000/lookup")).c_str(),
                                 bench_tokens, dev, dt)
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime()
        ->Iterations(dev.is_cuda() ? 50 : 15);
  return 0;
}

const int registered = register_all();

}  // namespace
