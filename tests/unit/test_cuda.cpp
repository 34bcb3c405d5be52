// The same LoRA model on CUDA and on the CPU: forward, backward and merge agree.
// Skipped where no GPU is present (CI); run on a GPU machine to exercise it.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "peft/io/adapters.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/tuner/weighted_adapter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"

namespace {

/// lin0 (64 -> 128) -> gelu -> lin1 (128 -> 16).
struct TwoLayer : peft_test::Mlp {
  TwoLayer() : Mlp(peft_test::MlpOptions({64, 128, 16}).activation(peft_test::Activation::Gelu)) {}
};

struct Run {
  TwoLayer model;
  std::unique_ptr<peft::LoraModel> pm;
};

peft::LoraConfig two_layer_config() {
  peft::LoraConfig c;
  c.target_modules = {"lin0", "lin1"};
  c.r = 8;
  c.lora_alpha = 16;
  c.lora_dropout = 0.0;
  return c;
}

Run build(torch::Device device, torch::Dtype dtype, peft::LoraConfig c = two_layer_config()) {
  torch::manual_seed(7);
  Run r;
  r.model->to(device, dtype);
  r.pm = std::make_unique<peft::LoraModel>(r.model.ptr(), c);
  torch::NoGradGuard g;
  torch::manual_seed(8);
  for (auto& [key, layer] : r.pm->lora_layers()) {
    auto& B = layer->lora_B("default")->weight;
    B.copy_(torch::randn(B.sizes()) * 0.1);
  }
  return r;
}

}  // namespace

SEEDED_TEST(Cuda, ForwardBackwardAndMergeMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto cpu = build(torch::kCPU, torch::kFloat32);
  auto cuda = build(gpu, torch::kFloat32);
  EXPECT_TRUE(cuda.model->lin0->lora_A("default")->weight.is_cuda());
  torch::manual_seed(9);
  auto x = torch::randn({32, 64});
  auto y_cpu = cpu.model(x);
  auto y_gpu = cuda.model(x.to(gpu));
  EXPECT_TRUE(peft_test::close(y_gpu.cpu(), y_cpu, 1e-4, 1e-4));
  y_cpu.square().sum().backward();
  y_gpu.square().sum().backward();
  auto g_cpu = cpu.model->lin0->lora_A("default")->weight.grad();
  auto g_gpu = cuda.model->lin0->lora_A("default")->weight.grad();
  EXPECT_TRUE(peft_test::close(g_gpu.cpu(), g_cpu, 1e-3, 1e-3));
  EXPECT_FALSE(cuda.model->lin0->weight.grad().defined());  // base frozen
  torch::NoGradGuard g;
  cpu.pm->merge_and_unload();
  cuda.pm->merge_and_unload();
  EXPECT_TRUE(peft_test::close(cuda.model->lin0->weight.cpu(), cpu.model->lin0->weight, 1e-5, 1e-5));
  EXPECT_TRUE(peft_test::close(cuda.model(x.to(gpu)).cpu(), y_cpu, 1e-4, 1e-4));
}

SEEDED_TEST(Cuda, Bf16BaseRunsWithFp32AdaptersOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto ref = build(torch::kCPU, torch::kFloat32);
  auto half = build(gpu, torch::kBFloat16);
  EXPECT_EQ(half.model->lin0->lora_A("default")->weight.scalar_type(), torch::kFloat32);
  torch::NoGradGuard g;
  auto x = torch::randn({8, 64});
  auto y = half.model(x.to(gpu, torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(peft_test::close(y.to(torch::kFloat32).cpu(), ref.model(x), 5e-2, 5e-2));
}

namespace {
peft::LoraConfig dora_config() {
  auto c = two_layer_config();
  c.use_dora = true;
  return c;
}
::testing::AssertionResult close_on_cpu(const torch::Tensor& gpu, const torch::Tensor& cpu, double tol) {
  return peft_test::close(gpu.to(torch::kCPU, torch::kFloat32), cpu.to(torch::kFloat32), tol, tol);
}
}  // namespace

SEEDED_TEST(Cuda, DoraForwardBackwardMergeAndUnmergeMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto cpu = build(torch::kCPU, torch::kFloat32, dora_config());
  auto cuda = build(gpu, torch::kFloat32, dora_config());
  EXPECT_TRUE(cuda.model->lin0->lora_magnitude("default").is_cuda());
  EXPECT_TRUE(close_on_cpu(cuda.model->lin0->lora_magnitude("default"),
                           cpu.model->lin0->lora_magnitude("default"), 1e-5));
  torch::manual_seed(9);
  auto x = torch::randn({32, 64});
  auto y_cpu = cpu.model(x);
  auto y_gpu = cuda.model(x.to(gpu));
  EXPECT_TRUE(close_on_cpu(y_gpu, y_cpu, 1e-4));
  y_cpu.square().sum().backward();
  y_gpu.square().sum().backward();
  for (const char* which : {"lin0", "lin1"}) {
    auto& lc = which[3] == '0' ? cpu.model->lin0 : cpu.model->lin1;
    auto& lg = which[3] == '0' ? cuda.model->lin0 : cuda.model->lin1;
    EXPECT_TRUE(close_on_cpu(lg->lora_magnitude("default").grad(),
                             lc->lora_magnitude("default").grad(), 1e-3)) << which;
    EXPECT_TRUE(close_on_cpu(lg->lora_B("default")->weight.grad(), lc->lora_B("default")->weight.grad(), 1e-3))
        << which;
  }
  torch::NoGradGuard g;
  cuda.model->eval();
  const auto w_before = cuda.model->lin0->weight.clone();
  cuda.pm->merge_adapter();
  EXPECT_TRUE(close_on_cpu(cuda.model(x.to(gpu)), y_cpu, 1e-4));
  cuda.pm->unmerge_adapter();
  EXPECT_TRUE(peft_test::close(cuda.model->lin0->weight, w_before, 1e-5, 1e-5));
}

SEEDED_TEST(Cuda, AdapterSavedFromTheGpuLoadsIntoACpuModel) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto cuda = build(gpu, torch::kFloat32, dora_config());
  const auto dir = std::filesystem::temp_directory_path() / ("peft_cuda_save_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  peft::save_pretrained(*cuda.pm, dir);
  torch::manual_seed(7);
  TwoLayer fresh;
  auto loaded = peft::from_pretrained(fresh.ptr(), dir);
  // The same base (seed 7) and the saved factors: the CPU model reproduces the GPU's output.
  torch::NoGradGuard g;
  cuda.model->eval();
  fresh->eval();
  auto x = torch::randn({16, 64});
  EXPECT_TRUE(close_on_cpu(cuda.model(x.to(gpu)), fresh(x), 1e-4));
  std::filesystem::remove_all(dir);
}

SEEDED_TEST(Cuda, PissaInitOnTheGpuGivesTheCpuDeltaAndResidual) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto c = two_layer_config();
  c.init_lora_weights = std::string("pissa");
  torch::manual_seed(7);
  TwoLayer cpu_model, gpu_model;
  gpu_model->to(gpu);
  {
    torch::NoGradGuard g;
    auto src = cpu_model->named_parameters();
    for (auto& item : gpu_model->named_parameters()) item.value().copy_(src[item.key()].to(gpu));
  }
  peft::LoraModel cpu_pm(cpu_model.ptr(), c);
  peft::LoraModel gpu_pm(gpu_model.ptr(), c);
  // Singular vectors may differ in sign between LAPACK and cuSOLVER; delta and residual may not.
  EXPECT_TRUE(close_on_cpu(gpu_model->lin0->weight, cpu_model->lin0->weight, 1e-4));
  EXPECT_TRUE(close_on_cpu(gpu_model->lin0->delta_weight("default"), cpu_model->lin0->delta_weight("default"), 1e-4));
  EXPECT_TRUE(close_on_cpu(gpu_model->lin1->delta_weight("default"), cpu_model->lin1->delta_weight("default"), 1e-4));
}

SEEDED_TEST(Cuda, WeightedSvdCombinationOnTheGpuMatchesTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto cpu = build(torch::kCPU, torch::kFloat32);
  auto cuda = build(gpu, torch::kFloat32);
  peft::WeightedAdapterOptions o;
  o.combination_type = peft::CombinationType::svd;
  ASSERT_TRUE(peft::add_weighted_adapter(*cpu.pm, {"default"}, {0.5}, "half", o));
  ASSERT_TRUE(peft::add_weighted_adapter(*cuda.pm, {"default"}, {0.5}, "half", o));
  o.combination_type = peft::CombinationType::cat;
  auto c2 = two_layer_config();
  cpu.pm->add_adapter("other", c2);
  cuda.pm->add_adapter("other", c2);
  ASSERT_TRUE(peft::add_weighted_adapter(*cpu.pm, {"default", "other"}, {1.0, 0.5}, "both", o));
  ASSERT_TRUE(peft::add_weighted_adapter(*cuda.pm, {"default", "other"}, {1.0, 0.5}, "both", o));
  for (const char* name : {"half", "both"})
    EXPECT_TRUE(close_on_cpu(cuda.model->lin0->delta_weight(name), cpu.model->lin0->delta_weight(name), 1e-4)) << name;
}
