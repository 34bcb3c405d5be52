// Per-layer cost of LoRA variants against the frozen plain Linear doing the same work, in one run
// (fp32 CPU; bf16 on CUDA when a GPU is present). Names: "<mode>/<in>x<out>/t<tokens>/r<r>/<variant>".
//   step  = training forward + backward (the input gradient is computed in every variant, since a
//           LoRA layer inside a network must pass it on; the base weight is frozen)
//   fwd   = inference forward (eval, no autograd)
//   merge = merge + unmerge of one adapter
//   paired_step = frozen, lora and the variant stepped in turn inside one benchmark; its counters
//           x_frozen / x_lora are medians of per-iteration ratios (robust on a noisy machine)
// The default run (scripts/bench.sh) filters to the 2048x2048 shapes; --benchmark_filter=. runs all.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "peft/layers/linear.hpp"

namespace {

struct Shape {
  std::int64_t in, out, tokens;
};

enum class Variant { Frozen, Lora, LoraDropout, Rslora, Dora };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::Frozen: return "frozen";
    case Variant::Lora: return "lora";
    case Variant::LoraDropout: return "lora_dropout0.1";
    case Variant::Rslora: return "rslora";
    case Variant::Dora: return "dora";
  }
  return "?";
}

peft::Linear make_layer(const Shape& sh, std::int64_t r, Variant v, const torch::Device& dev, torch::ScalarType dt) {
  torch::manual_seed(0);
  peft::Linear layer(torch::nn::LinearOptions(sh.in, sh.out).bias(false));
  layer->to(dev, dt);
  layer->weight.set_requires_grad(false);
  if (v == Variant::Frozen) return layer;
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = 2.0 * static_cast<double>(r);
  s.use_rslora = v == Variant::Rslora;
  s.scaling = peft::lora_scaling(s.lora_alpha.value, r, s.use_rslora);
  s.lora_dropout = v == Variant::LoraDropout ? 0.1 : 0.0;
  s.use_dora = v == Variant::Dora;
  layer->update_layer("default", s);
  layer->upcast_adapter("default");  // fp32 adapters on a bf16 base, as LoraModel does
  layer->set_adapter({"default"}, /*trainable=*/true);
  torch::NoGradGuard g;
  layer->lora_B("default")->weight.normal_(0, 0.02);  // a trained adapter, not the B = 0 init
  return layer;
}

void clear_grads(torch::nn::Module& m, torch::Tensor& x) {
  for (auto& p : m.parameters())
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  if (x.grad().defined()) x.mutable_grad() = torch::Tensor();
}

void sync(const torch::Device& dev) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  if (dev.is_cuda()) torch::cuda::synchronize();
#else
  (void)dev;
#endif
}

void bench_step(benchmark::State& st, Shape sh, std::int64_t r, Variant v, torch::Device dev, torch::ScalarType dt) {
  auto layer = make_layer(sh, r, v, dev, dt);
  layer->train();
  auto x = torch::randn({sh.tokens, sh.in}, torch::TensorOptions().device(dev).dtype(dt)).requires_grad_(true);
  auto g = torch::randn({sh.tokens, sh.out}, torch::TensorOptions().device(dev).dtype(dt));
  for (auto _ : st) {
    auto y = layer(x);
    y.backward(g);
    sync(dev);
    clear_grads(*layer, x);
  }
}

void bench_fwd(benchmark::State& st, Shape sh, std::int64_t r, Variant v, torch::Device dev, torch::ScalarType dt) {
  auto layer = make_layer(sh, r, v, dev, dt);
  layer->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({sh.tokens, sh.in}, torch::TensorOptions().device(dev).dtype(dt));
  for (auto _ : st) {
    auto y = layer(x);
    sync(dev);
    benchmark::DoNotOptimize(y.data_ptr());
  }
}

void bench_merge(benchmark::State& st, Shape sh, std::int64_t r, Variant v, torch::Device dev, torch::ScalarType dt) {
  auto layer = make_layer(sh, r, v, dev, dt);
  peft::ScopedWarningCapture quiet;
  for (auto _ : st) {
    layer->merge();
    layer->unmerge();
    sync(dev);
  }
}

/// One training step of `layer` on x (forward, backward with gradient g), in milliseconds.
double timed_step(peft::Linear& layer, torch::Tensor& x, const torch::Tensor& g, const torch::Device& dev) {
  const auto t0 = std::chrono::steady_clock::now();
  auto y = layer(x);
  y.backward(g);
  sync(dev);
  const auto t1 = std::chrono::steady_clock::now();
  clear_grads(*layer, x);
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// Paired training steps: every iteration runs the frozen baseline, plain LoRA and the variant
/// once each, in a rotating order, so that slow drift and noisy neighbours hit all three alike.
/// Counters: the median over iterations of the per-iteration ratios (x_frozen, x_lora).
void bench_step_paired(benchmark::State& st, Shape sh, std::int64_t r, Variant v, torch::Device dev,
                       torch::ScalarType dt) {
  auto frozen = make_layer(sh, r, Variant::Frozen, dev, dt);
  auto lora = make_layer(sh, r, Variant::Lora, dev, dt);
  auto variant = make_layer(sh, r, v, dev, dt);
  for (auto* l : {&frozen, &lora, &variant}) (*l)->train();
  auto x = torch::randn({sh.tokens, sh.in}, torch::TensorOptions().device(dev).dtype(dt)).requires_grad_(true);
  auto g = torch::randn({sh.tokens, sh.out}, torch::TensorOptions().device(dev).dtype(dt));
  std::vector<double> vs_frozen, vs_lora;
  int turn = 0;
  for (auto _ : st) {
    double t[3] = {0, 0, 0};
    peft::Linear* layers[3] = {&frozen, &lora, &variant};
    for (int k = 0; k < 3; ++k) {
      const int i = (turn + k) % 3;
      t[i] = timed_step(*layers[i], x, g, dev);
    }
    ++turn;
    st.SetIterationTime(t[2] / 1000.0);
    vs_frozen.push_back(t[2] / t[0]);
    vs_lora.push_back(t[2] / t[1]);
  }
  st.counters["x_frozen"] = median(vs_frozen);
  st.counters["x_lora"] = median(vs_lora);
}

std::string shape_name(const Shape& sh, std::int64_t r) {
  return std::to_string(sh.in) + "x" + std::to_string(sh.out) + "/t" + std::to_string(sh.tokens) + "/r" +
         std::to_string(r);
}

int register_all() {
  const std::vector<Shape> shapes{{2048, 2048, 2048}, {4096, 4096, 2048}, {4096, 11008, 2048}};
  const std::vector<std::int64_t> ranks{8, 16, 64};
  const std::vector<Variant> variants{Variant::Frozen, Variant::Lora, Variant::LoraDropout, Variant::Rslora,
                                      Variant::Dora};
  std::vector<std::pair<torch::Device, torch::ScalarType>> targets{{torch::kCPU, torch::kFloat32}};
  if (torch::cuda::is_available()) targets.emplace_back(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  for (const auto& [dev, dt] : targets) {
    const std::string where = dev.is_cuda() ? "cuda_bf16/" : "cpu_fp32/";
    for (const auto& sh : shapes)
      for (auto r : ranks)
        for (auto v : variants) {
          const std::string group = shape_name(sh, r) + "/";
          benchmark::RegisterBenchmark((where + "step/" + group + variant_name(v)).c_str(), bench_step, sh, r, v, dev, dt)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->MinTime(1.0);
          benchmark::RegisterBenchmark((where + "fwd/" + group + variant_name(v)).c_str(), bench_fwd, sh, r, v, dev, dt)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->MinTime(1.0);
          benchmark::RegisterBenchmark((where + "paired_step/" + group + variant_name(v)).c_str(), bench_step_paired,
                                       sh, r, v, dev, dt)
              ->Unit(benchmark::kMillisecond)
              ->UseManualTime()
              ->Iterations(sh.in * sh.out >= 4096 * 4096 ? 6 : 15);
          if (v == Variant::Lora || v == Variant::Dora)
            benchmark::RegisterBenchmark((where + "merge/" + group + variant_name(v)).c_str(), bench_merge, sh, r, v,
                                         dev, dt)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
  }
  return 0;
}

const int registered = register_all();

}  // namespace
