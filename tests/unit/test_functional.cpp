// LoRA formulas on small hand-checkable tensors (docs/layer.md#forward-linear-and-conv1d,
// docs/lifecycle.md#delta-weight).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/layers/lora_math.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"

TEST(LoraDeltaWeight, IsScaledBTimesA) {
  auto A = torch::tensor({{1.f, 2.f, 3.f}});  // r=1, in=3
  auto B = torch::tensor({{1.f}, {-1.f}});    // out=2, r=1
  auto d = peft::lora_delta_weight(A, B, 0.5);
  auto want = torch::tensor({{0.5f, 1.f, 1.5f}, {-0.5f, -1.f, -1.5f}});
  EXPECT_TRUE(peft_test::equal(d, want));
}

TEST(LoraDeltaWeight, IsTransposedForFanInFanOut) {
  auto A = torch::tensor({{1.f, 2.f, 3.f}});
  auto B = torch::tensor({{1.f}, {-1.f}});
  auto d = peft::lora_delta_weight(A, B, 2.0, /*fan_in_fan_out=*/true);
  EXPECT_EQ(d.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(d[2][1].item<float>(), -6.f);
}

SEEDED_TEST(LoraBranch, EqualsTheMergedWeightApplied) {
  torch::manual_seed(0);
  auto x = torch::randn({5, 4});
  auto A = torch::randn({2, 4});
  auto B = torch::randn({3, 2});
  auto y = peft::lora_branch(x, A, B, 0.25);
  auto via_delta = torch::matmul(x, peft::lora_delta_weight(A, B, 0.25).t());
  EXPECT_TRUE(peft_test::close(y, via_delta, 1e-6, 1e-6));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 3}));
}

SEEDED_TEST(LoraBranch, KeepsLeadingBatchDimensions) {
  auto x = torch::ones({2, 3, 4});
  auto A = torch::ones({1, 4});
  auto B = torch::ones({2, 1});
  auto y = peft::lora_branch(x, A, B, 1.0);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 2}));
  EXPECT_EQ(y[1][2][1].item<float>(), 4.f);
}
