// peft::Embedding (layers/embedding.hpp): the drop-in for torch::nn::Embedding, LoRA with PEFT's
// embedding geometry (bare lora_embedding_A/B, A = 0 / B ~ N(0, 1) init), merge/unmerge, DoRA's
// per-column norm, on-disk keys and refused settings, on hand-checkable tensors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/error.hpp"
#include "peft/io/adapters.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/tuner/lora_model.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

using peft_test::param_names;

using peft_test::adapter_settings;

/// W = [[1, 2], [3, 4], [5, 6]] with one rank-1 adapter, s = 2: A = [[1, 0, 2]], B = [[1], [-1]].
std::shared_ptr<peft::EmbeddingImpl> hand_layer(bool dora = false) {
  auto l = std::make_shared<peft::EmbeddingImpl>(3, 2);
  torch::NoGradGuard g;
  l->weight.copy_(torch::tensor({{1.f, 2.f}, {3.f, 4.f}, {5.f, 6.f}}));
  auto s = adapter_settings(1, 2);
  s.use_dora = dora;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  const auto& f = l->lora_factors("default");
  f.A.copy_(torch::tensor({{1.f, 0.f, 2.f}}));
  f.B.copy_(torch::tensor({{1.f}, {-1.f}}));
  return l;
}

peft::LoraConfig emb_config(std::int64_t r = 2) {
  peft::LoraConfig c;
  c.target_modules = {"emb"};
  c.r = r;
  c.lora_alpha = 2 * r;
  return c;
}

}  // namespace

SEEDED_TEST(PeftEmbedding, IsADropInForTorchEmbedding) {
  const auto opts = torch::nn::EmbeddingOptions(6, 3).padding_idx(-2).max_norm(1.5);
  torch::manual_seed(3);
  torch::nn::Embedding stock(opts);
  torch::manual_seed(3);
  peft::Embedding ours(opts);
  EXPECT_EQ(param_names(*ours), (std::vector<std::string>{"weight"}));
  EXPECT_TRUE(peft_test::equal(ours->weight, stock->weight));  // N(0, 1), the padding row zeroed
  EXPECT_EQ(*ours->options.padding_idx(), 4);
  EXPECT_TRUE(peft_test::equal(ours->weight[4], torch::zeros({3})));
  const auto ids = torch::tensor({{0, 4, 5}, {5, 1, 0}}, torch::kLong);
  EXPECT_TRUE(peft_test::equal(ours(ids), stock(ids)));  // max_norm renormalises both tables alike
  EXPECT_TRUE(peft_test::equal(ours->weight, stock->weight));
  EXPECT_THROW(peft::Embedding(torch::nn::EmbeddingOptions(4, 2).padding_idx(4)), peft::ConfigError);
  EXPECT_THROW(peft::Embedding(torch::nn::EmbeddingOptions(4, 2)._weight(torch::zeros({3, 2}))), peft::ConfigError);
}

SEEDED_TEST(PeftEmbedding, ForwardAddsTheScaledLookupOfATransposed) {
  auto l = hand_layer();
  EXPECT_EQ(param_names(*l),
            (std::vector<std::string>{"weight", "lora_embedding_A.default", "lora_embedding_B.default"}));
  const auto ids = torch::tensor({2, 0}, torch::kLong);
  // base rows [5, 6], [1, 2]; Aᵀ rows 2 -> [2], 0 -> [1]; @ Bᵀ = [2, -2], [1, -1]; times s = 2.
  EXPECT_TRUE(peft_test::equal(l->forward(ids), torch::tensor({{9.f, 2.f}, {3.f, 0.f}})));
  l->enable_adapters(false);
  EXPECT_TRUE(peft_test::equal(l->forward(ids), torch::tensor({{5.f, 6.f}, {1.f, 2.f}})));
  l->enable_adapters(true);
  // Lora dropout is never applied to an Embedding (PEFT): training mode gives the same output.
  l->train();
  EXPECT_TRUE(peft_test::equal(l->forward(ids), torch::tensor({{9.f, 2.f}, {3.f, 0.f}})));
}

SEEDED_TEST(PeftEmbedding, MergeAddsTheTransposedDeltaAndUnmergeRestoresTheWeight) {
  auto l = hand_layer();
  const auto W0 = l->weight.clone();
  // (B @ A)ᵀ · s = [[1, -1], [0, 0], [2, -2]] · 2
  EXPECT_TRUE(peft_test::equal(l->delta_weight("default"), torch::tensor({{2.f, -2.f}, {0.f, 0.f}, {4.f, -4.f}})));
  const auto ids = torch::tensor({0, 1, 2}, torch::kLong);
  const auto adapted = l->forward(ids);
  l->merge();
  EXPECT_TRUE(peft_test::equal(l->weight, torch::tensor({{3.f, 0.f}, {3.f, 4.f}, {9.f, 2.f}})));
  EXPECT_TRUE(peft_test::equal(l->forward(ids), adapted));
  l->unmerge();
  EXPECT_TRUE(peft_test::equal(l->weight, W0));
  l->merge(/*safe_merge=*/true);
  EXPECT_TRUE(peft_test::equal(l->weight, W0 + l->delta_weight("default")));
}

SEEDED_TEST(PeftEmbedding, InitDrawsLikePeftAndFallsBackToTheDefaultForOtherInits) {
  auto layer_with = [](peft::InitMethod init) {
    torch::manual_seed(11);
    auto l = std::make_shared<peft::EmbeddingImpl>(5, 3);
    auto s = adapter_settings(2, 2);
    s.init = init;
    l->update_layer("a", s);
    return l;
  };
  torch::manual_seed(11);
  peft::EmbeddingImpl draw(5, 3);  // the layer's own init comes first
  const auto A0 = torch::randn({2, 5});
  const auto B0 = torch::randn({3, 2});
  const auto B1 = torch::empty({3, 2}).normal_();
  auto plain = layer_with(peft::InitMethod::Default);
  EXPECT_TRUE(peft_test::equal(plain->lora_factors("a").A, torch::zeros({2, 5})));  // A = 0
  EXPECT_TRUE(peft_test::equal(plain->lora_factors("a").B, B1));                    // B re-drawn N(0, 1)
  auto random = layer_with(peft::InitMethod::Random);
  EXPECT_TRUE(peft_test::equal(random->lora_factors("a").A, A0));
  EXPECT_TRUE(peft_test::equal(random->lora_factors("a").B, B0));
  for (auto init : {peft::InitMethod::Gaussian, peft::InitMethod::Pissa, peft::InitMethod::Olora,
                    peft::InitMethod::Orthogonal, peft::InitMethod::Eva, peft::InitMethod::Corda}) {
    auto same = layer_with(init);  // PEFT's quirk: silently the default on an Embedding
    EXPECT_TRUE(peft_test::equal(same->lora_factors("a").B, B1));
    EXPECT_TRUE(peft_test::equal(same->weight, plain->weight));  // no base rewrite
  }
}

SEEDED_TEST(PeftEmbedding, RefusesLoraBiasAndUnimplementedInitsBeforeAnyChange) {
  auto l = std::make_shared<peft::EmbeddingImpl>(4, 2);
  auto s = adapter_settings(2, 2);
  s.lora_bias = true;
  try {
    l->update_layer("a", s);
    FAIL() << "expected a ConfigError";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lora_bias=True is not supported for Embedding."), std::string::npos);
  }
  s.lora_bias = false;
  s.init = peft::InitMethod::Loftq;
  EXPECT_THROW(l->update_layer("a", s), peft::ConfigError);
  s.init = peft::InitMethod::Default;
  s.r = 0;
  EXPECT_THROW(l->update_layer("a", s), peft::ConfigError);
  EXPECT_TRUE(l->plain());
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight"}));
}

SEEDED_TEST(PeftEmbedding, DoraNormalisesPerEmbeddingColumnAndScalesTheWholeOutput) {
  auto l = std::make_shared<peft::EmbeddingImpl>(3, 2);
  {
    torch::NoGradGuard g;
    l->weight.copy_(torch::tensor({{3.f, 0.f}, {4.f, 0.f}, {0.f, 1.f}}));
  }
  auto s = adapter_settings(1, 2);
  s.use_dora = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  // A = 0 at init: m = the column norms of W, [5, 1]; on disk without ".weight".
  EXPECT_TRUE(peft_test::equal(l->lora_magnitude("default"), torch::tensor({5.f, 1.f})));
  const auto& f = l->lora_factors("default");
  {
    torch::NoGradGuard g;
    f.A.copy_(torch::tensor({{1.f, 0.f, 2.f}}));
    f.B.copy_(torch::tensor({{1.f}, {-1.f}}));
  }
  // Wᵀ + s·B A = [[3, 4, 0], [0, 0, 1]] + 2·[[1, 0, 2], [-1, 0, -2]] = [[5, 4, 4], [-2, 0, -3]]
  const auto norm = torch::tensor({std::sqrt(57.f), std::sqrt(13.f)});
  const auto k = torch::tensor({5.f, 1.f}) / norm;
  const auto ids = torch::tensor({2, 0}, torch::kLong);
  const auto lora = torch::tensor({{2.f, -2.f}, {1.f, -1.f}}) * 2.0;
  const auto want = k * torch::tensor({{0.f, 1.f}, {3.f, 0.f}}) + k * lora;  // k scales the base too
  l->eval();
  EXPECT_TRUE(peft_test::close(l->forward(ids), want, 0, 1e-6));
  const auto W0 = l->weight.clone();
  l->merge();
  const auto WD = W0 + l->delta_weight("default");
  EXPECT_TRUE(peft_test::close(l->weight, WD * k.view({1, -1}), 0, 1e-6));  // f per column
  EXPECT_TRUE(peft_test::close(l->forward(ids), want, 0, 1e-6));
  l->unmerge();
  EXPECT_TRUE(peft_test::close(l->weight, W0, 0, 1e-6));
  EXPECT_THROW(l->forward_mixed_batch(ids, {"default", "__base__"}), peft::Error);  // DoRA: refused
}

SEEDED_TEST(PeftEmbedding, MixedBatchRowsUseTheirAdapter) {
  auto l = hand_layer();
  l->update_layer("other", adapter_settings(1, 1));
  {
    torch::NoGradGuard g;
    l->lora_factors("other").A.copy_(torch::tensor({{1.f, 1.f, 1.f}}));
  }
  l->eval();
  const auto ids = torch::tensor({{2, 0}, {1, 1}, {0, 2}}, torch::kLong);
  const auto out = l->forward_mixed_batch(ids, {"default", "__base__", "other"});
  EXPECT_TRUE(peft_test::equal(out[0], l->forward(ids)[0]));
  EXPECT_TRUE(peft_test::equal(out[1], l->base_forward(ids)[1]));
  l->set_adapter({"other"});
  EXPECT_TRUE(peft_test::close(out[2], l->forward(ids)[2], 0, 1e-6));
}

SEEDED_TEST(PeftEmbedding, SavesPeftsKeysWithoutWeightAndLoadsThemBack) {
  auto net = peft_test::OneLayer<peft::Embedding>("emb", peft::Embedding(7, 4));
  auto cfg = emb_config();
  cfg.use_dora = true;
  auto pm = peft::get_peft_model(net, cfg);
  {
    torch::NoGradGuard g;
    pm.lora_layers()[0].second->lora_factors("default").A.normal_();
  }
  std::vector<std::string> keys;
  for (const auto& [k, t] : peft::get_peft_model_state_dict(pm)) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"base_model.model.emb.lora_embedding_A", "base_model.model.emb.lora_embedding_B",
                                            "base_model.model.emb.lora_magnitude_vector"}));
  const auto dir = peft_test::scratch_dir("embedding_keys");
  peft::save_pretrained(pm, dir);
  net->eval();
  const auto ids = torch::tensor({{1, 6, 3}}, torch::kLong);
  const auto want = net(ids);
  auto fresh = peft_test::OneLayer<peft::Embedding>("emb", peft::Embedding(7, 4));
  {
    torch::NoGradGuard g;
    fresh->layer->weight.copy_(pm.lora_layers()[0].second->base_weight());
  }
  auto loaded = peft::from_pretrained(fresh.ptr(), dir);
  fresh->eval();
  EXPECT_TRUE(peft_test::close(fresh(ids), want, 0, 1e-6));
  // A table of another size does not fit: a shape error naming the key, the model unchanged.
  auto other = peft_test::OneLayer<peft::Embedding>("emb", peft::Embedding(8, 4));
  EXPECT_THROW(peft::from_pretrained(other.ptr(), dir), peft::SerializationError);
  EXPECT_EQ(param_names(*other), (std::vector<std::string>{"emb.weight"}));
}

SEEDED_TEST(PeftEmbedding, CloneCopiesAdaptersAndKeepsTheBaseOptions) {
  auto l = hand_layer();
  auto copy = std::dynamic_pointer_cast<peft::EmbeddingImpl>(l->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(param_names(*copy), param_names(*l));
  const auto ids = torch::tensor({0, 2}, torch::kLong);
  EXPECT_TRUE(peft_test::equal(copy->forward(ids), l->forward(ids)));
  EXPECT_FALSE(copy->weight.is_same(l->weight));
  EXPECT_STREQ(copy->layer_type(), "Embedding");
}
