// The same LoRA model on CUDA and on the CPU: forward, backward and merge agree.
// Skipped where no GPU is present (CI); run on a GPU machine to exercise it.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "peft/model.hpp"

namespace {

struct TwoLayerImpl : torch::nn::Module {
  TwoLayerImpl()
      : fc1(register_module("fc1", peft::Linear(64, 128))), fc2(register_module("fc2", peft::Linear(128, 16))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }
  peft::Linear fc1, fc2;
};
TORCH_MODULE(TwoLayer);

struct Run {
  TwoLayer model;
  std::unique_ptr<peft::LoraModel> pm;
};

Run build(torch::Device device, torch::Dtype dtype) {
  torch::manual_seed(7);
  Run r;
  r.model->to(device, dtype);
  peft::LoraConfig c;
  c.target_modules = {"fc1", "fc2"};
  c.r = 8;
  c.lora_alpha = 16;
  c.lora_dropout = 0.0;
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

TEST(Cuda, ForwardBackwardAndMergeMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto cpu = build(torch::kCPU, torch::kFloat32);
  auto cuda = build(gpu, torch::kFloat32);
  EXPECT_TRUE(cuda.model->fc1->lora_A("default")->weight.is_cuda());
  torch::manual_seed(9);
  auto x = torch::randn({32, 64});
  auto y_cpu = cpu.model(x);
  auto y_gpu = cuda.model(x.to(gpu));
  EXPECT_TRUE(torch::allclose(y_gpu.cpu(), y_cpu, 1e-4, 1e-4));
  y_cpu.square().sum().backward();
  y_gpu.square().sum().backward();
  auto g_cpu = cpu.model->fc1->lora_A("default")->weight.grad();
  auto g_gpu = cuda.model->fc1->lora_A("default")->weight.grad();
  EXPECT_TRUE(torch::allclose(g_gpu.cpu(), g_cpu, 1e-3, 1e-3));
  EXPECT_FALSE(cuda.model->fc1->weight.grad().defined());  // base frozen
  torch::NoGradGuard g;
  cpu.pm->merge_and_unload();
  cuda.pm->merge_and_unload();
  EXPECT_TRUE(torch::allclose(cuda.model->fc1->weight.cpu(), cpu.model->fc1->weight, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(cuda.model(x.to(gpu)).cpu(), y_cpu, 1e-4, 1e-4));
}

TEST(Cuda, Bf16BaseRunsWithFp32AdaptersOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto ref = build(torch::kCPU, torch::kFloat32);
  auto half = build(gpu, torch::kBFloat16);
  EXPECT_EQ(half.model->fc1->lora_A("default")->weight.scalar_type(), torch::kFloat32);
  torch::NoGradGuard g;
  auto x = torch::randn({8, 64});
  auto y = half.model(x.to(gpu, torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32).cpu(), ref.model(x), 5e-2, 5e-2));
}
