// peft::Linear / peft::Conv1D with adapters, on small hand-checkable tensors
// (docs/layer.md#the-lora-layer, docs/init.md#initialisation-strategies,
// docs/lifecycle.md#adapter-lifecycle).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/test_helpers.hpp"

namespace {

peft::AdapterSettings settings(std::int64_t r, double alpha, peft::InitMethod init = peft::InitMethod::Default) {
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = alpha;
  s.scaling = alpha / static_cast<double>(r);
  s.init = init;
  return s;
}

using peft_test::param_names;

/// A 2->2 layer with identity weight, zero bias, and one rank-1 adapter A=[1,1], B=[[1],[2]].
peft::Linear hand_layer(double alpha = 2.0) {
  peft::Linear l(2, 2);
  torch::NoGradGuard g;
  l->weight.copy_(torch::eye(2));
  l->bias.zero_();
  l->update_layer("default", settings(1, alpha));
  l->lora_A("default")->weight.copy_(torch::tensor({{1.f, 1.f}}));
  l->lora_B("default")->weight.copy_(torch::tensor({{1.f}, {2.f}}));
  l->set_adapter({"default"});
  return l;
}

}  // namespace

SEEDED_TEST(PeftLinear, WithoutAdaptersIsAPlainLinear) {
  torch::manual_seed(3);
  torch::nn::Linear stock(5, 3);
  torch::manual_seed(3);
  peft::Linear ours(5, 3);
  EXPECT_TRUE(peft_test::equal(stock->weight, ours->weight));
  EXPECT_TRUE(peft_test::equal(stock->bias, ours->bias));
  EXPECT_EQ(param_names(*ours), (std::vector<std::string>{"weight", "bias"}));
  auto x = torch::randn({4, 5});
  EXPECT_TRUE(peft_test::equal(stock(x), ours(x)));
  peft::Linear nobias(torch::nn::LinearOptions(5, 3).bias(false));
  EXPECT_EQ(param_names(*nobias), (std::vector<std::string>{"weight"}));
}

SEEDED_TEST(PeftLinear, AdapterParametersUsePeftNames) {
  peft::Linear l(4, 3);
  l->update_layer("default", settings(2, 4));
  auto s = settings(2, 4);
  s.lora_bias = true;
  l->update_layer("other", s);
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight", "bias", "lora_A.default.weight", "lora_A.other.weight",
                                                       "lora_B.default.weight", "lora_B.other.weight", "lora_B.other.bias"}));
  EXPECT_EQ(l->lora_A("default")->weight.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(l->lora_B("default")->weight.sizes(), (std::vector<int64_t>{3, 2}));
}

SEEDED_TEST(PeftLinear, DefaultInitIsKaimingAAndZeroBSoTheOutputIsUnchanged) {
  peft::Linear l(16, 8);
  l->update_layer("default", settings(4, 8));
  l->set_adapter({"default"});
  auto A = l->lora_A("default")->weight;
  EXPECT_LE(A.abs().max().item<float>(), 1.0 / std::sqrt(16.0) + 1e-6);
  EXPECT_TRUE(peft_test::equal(l->lora_B("default")->weight, torch::zeros({8, 4})));
  auto x = torch::randn({3, 16});
  EXPECT_TRUE(peft_test::close(l(x), l->base_forward(x)));
}

SEEDED_TEST(PeftLinear, GaussianAndRandomInits) {
  peft::Linear l(64, 8);
  l->update_layer("g", settings(4, 8, peft::InitMethod::Gaussian));
  auto A = l->lora_A("g")->weight;
  EXPECT_NEAR(A.std().item<float>(), 0.25, 0.05);  // std = 1/r
  EXPECT_EQ(l->lora_B("g")->weight.abs().sum().item<float>(), 0.f);
  l->update_layer("f", settings(4, 8, peft::InitMethod::Random));
  EXPECT_GT(l->lora_B("f")->weight.abs().sum().item<float>(), 0.f);
}

SEEDED_TEST(PeftLinear, OrthogonalInitIsANoOpAndNeedsEvenRank) {
  peft::Linear l(12, 10);
  l->update_layer("o", settings(4, 8, peft::InitMethod::Orthogonal));
  auto BA = torch::matmul(l->lora_B("o")->weight, l->lora_A("o")->weight);
  EXPECT_TRUE(peft_test::close(BA, torch::zeros_like(BA), 0, 1e-6));
  EXPECT_GT(l->lora_A("o")->weight.abs().sum().item<float>(), 0.f);
  EXPECT_THROW(l->update_layer("odd", settings(3, 8, peft::InitMethod::Orthogonal)), peft::ConfigError);
}

SEEDED_TEST(PeftLinear, ForwardAddsScaledLowRankBranch) {
  auto l = hand_layer(/*alpha=*/2.0);  // scaling 2
  auto y = l(torch::tensor({{1.f, 2.f}}));
  // base = x; A x = 3; B(Ax) = [3, 6]; * 2 = [6, 12]
  EXPECT_TRUE(peft_test::equal(y, torch::tensor({{7.f, 14.f}})));
}

SEEDED_TEST(PeftLinear, InactiveOrDisabledAdaptersDoNothing) {
  auto l = hand_layer();
  auto x = torch::tensor({{1.f, 2.f}});
  l->set_adapter({});
  EXPECT_TRUE(peft_test::equal(l(x), x));
  l->set_adapter({"default"});
  l->enable_adapters(false);
  EXPECT_TRUE(peft_test::equal(l(x), x));
  EXPECT_FALSE(l->lora_A("default")->weight.requires_grad());
  l->enable_adapters(true);
  EXPECT_FALSE(torch::equal(l(x), x));
}

SEEDED_TEST(PeftLinear, SeveralActiveAdaptersAreSummedInOrder) {
  auto l = hand_layer();
  l->update_layer("second", settings(1, 1.0));
  {
    torch::NoGradGuard g;
    l->lora_A("second")->weight.copy_(torch::tensor({{1.f, 0.f}}));
    l->lora_B("second")->weight.copy_(torch::tensor({{0.f}, {10.f}}));
  }
  l->set_adapter({"default", "second"});
  auto y = l(torch::tensor({{1.f, 2.f}}));
  EXPECT_TRUE(peft_test::equal(y, torch::tensor({{7.f, 24.f}})));
}

SEEDED_TEST(PeftLinear, SetAdapterControlsRequiresGrad) {
  auto l = hand_layer();
  l->update_layer("other", settings(1, 1.0));
  EXPECT_TRUE(l->lora_A("default")->weight.requires_grad());
  EXPECT_FALSE(l->lora_A("other")->weight.requires_grad());
  l->set_adapter({"other"});
  EXPECT_FALSE(l->lora_B("default")->weight.requires_grad());
  EXPECT_TRUE(l->lora_B("other")->weight.requires_grad());
  l->set_adapter({"other"}, /*trainable=*/false);
  EXPECT_FALSE(l->lora_B("other")->weight.requires_grad());
}

SEEDED_TEST(PeftLinear, DropoutOnlyOnTheAdapterPathAndOnlyInTraining) {
  peft::Linear l(64, 64);
  auto s = settings(8, 8, peft::InitMethod::Random);
  s.lora_dropout = 0.5;
  l->update_layer("d", s);
  l->set_adapter({"d"});
  auto x = torch::randn({4, 64});
  l->train(false);
  auto e1 = l(x), e2 = l(x);
  EXPECT_TRUE(peft_test::equal(e1, e2));
  l->train(true);
  auto t1 = l(x), t2 = l(x);
  EXPECT_FALSE(torch::equal(t1, t2));
  // Disabled: exactly the base output even in training.
  l->enable_adapters(false);
  EXPECT_TRUE(peft_test::equal(l(x), l->base_forward(x)));
}

SEEDED_TEST(PeftLinear, MergeFoldsTheDeltaAndUnmergeRestores) {
  auto l = hand_layer();
  auto x = torch::tensor({{1.f, 2.f}, {-1.f, 0.5f}});
  auto before = l(x);
  auto w0 = l->weight.clone();
  l->merge();
  EXPECT_TRUE(l->merged());
  // W + s * B @ A = I + 2 * [[1,1],[2,2]]
  EXPECT_TRUE(peft_test::equal(l->weight, torch::tensor({{3.f, 2.f}, {4.f, 5.f}})));
  EXPECT_TRUE(peft_test::close(l(x), before));
  l->unmerge();
  EXPECT_TRUE(peft_test::equal(l->weight, w0));
  EXPECT_TRUE(peft_test::close(l(x), before));
}

SEEDED_TEST(PeftLinear, SafeMergeRejectsNaNAndLeavesTheWeight) {
  auto l = hand_layer();
  {
    torch::NoGradGuard g;
    l->lora_B("default")->weight.fill_(std::nanf(""));
  }
  auto w0 = l->weight.clone();
  EXPECT_THROW(l->merge(/*safe_merge=*/true), peft::Error);
  EXPECT_TRUE(peft_test::equal(l->weight, w0));
  EXPECT_FALSE(l->merged());
}

SEEDED_TEST(PeftLinear, LoraBiasIsScaledAndMergedIntoTheBaseBias) {
  peft::Linear l(2, 2);
  auto s = settings(1, 2.0);
  s.lora_bias = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  {
    torch::NoGradGuard g;
    l->weight.copy_(torch::eye(2));
    l->bias.zero_();
    l->lora_B("default")->bias.copy_(torch::tensor({1.f, -1.f}));
  }
  auto x = torch::zeros({1, 2});
  EXPECT_TRUE(peft_test::equal(l(x), torch::tensor({{2.f, -2.f}})));  // B weight is 0, bias*2
  l->merge();
  EXPECT_TRUE(peft_test::equal(l->bias, torch::tensor({2.f, -2.f})));
  l->unmerge();
  EXPECT_TRUE(peft_test::equal(l->bias, torch::zeros({2})));
}

SEEDED_TEST(PeftLinear, LoraBiasWithoutBaseBiasCannotMerge) {
  peft::Linear l(torch::nn::LinearOptions(2, 2).bias(false));
  auto s = settings(1, 1.0);
  s.lora_bias = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  EXPECT_THROW(l->merge(), peft::Error);
}

SEEDED_TEST(PeftLinear, DisabledForwardUnmergesAMergedLayer) {
  auto l = hand_layer();
  auto w0 = l->weight.clone();
  l->merge();
  l->enable_adapters(false);
  auto x = torch::tensor({{1.f, 2.f}});
  EXPECT_TRUE(peft_test::equal(l(x), x));
  EXPECT_FALSE(l->merged());
  EXPECT_TRUE(peft_test::equal(l->weight, w0));
}

SEEDED_TEST(PeftLinear, Bf16BaseWithFp32AdapterRoundsOnce) {
  auto l = hand_layer();
  l->to(torch::kBFloat16);
  l->upcast_adapter("default");
  EXPECT_EQ(l->lora_A("default")->weight.scalar_type(), torch::kFloat32);
  auto x = torch::tensor({{1.f, 2.f}}).to(torch::kBFloat16);
  auto y = l(x);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(peft_test::equal(y.to(torch::kFloat32), torch::tensor({{7.f, 14.f}})));
}

SEEDED_TEST(PeftLinear, MixedBatchUsesOneAdapterPerRow) {
  auto l = hand_layer();
  l->train(false);
  auto x = torch::tensor({{1.f, 2.f}, {1.f, 2.f}});
  auto y = l->forward_mixed_batch(x, {"default", "__base__"});
  EXPECT_TRUE(peft_test::equal(y, torch::tensor({{7.f, 14.f}, {1.f, 2.f}})));
  EXPECT_THROW(l->forward_mixed_batch(x, {"default"}), peft::Error);
}

SEEDED_TEST(PeftLinear, DeleteAdapterRestoresAPlainLayer) {
  auto l = hand_layer();
  l->update_layer("other", settings(1, 1.0));
  peft::ScopedWarningCapture w;
  l->delete_adapter("default");
  EXPECT_EQ(l->active_adapters(), (std::vector<std::string>{"other"}));
  EXPECT_EQ(w.messages().size(), 1u);
  l->delete_adapter("other");
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_THROW(l->delete_adapter("other"), peft::Error);
}

SEEDED_TEST(PeftLinear, CannotDeleteAMergedAdapter) {
  auto l = hand_layer();
  l->merge();
  EXPECT_THROW(l->delete_adapter("default"), peft::Error);
  EXPECT_TRUE(l->has_adapter("default"));
}

SEEDED_TEST(PeftLinear, CloneCopiesAdaptersIntoIndependentTensors) {
  auto l = hand_layer();
  auto c = std::dynamic_pointer_cast<peft::LinearImpl>(l->clone());
  ASSERT_TRUE(c);
  EXPECT_EQ(param_names(*c), param_names(*l));
  auto x = torch::tensor({{1.f, 2.f}});
  EXPECT_TRUE(peft_test::equal(c->forward(x), l(x)));
  {
    torch::NoGradGuard g;
    c->lora_B("default")->weight.zero_();
  }
  EXPECT_FALSE(torch::equal(c->forward(x), l(x)));
}

SEEDED_TEST(PeftLinear, SharingAStockLinearUsesTheSameTensors) {
  torch::nn::Linear stock(3, 2);
  auto ours = peft::LinearImpl::sharing(*stock);
  EXPECT_TRUE(ours->weight.is_same(stock->weight));
  EXPECT_TRUE(ours->bias.is_same(stock->bias));
}

SEEDED_TEST(PeftConv1D, ComputesXTimesWeightPlusBias) {
  peft::Conv1D c(3, 2);  // nf=3 out, nx=2 in
  EXPECT_EQ(c->weight.sizes(), (std::vector<int64_t>{2, 3}));
  auto x = torch::randn({2, 4, 2});
  auto want = torch::matmul(x, c->weight) + c->bias;
  EXPECT_TRUE(peft_test::close(c(x), want, 1e-6, 1e-6));
  EXPECT_EQ(param_names(*c), (std::vector<std::string>{"weight", "bias"}));
}

SEEDED_TEST(PeftConv1D, LoraDeltaIsTransposedIntoTheInOutLayout) {
  peft::Conv1D c(3, 2);
  c->update_layer("default", settings(1, 1.0));
  c->set_adapter({"default"});
  {
    torch::NoGradGuard g;
    c->lora_A("default")->weight.copy_(torch::tensor({{1.f, 2.f}}));       // [r=1, in=2]
    c->lora_B("default")->weight.copy_(torch::tensor({{1.f}, {0.f}, {-1.f}}));  // [out=3, r=1]
  }
  auto delta = c->delta_weight("default");
  EXPECT_TRUE(peft_test::equal(delta, torch::tensor({{1.f, 0.f, -1.f}, {2.f, 0.f, -2.f}})));
  auto x = torch::randn({5, 2});
  auto before = c(x);
  c->merge();
  EXPECT_TRUE(peft_test::close(c(x), before, 1e-5, 1e-5));
}
