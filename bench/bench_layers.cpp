// Per-layer cost of LoRA variants against the frozen plain Linear doing the same work, in one run
// (fp32 CPU; bf16 on CUDA when a GPU is present). Names: "<mode>/<in>x<out>/t<tokens>/r<r>/<variant>".
//   step  = training forward + backward (the input gradient is computed in every variant, since a
//           LoRA layer inside a network must pass it on; the base weight is frozen)
//   fwd   = inference forward (eval, no autograd)
//   merge = merge + unmerge of one adapter
// The default run (scripts/bench.sh) filters to the 2048x2048 shapes; --benchmark_filter=. runs all.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

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
