// add_weighted_adapter on Embedding and torch convolutions (docs/lifecycle.md#weighted-adapters):
// cat and linear keep the exact sum of the weighted deltas; svd factors Conv2d deltas flattened to
// [out, in·kh·kw] and Embedding deltas transposed, as PEFT does; Conv1d/Conv3d refuse svd.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/tuner/weighted_adapter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/test_helpers.hpp"

namespace {

/// ids [B, T] -> emb (vocab 11, dim 3) -> [B, 3, T] -> conv2 (Conv2d 3->4, 3x3 over [T, 1]) and
/// conv1 (Conv1d 3->4, k 2): only the layers matter here, the forward is not used.
struct Net : torch::nn::Module {
  Net()
      : emb(register_module("emb", peft::Embedding(11, 3))),
        conv2(register_module("conv2", peft::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)))),
        conv1(register_module("conv1", peft::Conv1d(3, 4, 2))) {}
  peft::Embedding emb;
  peft::Conv2d conv2;
  peft::Conv1d conv1;
};

const auto lora = peft_test::lora_config;

peft::WeightedAdapterOptions combination(peft::CombinationType type) {
  peft::WeightedAdapterOptions o;
  o.combination_type = type;
  return o;
}

/// `a` (r 2, alpha 4) and `b` (r 3, alpha 3) on `targets`, every factor random.
peft::LoraModel two_adapters(const std::shared_ptr<Net>& net, const peft::ModuleSpec& targets, std::int64_t rb = 3) {
  auto pm = peft::get_peft_model(std::static_pointer_cast<torch::nn::Module>(net), lora(targets, 2, 4), "a");
  pm.add_adapter("b", lora(targets, rb, 3));
  torch::NoGradGuard g;
  for (auto& [key, layer] : pm.lora_layers())
    for (const auto& n : layer->adapter_names())
      for (auto& [suffix, t] : layer->adapter_tensors(n)) t.normal_(0, 0.5);
  return pm;
}

/// PEFT's combined delta for cat / linear: s_new · Σ w_i · Δ_i (Δ_i already includes s_i).
torch::Tensor weighted_sum(peft::LoraLayer& layer, double wa, double wb, double s_new) {
  return s_new * (wa * layer.delta_weight("a") + wb * layer.delta_weight("b"));
}

SEEDED_TEST(WeightedLayers, CatKeepsTheWeightedSumOfEmbeddingAndConvDeltas) {
  auto net = std::make_shared<Net>();
  auto pm = two_adapters(net, {"emb", "conv2", "conv1"});
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"a", "b"}, {0.5, 2.0}, "ab", combination(peft::CombinationType::cat)));
  for (auto& [key, layer] : pm.lora_layers()) {
    const double s_new = layer->settings("ab").scaling;
    EXPECT_TRUE(peft_test::close(layer->delta_weight("ab"), weighted_sum(*layer, 0.5, 2.0, s_new), 1e-5, 1e-5)) << key;
  }
  // The embedding's factors keep PEFT's names and the summed rank.
  auto tensors = net->emb->adapter_tensors("ab");
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors[0].first, "lora_embedding_A");
  EXPECT_EQ(tensors[0].second.sizes(), (std::vector<std::int64_t>{5, 11}));
  EXPECT_EQ(net->conv2->lora_factors("ab").A.sizes(), (std::vector<std::int64_t>{5, 3, 3, 3}));
}

SEEDED_TEST(WeightedLayers, LinearCombinesTheFactorsOfEqualRanks) {
  auto net = std::make_shared<Net>();
  auto pm = two_adapters(net, {"emb", "conv1"}, /*rb=*/2);
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"a", "b"}, {1.0, 1.0}, "ab", combination(peft::CombinationType::linear)));
  // Factor-wise: A = Σ sqrt(w_i s_i) A_i, B = Σ sqrt(w_i s_i) B_i, so the delta holds the cross
  // terms too; check it against that formula on the conv and the embedding.
  for (auto* layer : std::vector<peft::LoraLayer*>{net->emb.get(), net->conv1.get()}) {
    const auto& fa = layer->lora_factors("a");
    const auto& fb = layer->lora_factors("b");
    const double ca = std::sqrt(layer->settings("a").scaling), cb = std::sqrt(layer->settings("b").scaling);
    const auto& fab = layer->lora_factors("ab");
    EXPECT_TRUE(peft_test::close(fab.A, ca * fa.A + cb * fb.A, 1e-6, 1e-6)) << layer->layer_type();
    EXPECT_TRUE(peft_test::close(fab.B, ca * fa.B + cb * fb.B, 1e-6, 1e-6)) << layer->layer_type();
  }
}

SEEDED_TEST(WeightedLayers, SvdFactorsConv2dAndEmbeddingDeltasLikePeft) {
  auto net = std::make_shared<Net>();
  auto pm = two_adapters(net, {"emb", "conv2"});
  auto o = combination(peft::CombinationType::svd);
  o.svd_rank = 5;  // the sum of the ranks: the SVD is exact
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"a", "b"}, {0.5, 2.0}, "ab", o));
  for (auto* layer : std::vector<peft::LoraLayer*>{net->emb.get(), net->conv2.get()}) {
    // svd types scale Δ_i by s_i twice (weights w_i·s_i times Δ_i, as PEFT).
    const double s_new = layer->settings("ab").scaling;
    auto want = s_new * (0.5 * layer->settings("a").scaling * layer->delta_weight("a") +
                         2.0 * layer->settings("b").scaling * layer->delta_weight("b"));
    EXPECT_TRUE(peft_test::close(layer->delta_weight("ab"), want, 1e-4, 1e-4)) << layer->layer_type();
  }
  EXPECT_EQ(net->conv2->lora_factors("ab").B.sizes(), (std::vector<std::int64_t>{4, 5, 1, 1}));
  EXPECT_EQ(net->emb->lora_factors("ab").B.sizes(), (std::vector<std::int64_t>{3, 5}));
}

SEEDED_TEST(WeightedLayers, SvdRefusesConv1dBeforeAnyChange) {
  auto net = std::make_shared<Net>();
  auto pm = two_adapters(net, {"conv1"});
  try {
    peft::add_weighted_adapter(pm, {"a", "b"}, {1.0, 1.0}, "ab", combination(peft::CombinationType::svd));
    FAIL() << "svd on a Conv1d was accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("conv1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Conv2d deltas only"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pm.adapter_names(), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
