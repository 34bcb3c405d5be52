// The fused LoRA dropout (layers/lora_dropout.hpp): inverted dropout with PEFT's semantics (rate p,
// kept values scaled by 1/(1-p), gradient through the same mask, identity in eval), and the
// memory it keeps for backward (issue 6: dropout 0 keeps no second copy of the input).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "peft/layers/linear.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "support/cpu_memory_counter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"

namespace {

/// Fraction of exact zeros in t.
double zero_fraction(const torch::Tensor& t) { return (t == 0).to(torch::kDouble).mean().item<double>(); }

/// A d->d layer whose adapter path is exactly dropout(x): A = B = I (r = d), scaling 1, base W = 0.
peft::Linear identity_adapter_layer(std::int64_t d, double p) {
  peft::Linear l(torch::nn::LinearOptions(d, d).bias(false));
  peft::AdapterSettings s;
  s.r = d;
  s.lora_alpha = static_cast<double>(d);
  s.scaling = 1.0;
  s.lora_dropout = p;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  torch::NoGradGuard g;
  l->weight.zero_();
  l->lora_A("default")->weight.copy_(torch::eye(d));
  l->lora_B("default")->weight.copy_(torch::eye(d));
  return l;
}

}  // namespace

SEEDED_TEST(LoraDropout, DropsAboutPAndScalesTheKeptValuesByOneOverOneMinusP) {
  torch::manual_seed(1);
  const double p = 0.1;
  const auto x = torch::full({1000, 1000}, 2.0f);
  const auto y = peft::lora_dropout(x, p, /*train=*/true);
  // 10^6 Bernoulli draws: the rate is within 5 sigma (sigma = 3e-4) of p.
  EXPECT_NEAR(zero_fraction(y), p, 5 * std::sqrt(p * (1 - p) / 1e6));
  const auto kept = y.masked_select(y != 0);
  EXPECT_TRUE(peft_test::close(kept, torch::full_like(kept, 2.0f / 0.9f)));
  // Inverted dropout: the expectation is unchanged.
  EXPECT_NEAR(y.mean().item<double>(), 2.0, 0.01);
}

SEEDED_TEST(LoraDropout, RateFollowsPAcrossTheRange) {
  torch::manual_seed(2);
  const auto x = torch::ones({200000});
  for (double p : {0.05, 0.3, 0.5, 0.9}) {
    const auto y = peft::lora_dropout(x, p, true);
    EXPECT_NEAR(zero_fraction(y), p, 5 * std::sqrt(p * (1 - p) / 2e5)) << "p = " << p;
    EXPECT_NEAR(y.max().item<double>(), 1.0 / (1.0 - p), 1e-5) << "p = " << p;
  }
}

SEEDED_TEST(LoraDropout, GradientFlowsThroughTheSameMaskAndScale) {
  torch::manual_seed(3);
  const double p = 0.25;
  auto x = (torch::rand({37, 53}) + 0.5).requires_grad_(true);  // odd sizes, no zeros in x
  auto y = peft::lora_dropout(x, p, true);
  auto w = torch::randn({37, 53});
  (y * w).sum().backward();
  const auto mask = (y != 0).to(torch::kFloat);
  EXPECT_GT(mask.sum().item<double>(), 0);
  EXPECT_LT(mask.sum().item<double>(), mask.numel());
  EXPECT_TRUE(peft_test::close(y, x.detach() * mask / (1 - p)));
  EXPECT_TRUE(peft_test::close(x.grad(), w * mask / (1 - p)));
}

SEEDED_TEST(LoraDropout, IdentityInEvalAndForPZeroAndZerosForPOne) {
  auto x = torch::randn({4, 6});
  EXPECT_TRUE(peft::lora_dropout(x, 0.5, /*train=*/false).is_same(x));
  EXPECT_TRUE(peft::lora_dropout(x, 0.0, true).is_same(x));
  EXPECT_TRUE(peft_test::equal(peft::lora_dropout(x, 1.0, true), torch::zeros_like(x)));
}

SEEDED_TEST(LoraDropout, ReproducibleUnderManualSeedAndFreshOtherwise) {
  const auto x = torch::randn({64, 64});
  torch::manual_seed(7);
  const auto a = peft::lora_dropout(x, 0.5, true);
  const auto b = peft::lora_dropout(x, 0.5, true);
  torch::manual_seed(7);
  const auto c = peft::lora_dropout(x, 0.5, true);
  EXPECT_TRUE(peft_test::equal(a, c));
  EXPECT_FALSE(torch::equal(a, b));
}

SEEDED_TEST(LoraDropout, NonContiguousInputGivesTheSameShapeAndValues) {
  torch::manual_seed(4);
  const auto base = torch::rand({8, 5}) + 1.0;
  const auto x = base.t();  // [5, 8], not contiguous
  const auto y = peft::lora_dropout(x, 0.5, true);
  ASSERT_EQ(y.sizes(), x.sizes());
  const auto kept = y != 0;
  EXPECT_TRUE(peft_test::close(y.masked_select(kept), x.masked_select(kept) * 2.0));
}

SEEDED_TEST(PeftLinear, AdapterPathDropsAtRatePAndScalesByOneOverOneMinusP) {
  torch::manual_seed(5);
  const double p = 0.2;
  auto l = identity_adapter_layer(256, p);
  l->train();
  const auto x = torch::full({512, 256}, 3.0f);
  const auto y = l(x);  // = dropout(x): the base is zero, A = B = I
  EXPECT_NEAR(zero_fraction(y), p, 5 * std::sqrt(p * (1 - p) / y.numel()));
  const auto kept = y.masked_select(y != 0);
  EXPECT_TRUE(peft_test::close(kept, torch::full_like(kept, 3.0f / 0.8f), 1e-5, 1e-5));
  l->eval();
  EXPECT_TRUE(peft_test::close(l(x), x));
}

// Saved activations: what the forward leaves alive (output + tensors kept for backward), LoRA
// minus the frozen layer, must be well under one [tokens, in] input when dropout is 0; with
// dropout only its 1-byte mask is kept (the fused node rebuilds the dropped input in backward).
SEEDED_TEST(PeftLinear, DropoutZeroKeepsNoSecondCopyOfTheInput) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  ASSERT_NE(counter, nullptr);
  const std::int64_t tokens = 256, in = 512, out = 384, r = 8;
  auto make = [&](bool adapter, double p) {
    peft::Linear l(torch::nn::LinearOptions(in, out).bias(false));
    l->weight.set_requires_grad(false);
    if (adapter) {
      peft::AdapterSettings s;
      s.r = r;
      s.lora_alpha = 16;
      s.scaling = 2.0;
      s.lora_dropout = p;
      l->update_layer("default", s);
      l->set_adapter({"default"}, /*trainable=*/true);
    }
    l->train();
    return l;
  };
  auto frozen = make(false, 0.0), lora = make(true, 0.0), dropped = make(true, 0.1);
  auto x = torch::randn({tokens, in}).requires_grad_(true);
  auto saved_by = [&](peft::Linear& l) {
    const auto before = counter->live_bytes();
    auto y = l(x);
    const auto kept = counter->live_bytes() - before;
    y.sum().backward();
    return static_cast<double>(kept);
  };
  const double input_bytes = static_cast<double>(x.numel() * x.element_size());
  const double base = saved_by(frozen);
  EXPECT_GE(base, static_cast<double>(tokens * out * 4));  // at least the output itself
  const double extra = saved_by(lora) - base;
  EXPECT_LT(extra, 0.1 * input_bytes) << "LoRA (dropout 0) kept " << extra << " extra bytes";
  // Dropout runs inside the fused node, which keeps the 1-byte mask (¼ of the input's bytes)
  // and rebuilds the dropped input for A's gradient instead of keeping it.
  const double extra_drop = saved_by(dropped) - base;
  EXPECT_GE(extra_drop, 0.25 * input_bytes);  // the mask
  EXPECT_LE(extra_drop, 0.35 * input_bytes);  // + the [tokens, r] product
}
