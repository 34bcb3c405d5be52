// peft::Conv1d/2d/3d (layers/conv.hpp): drop-ins for torch's convolutions, LoRA with a conv A and
// a pointwise B, the delta and merge/unmerge, DoRA's per-channel norm, inits and refusals, groups
// and dilation, mixed batches and on-disk keys, on hand-checkable tensors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "peft/error.hpp"
#include "peft/io/adapters.hpp"
#include "peft/layers/conv.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

using peft_test::param_names;

using peft_test::adapter_settings;

/// Conv1d(1 -> 1, k = 3, padding 1, no bias), W = [1, 1, 1]; rank 1, s = 1: A = [1, 0, -1], B = [2].
std::shared_ptr<peft::Conv1dImpl> hand_conv1d() {
  auto l = std::make_shared<peft::Conv1dImpl>(torch::nn::Conv1dOptions(1, 1, 3).padding(1).bias(false));
  torch::NoGradGuard g;
  l->weight.fill_(1.0);
  l->update_layer("default", adapter_settings(1, 1));
  l->set_adapter({"default"});
  l->lora_factors("default").A.copy_(torch::tensor({1.f, 0.f, -1.f}).view({1, 1, 3}));
  l->lora_factors("default").B.fill_(2.0);
  return l;
}

template <class Stock, class Ours, class Options>
void expect_same_as_stock(const Options& o, const torch::Tensor& x) {
  torch::manual_seed(5);
  Stock stock(o);
  torch::manual_seed(5);
  Ours ours(o);
  EXPECT_EQ(param_names(*ours), param_names(*stock));
  EXPECT_TRUE(peft_test::equal(ours->weight, stock->weight));  // kaiming weight, uniform bias: same draws
  if (stock->bias.defined()) {
    EXPECT_TRUE(peft_test::equal(ours->bias, stock->bias));
  }
  EXPECT_TRUE(peft_test::close(ours(x), stock(x), 0, 1e-6));
}

}  // namespace

SEEDED_TEST(PeftConv, AreDropInsForTorchConvolutions) {
  using O2 = torch::nn::Conv2dOptions;
  const auto x2 = torch::randn({2, 4, 7, 6});
  expect_same_as_stock<torch::nn::Conv2d, peft::Conv2d>(O2(4, 6, 3).stride(2).padding(1), x2);
  expect_same_as_stock<torch::nn::Conv2d, peft::Conv2d>(O2(4, 6, {3, 2}).padding({1, 0}).padding_mode(torch::kReflect), x2);
  expect_same_as_stock<torch::nn::Conv2d, peft::Conv2d>(O2(4, 6, 3).padding(torch::kSame).dilation(2), x2);
  expect_same_as_stock<torch::nn::Conv2d, peft::Conv2d>(O2(4, 6, 3).groups(2).bias(false), x2);
  expect_same_as_stock<torch::nn::Conv1d, peft::Conv1d>(
      torch::nn::Conv1dOptions(3, 5, 3).padding(2).padding_mode(torch::kCircular), torch::randn({2, 3, 9}));
  expect_same_as_stock<torch::nn::Conv3d, peft::Conv3d>(torch::nn::Conv3dOptions(2, 3, 2).stride(2),
                                                        torch::randn({1, 2, 4, 4, 4}));
  EXPECT_THROW(peft::Conv2d(O2(3, 4, 3).groups(2)), peft::ConfigError);  // in_channels % groups
}

SEEDED_TEST(PeftConv, ForwardAddsThePointwiseBOfTheConvolvedA) {
  auto l = hand_conv1d();
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight", "lora_A.default.weight", "lora_B.default.weight"}));
  EXPECT_EQ(l->lora_factors("default").A.sizes(), (std::vector<std::int64_t>{1, 1, 3}));
  EXPECT_EQ(l->lora_factors("default").B.sizes(), (std::vector<std::int64_t>{1, 1, 1}));
  const auto x = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 4});
  // base: box sums [3, 6, 9, 7]; A on the zero-padded x: [-2, -2, -2, 3], times B = 2, s = 1.
  EXPECT_TRUE(peft_test::equal(l->forward(x), torch::tensor({-1.f, 2.f, 5.f, 13.f}).view({1, 1, 4})));
}

SEEDED_TEST(PeftConv, DeltaIsBTimesAInTheWeightsLayoutAndMergeRoundTrips) {
  auto l = hand_conv1d();
  EXPECT_TRUE(peft_test::equal(l->delta_weight("default"), torch::tensor({2.f, 0.f, -2.f}).view({1, 1, 3})));
  const auto x = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 4});
  const auto adapted = l->forward(x);
  l->merge();
  EXPECT_TRUE(peft_test::equal(l->weight, torch::tensor({3.f, 1.f, -1.f}).view({1, 1, 3})));
  EXPECT_TRUE(peft_test::equal(l->forward(x), adapted));
  l->unmerge();
  EXPECT_TRUE(peft_test::equal(l->weight, torch::ones({1, 1, 3})));
}

SEEDED_TEST(PeftConv, LoraBiasIsAddedScaledAndMerged) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(2, 3, 3).padding(1));
  auto s = adapter_settings(2, 4);
  s.lora_bias = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight", "bias", "lora_A.default.weight", "lora_B.default.weight",
                                                       "lora_B.default.bias"}));
  {
    torch::NoGradGuard g;
    l->lora_factors("default").B.normal_();
    l->lora_factors("default").B_bias.copy_(torch::tensor({1.f, -1.f, 0.5f}));
  }
  const auto x = torch::randn({2, 2, 5, 5});
  const auto adapted = l->forward(x);
  const auto b0 = l->bias.clone();
  l->merge();
  EXPECT_TRUE(peft_test::close(l->bias, b0 + torch::tensor({2.f, -2.f, 1.f}), 0, 1e-6));  // b += s·b_B
  EXPECT_TRUE(peft_test::close(l->forward(x), adapted, 0, 1e-5));
  l->unmerge();
  EXPECT_TRUE(peft_test::close(l->bias, b0, 0, 1e-6));
}

SEEDED_TEST(PeftConv, DoraNormIsPerOutputChannelOverAllOtherDims) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(2, 2, 1));
  {
    torch::NoGradGuard g;
    l->weight.copy_(torch::tensor({1.f, 0.f, 0.f, 2.f}).view({2, 2, 1, 1}));
    l->bias.copy_(torch::tensor({0.5f, -0.5f}));
  }
  auto s = adapter_settings(1, 1);
  s.use_dora = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  // B = 0 at init: m = ‖W‖ per output channel, kept as [1, out, 1, 1].
  EXPECT_TRUE(peft_test::equal(l->lora_magnitude("default"), torch::tensor({1.f, 2.f}).view({1, 2, 1, 1})));
  {
    torch::NoGradGuard g;
    l->lora_factors("default").A.copy_(torch::tensor({1.f, 1.f}).view({1, 2, 1, 1}));
    l->lora_factors("default").B.copy_(torch::tensor({1.f, 0.f}).view({2, 1, 1, 1}));
  }
  // W + s·BA = [[2, 1], [0, 2]]: k = [1/√5, 1]; y = k ⊙ ((W + s·BA) x) + b.
  l->eval();
  const auto x = torch::tensor({3.f, 4.f}).view({1, 2, 1, 1});
  const auto want = torch::tensor({10.f / std::sqrt(5.f) + 0.5f, 7.5f}).view({1, 2, 1, 1});
  EXPECT_TRUE(peft_test::close(l->forward(x), want, 0, 1e-6));
  const auto W0 = l->weight.clone();
  l->merge();
  EXPECT_TRUE(peft_test::close(l->weight, torch::tensor({2.f / std::sqrt(5.f), 1.f / std::sqrt(5.f), 0.f, 2.f}).view({2, 2, 1, 1}),
                               0, 1e-6));
  EXPECT_TRUE(peft_test::close(l->forward(x), want, 0, 1e-6));
  l->unmerge();
  EXPECT_TRUE(peft_test::close(l->weight, W0, 0, 1e-6));
}

SEEDED_TEST(PeftConv, DoraWithDropoutRecomputesTheBaseOnTheDroppedInput) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(3, 4, 3).padding(1));
  auto s = adapter_settings(2, 2);
  s.use_dora = true;
  s.lora_dropout = 0.5;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  l->train();
  const auto x = torch::randn({2, 3, 5, 5}, torch::requires_grad());
  auto y = l->forward(x);
  y.sum().backward();  // trains A, B and m; the norm is detached
  EXPECT_TRUE(l->lora_magnitude("default").grad().defined());
  EXPECT_TRUE(l->lora_factors("default").A.grad().defined());
}

SEEDED_TEST(PeftConv, InitsFollowPeftAndOthersAreRefusedWithItsMessages) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(3, 4, 3));
  l->update_layer("true", adapter_settings(4, 4));
  const double bound = 1.0 / std::sqrt(27.0);  // kaiming-uniform, fan_in = in·prod(kernel)
  EXPECT_LE(l->lora_factors("true").A.abs().max().item<double>(), bound);
  EXPECT_TRUE(peft_test::equal(l->lora_factors("true").B, torch::zeros({4, 4, 1, 1})));
  auto g = adapter_settings(4, 4);
  g.init = peft::InitMethod::Gaussian;
  l->update_layer("gaussian", g);
  EXPECT_TRUE(peft_test::equal(l->lora_factors("gaussian").B, torch::zeros({4, 4, 1, 1})));
  for (auto [init, name] : {std::pair{peft::InitMethod::Pissa, "pissa"}, {peft::InitMethod::Olora, "olora"},
                            {peft::InitMethod::Orthogonal, "orthogonal"}, {peft::InitMethod::Eva, "eva"},
                            {peft::InitMethod::Corda, "corda"}}) {
    auto s = adapter_settings(4, 4);
    s.init = init;
    s.init_name = name;
    try {
      l->update_layer("x", s);
      FAIL() << name;
    } catch (const peft::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("Unknown initialization init_lora_weights='") + name + "'"),
                std::string::npos)
          << e.what();
    }
  }
  auto mica = adapter_settings(4, 4);
  mica.init = peft::InitMethod::Mica;
  try {
    l->update_layer("x", mica);
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("Invalid or unsupported variant combination: ('mica',)"), std::string::npos);
  }
  EXPECT_FALSE(l->has_adapter("x"));
}

SEEDED_TEST(PeftConv, GroupedConvolutionsNeedARankDivisibleByGroupsAndCannotMerge) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(4, 4, 3).padding(1).groups(2));
  EXPECT_THROW(l->update_layer("odd", adapter_settings(3, 3)), peft::ConfigError);
  {
    peft::ScopedWarningCapture w;
    l->update_layer("default", adapter_settings(2, 2));
    ASSERT_EQ(w.messages().size(), 1u);
    EXPECT_NE(w.messages()[0].find("groups > 1"), std::string::npos);
  }
  EXPECT_EQ(l->lora_factors("default").B.sizes(), (std::vector<std::int64_t>{4, 1, 1, 1}));  // B grouped
  l->set_adapter({"default"});
  EXPECT_EQ(l->forward(torch::randn({1, 4, 5, 5})).sizes(), (std::vector<std::int64_t>{1, 4, 5, 5}));
  const auto W0 = l->weight.clone();
  EXPECT_THROW(l->check_merge(false, {"default"}), peft::Error);
  EXPECT_THROW(l->merge(), peft::Error);
  EXPECT_TRUE(peft_test::equal(l->weight, W0));
  EXPECT_FALSE(l->merged());
}

SEEDED_TEST(PeftConv, TheBranchUsesTheBasesDilationSoMergingIsExact) {
  auto l = std::make_shared<peft::Conv1dImpl>(torch::nn::Conv1dOptions(2, 3, 3).dilation(2).padding(2));
  l->update_layer("default", adapter_settings(2, 4));
  l->set_adapter({"default"});
  {
    torch::NoGradGuard g;
    l->lora_factors("default").B.normal_();
  }
  const auto x = torch::randn({2, 2, 9});
  const auto adapted = l->forward(x);
  EXPECT_EQ(adapted.sizes(), (std::vector<std::int64_t>{2, 3, 9}));
  l->merge();
  EXPECT_TRUE(peft_test::close(l->forward(x), adapted, 0, 1e-5));
}

SEEDED_TEST(PeftConv, MixedBatchRowsUseTheirAdapter) {
  auto l = std::make_shared<peft::Conv2dImpl>(torch::nn::Conv2dOptions(2, 3, 3).padding(1));
  l->update_layer("a", adapter_settings(2, 2));
  l->update_layer("b", adapter_settings(1, 3));
  {
    torch::NoGradGuard g;
    l->lora_factors("a").B.normal_();
    l->lora_factors("b").B.normal_();
  }
  l->eval();
  const auto x = torch::randn({3, 2, 4, 4});
  const auto out = l->forward_mixed_batch(x, {"b", "__base__", "a"});
  l->set_adapter({"b"});
  EXPECT_TRUE(peft_test::close(out[0], l->forward(x)[0], 0, 1e-6));
  EXPECT_TRUE(peft_test::equal(out[1], l->base_forward(x)[1]));
  l->set_adapter({"a"});
  EXPECT_TRUE(peft_test::close(out[2], l->forward(x)[2], 0, 1e-6));
}

SEEDED_TEST(PeftConv, SavesPeftsKeysAndLoadsThemBack) {
  auto net = peft_test::OneLayer<peft::Conv2d>("conv", peft::Conv2d(torch::nn::Conv2dOptions(2, 3, 3).padding(1)));
  peft::LoraConfig cfg;
  cfg.target_modules = {"conv"};
  cfg.r = 2;
  cfg.use_dora = true;
  auto pm = peft::get_peft_model(net, cfg);
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> keys;
  for (const auto& [k, t] : peft::get_peft_model_state_dict(pm)) keys.emplace_back(k, t.sizes().vec());
  EXPECT_EQ(keys, (std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
                      {"base_model.model.conv.lora_A.weight", {2, 2, 3, 3}},
                      {"base_model.model.conv.lora_B.weight", {3, 2, 1, 1}},
                      {"base_model.model.conv.lora_magnitude_vector", {1, 3, 1, 1}}}));
  {
    torch::NoGradGuard g;
    pm.lora_layers()[0].second->lora_factors("default").B.normal_();
  }
  const auto dir = peft_test::scratch_dir("conv_keys");
  peft::save_pretrained(pm, dir);
  net->eval();
  const auto x = torch::randn({1, 2, 4, 4});
  const auto want = net(x);
  auto fresh = peft_test::OneLayer<peft::Conv2d>("conv", peft::Conv2d(torch::nn::Conv2dOptions(2, 3, 3).padding(1)));
  {
    torch::NoGradGuard g;
    fresh->layer->weight.copy_(net->layer->weight);
    fresh->layer->bias.copy_(net->layer->bias);
  }
  auto loaded = peft::from_pretrained(fresh.ptr(), dir);
  fresh->eval();
  EXPECT_TRUE(peft_test::close(fresh(x), want, 0, 1e-6));
  // Another kernel size does not fit the saved A [2, 2, 3, 3]: a shape error naming the key, the
  // model unchanged.
  auto other = peft_test::OneLayer<peft::Conv2d>("conv", peft::Conv2d(torch::nn::Conv2dOptions(2, 3, 5).padding(2)));
  try {
    peft::from_pretrained(other.ptr(), dir);
    FAIL() << "an adapter for a 3x3 kernel loaded onto a 5x5 conv";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("conv.lora_A"), std::string::npos) << e.what();
  }
  EXPECT_EQ(param_names(*other), (std::vector<std::string>{"conv.weight", "conv.bias"}));
}
