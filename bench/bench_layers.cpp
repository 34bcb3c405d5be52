// Per-layer cost of LoRA variants against the frozen plain Linear doing the same work, in one run
// (fp32 CPU; bf16 on CUDA when a GPU is present). Names: "<mode>/<in>x<out>/t<tokens>/r<r>/<variant>".
//   step  = training forward + backward (the input gradient is computed in every variant, since a
//           LoRA layer inside a network must pass it on; the base weight is frozen)
//   fwd   = inference forward (eval, no autograd)
//   merge = merge + unmerge of one adapter
//   paired_step = frozen, lora and the variant stepped in turn inside one benchmark; its counters
//           x_frozen / x_lora are medians of per-iteration ratios (robust on a noisy machine);
//           memory counters (one extra step per layer, counted by the allocator): saved_MB =
//           bytes the forward leaves alive (output + saved activations), extra_saved_MB = that
//           minus the frozen layer's, peak_MB / peak_x_frozen = peak bytes of the whole step
//           (CPU: tests/support/cpu_memory_counter.hpp; CUDA: the caching allocator's stats)
//   "lora_dropout0.1_torchdrop" = LoRA with dropout 0.1 spelled out with torch::dropout (the
//           path before the fused dropout of issue 6), "lora_addmm_copy" = plain LoRA with the
//           out-of-place addmm it used before; so before/after come from the same run
// The default run (scripts/bench.sh) filters to the 2048x2048 shapes; --benchmark_filter=. runs all.
// BENCH_QUICK=1 in the environment registers only 2048x2048 and 4096x4096 at r=16 (fewer
// iterations), for a GPU run that must fit in a few minutes.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "peft/layers/linear.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/warnings.hpp"
#include "support/cpu_memory_counter.hpp"

#if defined(PEFT_BENCH_CUDA_STATS)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace {

struct Shape {
  std::int64_t in, out, tokens;
};

enum class Variant { Frozen, Lora, LoraCopy, LoraDropout, LoraDropoutTorch, Rslora, Dora };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::Frozen: return "frozen";
    case Variant::Lora: return "lora";
    case Variant::LoraCopy: return "lora_addmm_copy";
    case Variant::LoraDropout: return "lora_dropout0.1";
    case Variant::LoraDropoutTorch: return "lora_dropout0.1_torchdrop";
    case Variant::Rslora: return "rslora";
    case Variant::Dora: return "dora";
  }
  return "?";
}

bool quick() {
  const char* q = std::getenv("BENCH_QUICK");
  return q && *q && std::string(q) != "0";
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
  s.lora_dropout = v == Variant::LoraDropout || v == Variant::LoraDropoutTorch ? 0.1 : 0.0;
  s.use_dora = v == Variant::Dora;
  layer->update_layer("default", s);
  layer->upcast_adapter("default");  // fp32 adapters on a bf16 base, as LoraModel does
  layer->set_adapter({"default"}, /*trainable=*/true);
  torch::NoGradGuard g;
  layer->lora_B("default")->weight.normal_(0, 0.02);  // a trained adapter, not the B = 0 init
  return layer;
}

/// The layer's forward; LoraDropoutTorch / LoraCopy spell out the pre-issue-6 LoRA path
/// (torch::dropout, then A, then one out-of-place addmm), everything else is the layer itself.
torch::Tensor run(peft::Linear& layer, Variant v, const torch::Tensor& x) {
  if (v != Variant::LoraDropoutTorch && v != Variant::LoraCopy) return layer(x);
  const auto& s = layer->settings("default");
  const auto& A = layer->lora_A("default")->weight;
  const auto& B = layer->lora_B("default")->weight;
  auto result = layer->base_forward(x);
  auto h = x.scalar_type() == A.scalar_type() ? x : x.to(A.scalar_type());
  auto low = torch::linear(s.lora_dropout > 0 ? torch::dropout(h, s.lora_dropout, layer->is_training()) : h, A);
  if (result.scalar_type() == low.scalar_type()) return torch::addmm(result, low, B.t(), 1, s.scaling);
  return (result + torch::linear(low, B) * s.scaling).to(result.scalar_type());
}

/// After a step: drop the gradients and bump the version of every trainable tensor, as an
/// optimiser step would, so that nothing cached on the factors (DoRA's norm) outlives the step.
void clear_grads(torch::nn::Module& m, torch::Tensor& x) {
  torch::NoGradGuard g;
  for (auto& p : m.parameters()) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    if (p.requires_grad()) p.add_(0);
  }
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
    auto y = run(layer, v, x);
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
double timed_step(peft::Linear& layer, Variant v, torch::Tensor& x, const torch::Tensor& g, const torch::Device& dev) {
  const auto t0 = std::chrono::steady_clock::now();
  auto y = run(layer, v, x);
  y.backward(g);
  sync(dev);
  const auto t1 = std::chrono::steady_clock::now();
  clear_grads(*layer, x);
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

/// Live and peak bytes of the device's tensor memory (CPU: the counting allocator; CUDA: the
/// caching allocator's "allocated" statistics). `ok` is false where nothing can be counted.
struct MemoryProbe {
  torch::Device dev;
  bool ok = false;
  explicit MemoryProbe(torch::Device d) : dev(d) {
    if (dev.is_cpu()) ok = peft::testing::CpuMemoryCounter::install() != nullptr;
#if defined(PEFT_BENCH_CUDA_STATS)
    if (dev.is_cuda()) ok = true;
#endif
  }
  std::int64_t live() const {
    if (dev.is_cpu()) return peft::testing::CpuMemoryCounter::install()->live_bytes();
#if defined(PEFT_BENCH_CUDA_STATS)
    // Index 0 is the AGGREGATE pool in every LibTorch version (StatType moved namespaces in 2.x).
    if (dev.is_cuda()) return c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index()).allocated_bytes[0].current;
#endif
    return 0;
  }
  std::int64_t peak() const {
    if (dev.is_cpu()) return peft::testing::CpuMemoryCounter::install()->peak_bytes();
#if defined(PEFT_BENCH_CUDA_STATS)
    if (dev.is_cuda()) return c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index()).allocated_bytes[0].peak;
#endif
    return 0;
  }
  void reset_peak() {
    if (dev.is_cpu()) peft::testing::CpuMemoryCounter::install()->reset_peak();
#if defined(PEFT_BENCH_CUDA_STATS)
    if (dev.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(dev.index());
#endif
  }
};

struct StepMemory {
  double saved = 0, peak = 0;  // bytes above what was alive before the step
};

/// Bytes one training step needs: alive after the forward (output + saved activations) and the
/// peak over forward + backward, both relative to the bytes alive before it.
StepMemory step_memory(MemoryProbe& probe, peft::Linear& layer, Variant v, torch::Tensor& x, const torch::Tensor& g) {
  StepMemory m;
  if (!probe.ok) return m;
  sync(probe.dev);
  const auto before = probe.live();
  probe.reset_peak();
  {
    auto y = run(layer, v, x);
    sync(probe.dev);
    m.saved = static_cast<double>(probe.live() - before);
    y.backward(g);
    sync(probe.dev);
  }
  m.peak = static_cast<double>(probe.peak() - before);
  clear_grads(*layer, x);
  return m;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// Paired training steps: every iteration runs the frozen baseline, plain LoRA and the variant
/// once each, in a rotating order, so that slow drift and noisy neighbours hit all three alike.
/// Counters: the median over iterations of the per-iteration ratios (x_frozen, x_lora), and the
/// step's memory (see the file comment).
void bench_step_paired(benchmark::State& st, Shape sh, std::int64_t r, Variant v, torch::Device dev,
                       torch::ScalarType dt) {
  MemoryProbe probe(dev);  // before any tensor of this benchmark exists, so all are counted
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
    const Variant kinds[3] = {Variant::Frozen, Variant::Lora, v};
    for (int k = 0; k < 3; ++k) {
      const int i = (turn + k) % 3;
      t[i] = timed_step(*layers[i], kinds[i], x, g, dev);
    }
    ++turn;
    st.SetIterationTime(t[2] / 1000.0);
    vs_frozen.push_back(t[2] / t[0]);
    vs_lora.push_back(t[2] / t[1]);
  }
  st.counters["x_frozen"] = median(vs_frozen);
  st.counters["x_lora"] = median(vs_lora);
  if (probe.ok) {
    const auto mf = step_memory(probe, frozen, Variant::Frozen, x, g);
    const auto mv = step_memory(probe, variant, v, x, g);
    constexpr double MB = 1024.0 * 1024.0;
    st.counters["saved_MB"] = mv.saved / MB;
    st.counters["extra_saved_MB"] = (mv.saved - mf.saved) / MB;
    st.counters["peak_MB"] = mv.peak / MB;
    st.counters["peak_x_frozen"] = mf.peak > 0 ? mv.peak / mf.peak : 0.0;
    // One [tokens, in] input in MB, to read extra_saved_MB against.
    st.counters["input_MB"] = static_cast<double>(x.numel() * x.element_size()) / MB;
  }
}

/// The dropout op alone on a [rows, cols] fp32 input: torch::dropout vs peft::lora_dropout,
/// forward only or forward + backward (the input gradient).
void bench_dropout_op(benchmark::State& st, bool fused, bool backward, std::int64_t rows, std::int64_t cols) {
  auto x = torch::randn({rows, cols}).requires_grad_(backward);
  auto g = torch::randn({rows, cols});
  torch::NoGradGuard no_grad_unless_backward;
  std::optional<torch::AutoGradMode> grad_on;
  if (backward) grad_on.emplace(true);
  for (auto _ : st) {
    auto y = fused ? peft::lora_dropout(x, 0.1, true) : torch::dropout(x, 0.1, true);
    if (backward) {
      y.backward(g);
      x.mutable_grad() = torch::Tensor();
    }
    benchmark::DoNotOptimize(y.data_ptr());
  }
}

std::string shape_name(const Shape& sh, std::int64_t r) {
  return std::to_string(sh.in) + "x" + std::to_string(sh.out) + "/t" + std::to_string(sh.tokens) + "/r" +
         std::to_string(r);
}

int register_all() {
  const bool q = quick();
  std::vector<Shape> shapes{{2048, 2048, 2048}, {4096, 4096, 2048}, {4096, 11008, 2048}};
  std::vector<std::int64_t> ranks{8, 16, 64};
  if (q) {
    shapes = {{2048, 2048, 2048}, {4096, 4096, 2048}};
    ranks = {16};
  }
  const std::vector<Variant> variants{Variant::Frozen,      Variant::Lora,   Variant::LoraCopy, Variant::LoraDropout,
                                      Variant::LoraDropoutTorch, Variant::Rslora, Variant::Dora};
  std::vector<std::pair<torch::Device, torch::ScalarType>> targets{{torch::kCPU, torch::kFloat32}};
  if (torch::cuda::is_available()) targets.emplace_back(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  for (const auto& [dev, dt] : targets) {
    const std::string where = dev.is_cuda() ? "cuda_bf16/" : "cpu_fp32/";
    // On a GPU a step takes milliseconds: many more paired iterations cost little.
    const int paired_iters = dev.is_cuda() ? (q ? 30 : 50) : (q ? 7 : 15);
    const double min_time = q ? 0.3 : 1.0;
    for (const auto& sh : shapes)
      for (auto r : ranks)
        for (auto v : variants) {
          const std::string group = shape_name(sh, r) + "/";
          if (v != Variant::LoraDropoutTorch && v != Variant::LoraCopy) {
            benchmark::RegisterBenchmark((where + "step/" + group + variant_name(v)).c_str(), bench_step, sh, r, v, dev,
                                         dt)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(min_time);
            benchmark::RegisterBenchmark((where + "fwd/" + group + variant_name(v)).c_str(), bench_fwd, sh, r, v, dev, dt)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(min_time);
          }
          benchmark::RegisterBenchmark((where + "paired_step/" + group + variant_name(v)).c_str(), bench_step_paired,
                                       sh, r, v, dev, dt)
              ->Unit(benchmark::kMillisecond)
              ->UseManualTime()
              ->Iterations(!dev.is_cuda() && sh.in * sh.out >= 4096 * 4096 ? std::max(3, paired_iters / 2) : paired_iters);
          if (v == Variant::Lora || v == Variant::Dora)
            benchmark::RegisterBenchmark((where + "merge/" + group + variant_name(v)).c_str(), bench_merge, sh, r, v,
                                         dev, dt)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
  }
  for (bool backward : {false, true})
    for (bool fused : {false, true})
      benchmark::RegisterBenchmark((std::string("cpu_fp32/op/dropout0.1/2048x2048/") + (backward ? "fwd_bwd/" : "fwd/") +
                                    (fused ? "lora_dropout" : "torch_dropout")).c_str(),
                                   bench_dropout_op, fused, backward, 2048, 2048)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(q ? 0.2 : 0.5);
  return 0;
}

const int registered = register_all();

}  // namespace
