// The fused Linear/Conv1D + LoRA autograd node (layers/detail/fused_lora_linear.hpp; issue 18):
// values and gradients equal the formula (with the LoRA dropout's own draws inside it), it is taken
// exactly when it applies, and a training step's peak memory stays near the frozen layer's.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "peft/layers/adapter_settings.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "support/cpu_memory_counter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"

namespace {

peft::AdapterSettings settings(std::int64_t r, double dropout = 0.0) {
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = 3 * r;
  s.scaling = 3.0;
  s.lora_dropout = dropout;
  return s;
}

/// An adapter with random A and B (B starts at zero otherwise), active and trainable.
template <typename Layer>
void add_active_adapter(Layer& l, const std::string& name, std::int64_t r, double dropout = 0.0) {
  l->update_layer(name, settings(r, dropout));
  l->set_adapter({name}, /*trainable=*/true);
  torch::NoGradGuard g;
  l->lora_factors(name).A.normal_();
  l->lora_factors(name).B.normal_();
}

bool fused(const torch::Tensor& y) {
  // 3-D outputs are a view of the node's 2-D output.
  torch::autograd::Node* node = y.grad_fn().get();
  if (node && y.dim() != 2 && node->num_inputs() == 1 && !node->next_edges().empty())
    node = node->next_edges()[0].function.get();
  return node && node->name().find("FusedLoraLinear") != std::string::npos;
}

/// y, dx, dA, dB of `l` on x against x·W'ᵀ + b + s·(x·Aᵀ)·Bᵀ computed by plain autograd ops.
template <typename Layer>
void expect_matches_formula(Layer& l, const torch::Tensor& x0, const torch::Tensor& W_out_in, bool expect_fused) {
  const auto& f = l->lora_factors("default");
  auto x = x0.clone().requires_grad_(true);
  const auto y = l(x);
  EXPECT_EQ(fused(y), expect_fused);
  const auto dy = torch::randn(y.sizes());
  y.backward(dy);
  auto xr = x0.clone().requires_grad_(true);
  auto Ar = f.A.detach().clone().requires_grad_(true), Br = f.B.detach().clone().requires_grad_(true);
  auto yr = torch::linear(xr, W_out_in, l->bias) + 3.0 * torch::linear(torch::linear(xr, Ar), Br);
  yr.backward(dy);
  EXPECT_TRUE(peft_test::close(y, yr, 1e-5, 1e-5));
  EXPECT_TRUE(peft_test::close(x.grad(), xr.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(peft_test::close(f.A.grad(), Ar.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(peft_test::close(f.B.grad(), Br.grad(), 1e-5, 1e-5));
}

}  // namespace

SEEDED_TEST(FusedLoraLinear, ValuesAndGradientsEqualTheFormulaFor2dAnd3dInputsWithAndWithoutBias) {
  for (const bool bias : {true, false}) {
    for (const auto& shape : {std::vector<std::int64_t>{6, 5}, std::vector<std::int64_t>{2, 3, 5}}) {
      SCOPED_TRACE(std::string("bias ") + (bias ? "on" : "off") + ", x dims " + std::to_string(shape.size()));
      peft::Linear l(torch::nn::LinearOptions(5, 4).bias(bias));
      l->weight.set_requires_grad(false);
      if (bias) l->bias.set_requires_grad(false);
      add_active_adapter(l, "default", 2);
      l->train();
      expect_matches_formula(l, torch::randn(shape), l->weight, true);
    }
  }
}

// Dropout runs inside the node: the mask lora_dropout draws for the same seed, d(x) fed to A,
// and a backward in blocks of rows (in 2048: 512 rows a block, so 1100 rows are 3 blocks, the
// last partial).
SEEDED_TEST(FusedLoraLinear, DropoutInsideTheNodeDrawsLoraDropoutsMaskAndGivesItsGradients) {
  for (const bool conv1d : {false, true}) {
    SCOPED_TRACE(conv1d ? "Conv1D" : "Linear");
    const std::int64_t in = 2048, out = 8;
    peft::Linear lin(torch::nn::LinearOptions(in, out));
    peft::Conv1D c1d(/*nf=*/out, /*nx=*/in);
    torch::nn::Module& m = conv1d ? static_cast<torch::nn::Module&>(*c1d) : *lin;
    for (auto& p : m.parameters()) p.set_requires_grad(false);
    if (conv1d) add_active_adapter(c1d, "default", 4, 0.3);
    else add_active_adapter(lin, "default", 4, 0.3);
    m.train();
    const auto& f = conv1d ? c1d->lora_factors("default") : lin->lora_factors("default");
    const torch::Tensor W = conv1d ? c1d->weight.t() : lin->weight;
    const torch::Tensor b = conv1d ? c1d->bias : lin->bias;
    const auto x0 = torch::randn({2, 550, in});
    auto x = x0.clone().requires_grad_(true);
    torch::manual_seed(11);
    const auto y = conv1d ? c1d(x) : lin(x);
    EXPECT_TRUE(fused(y));
    const auto dy = torch::randn(y.sizes());
    y.backward(dy);

    auto xr = x0.clone().requires_grad_(true);
    auto Ar = f.A.detach().clone().requires_grad_(true), Br = f.B.detach().clone().requires_grad_(true);
    torch::manual_seed(11);
    const auto xd = peft::lora_dropout(xr, 0.3, /*train=*/true);
    auto yr = torch::linear(xr, W, b) + 3.0 * torch::linear(torch::linear(xd, Ar), Br);
    yr.backward(dy);
    EXPECT_GT(xd.eq(0).sum().item<std::int64_t>(), 0);  // the dropout dropped something
    // Values of a few hundred from sums over 2048 products: float32 rounding of the summation
    // order (dA is summed block by block) is ~1e-6 relative.
    EXPECT_TRUE(peft_test::close(y, yr, 1e-5, 1e-3));
    EXPECT_TRUE(peft_test::close(x.grad(), xr.grad(), 1e-5, 1e-3));
    EXPECT_TRUE(peft_test::close(f.A.grad(), Ar.grad(), 1e-5, 1e-2));
    EXPECT_TRUE(peft_test::close(f.B.grad(), Br.grad(), 1e-5, 1e-2));
  }
}

SEEDED_TEST(FusedLoraLinear, Gpt2Conv1DUsesItsTransposedWeight) {
  peft::Conv1D l(/*nf=*/4, /*nx=*/5);
  {
    torch::NoGradGuard g;
    l->weight.normal_();
    l->bias.normal_();
  }
  l->weight.set_requires_grad(false);
  l->bias.set_requires_grad(false);
  add_active_adapter(l, "default", 3);
  expect_matches_formula(l, torch::randn({2, 3, 5}), l->weight.t(), true);
}

SEEDED_TEST(FusedLoraLinear, UnfusedPathRunsWhereTheNodeDoesNotApply) {
  auto make = [] {
    peft::Linear l(torch::nn::LinearOptions(5, 4));
    l->weight.set_requires_grad(false);
    l->bias.set_requires_grad(false);
    add_active_adapter(l, "default", 2);
    return l;
  };
  const auto x = torch::randn({6, 5});
  {  // a base weight and bias that train (bias="all", full fine-tune): dW and db from the node too
    auto l = make();
    l->weight.set_requires_grad(true);
    l->bias.set_requires_grad(true);
    expect_matches_formula(l, x, l->weight, true);
    const auto dy = torch::randn({6, 4});
    l->weight.mutable_grad() = torch::Tensor();
    l->bias.mutable_grad() = torch::Tensor();
    l(x).backward(dy);
    EXPECT_TRUE(peft_test::close(l->weight.grad(), torch::mm(dy.t(), x), 1e-5, 1e-6));
    EXPECT_TRUE(peft_test::close(l->bias.grad(), dy.sum(0), 1e-5, 1e-6));
  }
  {  // no autograd: inference keeps its in-place path
    auto l = make();
    torch::NoGradGuard g;
    EXPECT_FALSE(fused(l(x)));
  }
  {  // dropout 1 (all dropped: zeros keeping the graph) and float16 (torch::dropout) stay unfused;
     // dropout 0.5 fuses in training and in eval mode
    peft::Linear l(torch::nn::LinearOptions(5, 4).bias(false));
    l->weight.set_requires_grad(false);
    add_active_adapter(l, "default", 2, /*dropout=*/0.5);
    l->train();
    EXPECT_TRUE(fused(l(x.clone().requires_grad_(true))));
    l->eval();
    EXPECT_TRUE(fused(l(x.clone().requires_grad_(true))));
    peft::Linear all(torch::nn::LinearOptions(5, 4).bias(false));
    all->weight.set_requires_grad(false);
    add_active_adapter(all, "default", 2, /*dropout=*/1.0);
    all->train();
    EXPECT_FALSE(fused(all(x.clone().requires_grad_(true))));
  }
  {  // two active adapters
    auto l = make();
    add_active_adapter(l, "other", 2);
    l->set_adapter({"default", "other"});
    EXPECT_FALSE(fused(l(x.clone().requires_grad_(true))));
  }
  {  // an input of another dtype than the adapter: the cast path
    auto l = make();
    l->to(torch::kFloat64);
    auto y = l(x.to(torch::kFloat32).requires_grad_(true).to(torch::kFloat64));
    EXPECT_TRUE(fused(y));  // everything float64: fuses
    l->lora_factors("default").A.set_data(l->lora_factors("default").A.to(torch::kFloat32));
    l->lora_factors("default").B.set_data(l->lora_factors("default").B.to(torch::kFloat32));
    EXPECT_FALSE(fused(l(x.to(torch::kFloat64).requires_grad_(true))));
  }
}

// The unfused step held the base's and the adapter's [tokens, in] input gradients side by side
// (peak 2.0x the frozen step); the node writes both into one buffer.
SEEDED_TEST(FusedLoraLinear, TrainingStepPeakStaysWithin1Point3TimesTheFrozenLayers) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  ASSERT_NE(counter, nullptr);
  const std::int64_t tokens = 256, in = 512, out = 384, r = 16;
  peft::Linear frozen(torch::nn::LinearOptions(in, out).bias(false)), lora(torch::nn::LinearOptions(in, out).bias(false));
  frozen->weight.set_requires_grad(false);
  lora->weight.set_requires_grad(false);
  add_active_adapter(lora, "default", r);
  auto x = torch::randn({tokens, in}).requires_grad_(true);
  const auto dy = torch::randn({tokens, out});
  auto step_peak = [&](peft::Linear& l) {
    x.mutable_grad() = torch::Tensor();
    for (auto& p : l->parameters()) p.mutable_grad() = torch::Tensor();
    counter->reset_peak();
    const auto before = counter->live_bytes();
    l(x).backward(dy);
    return static_cast<double>(counter->peak_bytes() - before);
  };
  step_peak(lora);  // first call: gradients of A and B allocated once, like any optimizer step after the first
  const double frozen_peak = step_peak(frozen), lora_peak = step_peak(lora);
  EXPECT_GT(frozen_peak, 0.0);
  EXPECT_LE(lora_peak, 1.3 * frozen_peak) << "frozen " << frozen_peak << " bytes, LoRA " << lora_peak;
  // With dropout the node saves a 1-byte mask instead of d(x) (the unfused step: 2.0x).
  peft::Linear dropped(torch::nn::LinearOptions(in, out).bias(false));
  dropped->weight.set_requires_grad(false);
  add_active_adapter(dropped, "default", r, /*dropout=*/0.1);
  dropped->train();
  step_peak(dropped);
  const double dropout_peak = step_peak(dropped);
  EXPECT_LE(dropout_peak, 1.3 * frozen_peak) << "frozen " << frozen_peak << " bytes, LoRA + dropout " << dropout_peak;
}
