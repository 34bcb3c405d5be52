// Injection of the new layer types: stock torch::nn::Embedding / Conv1d/2d/3d in containers
// swapped for the peft drop-ins (sharing their tensors), the stale-holder refusal, and
// trainable_token_indices (PEFT's TrainableTokensLayer) on hand-checkable tensors, including the
// tied output layer of the reference models.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/adapters.hpp"
#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

using peft_test::param_names;

peft::LoraConfig config(std::vector<std::string> targets, std::int64_t r = 2) {
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec::list(std::move(targets));
  c.r = r;
  c.lora_alpha = 2 * r;
  return c;
}

/// Every lora_B (or lora_embedding_A, whose init is 0) gets random values: adapters change outputs.
void make_adapters_active(peft::LoraModel& pm) {
  torch::NoGradGuard g;
  for (auto& [key, layer] : pm.lora_layers())
    for (const auto& n : layer->adapter_names()) {
      layer->lora_factors(n).A.normal_();
      layer->lora_factors(n).B.normal_();
    }
}

/// emb (vocab 6, dim 3) -> proj: W = arange(18).view(6, 3).
struct TokenNetImpl : torch::nn::Module {
  TokenNetImpl()
      : emb(register_module("emb", peft::Embedding(6, 3))), proj(register_module("proj", peft::Linear(3, 2))) {
    torch::NoGradGuard g;
    emb->weight.copy_(torch::arange(18, torch::kFloat32).view({6, 3}));
  }
  torch::Tensor forward(const torch::Tensor& ids) { return proj(emb(ids)); }
  peft::Embedding emb;
  peft::Linear proj;
};
TORCH_MODULE(TokenNet);

peft::LoraConfig tokens_config(const std::string& json_indices) {
  auto c = config({"proj"});
  c.trainable_token_indices = peft::JsonValue::parse(json_indices);
  return c;
}

}  // namespace

SEEDED_TEST(StockLayerAdoption, EmbeddingsAndConvolutionsInContainersAreSwappedInPlace) {
  torch::nn::Sequential seq({{"emb", torch::nn::Embedding(10, 4)}, {"proj", torch::nn::Linear(4, 2)}});
  const auto w_emb = seq[0]->as<torch::nn::EmbeddingImpl>()->weight;
  const auto ids = torch::tensor({{1, 9, 3}}, torch::kLong);
  const auto before = seq->forward(ids);
  auto pm = peft::get_peft_model(seq, config({"emb", "proj"}));
  auto* emb = seq[0]->as<peft::EmbeddingImpl>();
  ASSERT_NE(emb, nullptr);
  EXPECT_TRUE(emb->weight.is_same(w_emb));  // shares the stock tensor, no copy
  EXPECT_NE(seq[1]->as<peft::LinearImpl>(), nullptr);
  EXPECT_TRUE(peft_test::equal(seq->forward(ids), before));  // A = 0 / B = 0 at init
  make_adapters_active(pm);
  EXPECT_TRUE(peft_test::not_close(seq->forward(ids), before));  // the Sequential's forward reaches LoRA

  torch::nn::ModuleList list;
  list->push_back(torch::nn::Conv1d(torch::nn::Conv1dOptions(2, 3, 3)));
  torch::nn::ModuleDict dict;
  dict->update({{"c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 2, 1)).ptr()},
                {"c3", torch::nn::Conv3d(torch::nn::Conv3dOptions(1, 2, 2)).ptr()}});
  auto root = std::make_shared<torch::nn::Module>();
  root->register_module("list", list);
  root->register_module("dict", dict);
  auto pm2 = peft::get_peft_model(root, config({"list.0", "c2", "c3"}));
  EXPECT_NE(list[0]->as<peft::Conv1dImpl>(), nullptr);
  EXPECT_NE(dict["c2"]->as<peft::Conv2dImpl>(), nullptr);
  EXPECT_NE(dict["c3"]->as<peft::Conv3dImpl>(), nullptr);
  EXPECT_EQ(pm2.targeted_module_names(), (std::vector<std::string>{"list.0", "dict.c2", "dict.c3"}));
  EXPECT_EQ(list[0]->as<peft::Conv1dImpl>()->lora_factors("default").A.sizes(), (std::vector<std::int64_t>{2, 2, 3}));
}

SEEDED_TEST(StockLayerAdoption, AStockEmbeddingHeldByAMemberIsRefusedBeforeAnyChange) {
  struct Net : torch::nn::Module {
    Net() : emb(register_module("emb", torch::nn::Embedding(5, 2))), conv(register_module("conv", peft::Conv1d(2, 2, 1))) {}
    torch::nn::Embedding emb;
    peft::Conv1d conv;
  };
  auto net = std::make_shared<Net>();
  const auto names = param_names(*net);
  try {
    peft::get_peft_model(net, config({"conv", "emb"}));
    FAIL() << "expected UnsupportedModuleError";
  } catch (const peft::UnsupportedModuleError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("`emb`"), std::string::npos) << m;
    EXPECT_NE(m.find("torch::nn::Embedding"), std::string::npos) << m;
    EXPECT_NE(m.find("peft::Embedding"), std::string::npos) << m;
  }
  EXPECT_EQ(param_names(*net), names);  // the conv got nothing either
  EXPECT_TRUE(net->conv->plain());
}

SEEDED_TEST(TrainableTokens, OnlyTheListedRowsAreReplacedAndTrained) {
  TokenNet net;
  auto pm = peft::get_peft_model(net, tokens_config(R"({"emb": [4, 1]})"));
  auto& emb = *net->emb;
  EXPECT_EQ(emb.trainable_token_indices("default"), (std::vector<std::int64_t>{4, 1}));
  // The rows start as the weight's rows, in config order: [[12, 13, 14], [3, 4, 5]].
  EXPECT_TRUE(peft_test::equal(emb.trainable_tokens_delta("default"), torch::tensor({{12.f, 13.f, 14.f}, {3.f, 4.f, 5.f}})));
  const auto names = param_names(*net);
  EXPECT_NE(std::find(names.begin(), names.end(), "emb.token_adapter.trainable_tokens_delta.default"), names.end());
  {
    torch::NoGradGuard g;
    emb.trainable_tokens_delta("default").copy_(torch::tensor({{-1.f, -1.f, -1.f}, {7.f, 7.f, 7.f}}));
  }
  const auto ids = torch::tensor({0, 1, 4}, torch::kLong);
  EXPECT_TRUE(peft_test::equal(emb.forward(ids), torch::tensor({{0.f, 1.f, 2.f}, {7.f, 7.f, 7.f}, {-1.f, -1.f, -1.f}})));
  // Only the rows (and the LoRA of proj) train: 2·3 + proj's 2·3 + 2·2.
  EXPECT_EQ(pm.get_nb_trainable_parameters().first, 6 + 6 + 4);
  EXPECT_FALSE(emb.weight.requires_grad());
  net->forward(ids).sum().backward();
  EXPECT_TRUE(emb.trainable_tokens_delta("default").grad().defined());
  {
    auto off = pm.disable_adapter();
    EXPECT_TRUE(peft_test::equal(emb.forward(ids), torch::tensor({{0.f, 1.f, 2.f}, {3.f, 4.f, 5.f}, {12.f, 13.f, 14.f}})));
  }
}

SEEDED_TEST(TrainableTokens, TheLookupPathEqualsTheWholeTableCopyInValuesAndGradients) {
  // peft::Embedding puts the token rows in after the lookup; PEFT copies the whole table first
  // (LoraLayer::token_forward). Same output and the same gradient of the rows, with ids hitting
  // a token twice; padding_idx on a token row takes PEFT's way (no gradient there).
  for (const bool pad_on_token : {false, true}) {
    auto opts = torch::nn::EmbeddingOptions(12, 3);
    if (pad_on_token) opts.padding_idx(2);
    auto e = std::make_shared<peft::EmbeddingImpl>(opts);
    e->add_trainable_tokens("t", {7, 2, 11});
    e->set_adapter({"t"});
    {
      torch::NoGradGuard g;
      e->trainable_tokens_delta("t").normal_();
    }
    const auto ids = torch::tensor({{7, 0, 2}, {11, 7, 5}}, torch::kLong);
    const auto g = torch::randn({2, 3, 3});
    auto rows = e->trainable_tokens_delta("t");  // a handle: its grad is the parameter's
    const auto ours = e->token_forward(ids, "t");
    ours.backward(g);
    const auto grad_ours = rows.grad().clone();
    rows.mutable_grad() = torch::Tensor();
    const auto peft_way = e->peft::LoraLayer::token_forward(ids, "t");
    peft_way.backward(g);
    EXPECT_TRUE(peft_test::equal(ours, peft_way)) << pad_on_token;
    EXPECT_TRUE(peft_test::close(grad_ours, rows.grad(), 0, 1e-6)) << pad_on_token;
    EXPECT_TRUE(peft_test::not_close(ours, e->base_forward(ids)));
  }
}

SEEDED_TEST(TrainableTokens, MergeWritesTheRowsAndUnmergeRestoresTheOriginalOnes) {
  TokenNet net;
  auto pm = peft::get_peft_model(net, tokens_config(R"({"emb": [2]})"));
  auto& emb = *net->emb;
  {
    torch::NoGradGuard g;
    emb.trainable_tokens_delta("default").fill_(100.f);
  }
  const auto W0 = emb.weight.clone();
  const auto ids = torch::tensor({2, 3}, torch::kLong);
  const auto adapted = emb.forward(ids);
  pm.merge_adapter();
  EXPECT_TRUE(peft_test::equal(emb.weight[2], torch::full({3}, 100.f)));
  EXPECT_TRUE(peft_test::equal(emb.forward(ids), adapted));
  pm.unmerge_adapter();
  EXPECT_TRUE(peft_test::equal(emb.weight, W0));
  pm.merge_and_unload();
  EXPECT_TRUE(peft_test::equal(emb.weight[2], torch::full({3}, 100.f)));
  EXPECT_EQ(param_names(*net), (std::vector<std::string>{"emb.weight", "proj.weight", "proj.bias"}));
}

SEEDED_TEST(TrainableTokens, SaveUsesPeftsKeyAndLoadRestoresTheRows) {
  TokenNet net;
  auto pm = peft::get_peft_model(net, tokens_config(R"({"emb": [5, 0]})"));
  {
    torch::NoGradGuard g;
    net->emb->trainable_tokens_delta("default").normal_();
  }
  std::vector<std::string> keys;
  for (const auto& [k, t] : peft::get_peft_model_state_dict(pm)) keys.push_back(k);
  EXPECT_NE(std::find(keys.begin(), keys.end(), "base_model.model.emb.token_adapter.trainable_tokens_delta"), keys.end());
  const auto dir = peft_test::scratch_dir("tokens_keys");
  peft::save_pretrained(pm, dir);
  const auto ids = torch::tensor({5, 0, 3}, torch::kLong);
  const auto want = net->forward(ids);
  TokenNet fresh;
  {
    torch::NoGradGuard g;
    fresh->proj->weight.copy_(net->proj->weight);
    fresh->proj->bias.copy_(net->proj->bias);
  }
  auto loaded = peft::from_pretrained(fresh.ptr(), dir);
  EXPECT_TRUE(peft_test::close(fresh->forward(ids), want, 0, 1e-6));
}

SEEDED_TEST(TrainableTokens, ALoadWhoseRowsOrIndicesDoNotFitIsRefusedAndChangesNothing) {
  TokenNet net;
  auto pm = peft::get_peft_model(net, tokens_config(R"({"emb": [5, 0]})"));
  const auto dir = peft_test::scratch_dir("tokens_bad_load");
  peft::save_pretrained(pm, dir);
  const auto config_text = peft::read_text_file(dir / "adapter_config.json");
  auto with_indices = [&](const std::string& indices) {
    auto cfg = peft::JsonValue::parse(config_text);
    cfg.set("trainable_token_indices", peft::JsonValue::parse(indices));
    peft::write_file_atomically(dir / "adapter_config.json", cfg.dump(2));
  };
  // 3 indices for the file's 2 rows; an index past the 6-row vocabulary; a module that is absent.
  for (const char* indices : {R"({"emb": [5, 0, 1]})", R"({"emb": [5, 6]})", R"({"nope": [1, 2]})"}) {
    SCOPED_TRACE(indices);
    with_indices(indices);
    TokenNet fresh;
    const auto names = param_names(*fresh);
    const auto weight = fresh->emb->weight.clone();
    try {
      peft::from_pretrained(fresh.ptr(), dir);
      ADD_FAILURE() << "accepted";
    } catch (const peft::Error& e) {
      SCOPED_TRACE(e.what());
    }
    EXPECT_EQ(param_names(*fresh), names);
    EXPECT_TRUE(peft_test::equal(fresh->emb->weight, weight));
    EXPECT_FALSE(fresh->emb->has_trainable_tokens("default"));
  }
}

SEEDED_TEST(TrainableTokens, TwoAdaptersMayHoldTokensButOnlyOneIsActive) {
  TokenNet net;
  auto pm = peft::get_peft_model(net, tokens_config(R"({"emb": [1, 2]})"));
  pm.add_adapter("other", tokens_config(R"({"emb": [2, 3]})"));
  {
    torch::NoGradGuard g;
    net->emb->trainable_tokens_delta("default").fill_(1.f);
    net->emb->trainable_tokens_delta("other").fill_(2.f);
  }
  EXPECT_THROW(pm.set_adapter(std::vector<std::string>{"default", "other"}), peft::ConfigError);
  EXPECT_EQ(pm.active_adapters(), (std::vector<std::string>{"default"}));
  pm.set_adapter("other");
  const auto ids = torch::tensor({1, 2, 3}, torch::kLong);
  EXPECT_TRUE(peft_test::equal(net->emb->forward(ids), torch::tensor({{3.f, 4.f, 5.f}, {2.f, 2.f, 2.f}, {2.f, 2.f, 2.f}})));
  // Mixed batch: each row with its adapter's rows, "__base__" with the plain weight.
  net->eval();
  const auto rows = torch::tensor({{1, 2}, {1, 2}, {2, 3}}, torch::kLong);
  torch::Tensor out;
  {
    auto scope = pm.mixed_batch({"default", "__base__", "other"});
    out = net->emb->forward(rows);
  }
  EXPECT_TRUE(peft_test::equal(out[0], torch::ones({2, 3})));
  EXPECT_TRUE(peft_test::equal(out[1], torch::tensor({{3.f, 4.f, 5.f}, {6.f, 7.f, 8.f}})));
  EXPECT_TRUE(peft_test::equal(out[2], torch::full({2, 3}, 2.f)));
}

SEEDED_TEST(TrainableTokens, RefusalsLeaveTheModelUnchanged) {
  TokenNet net;
  const auto names = param_names(*net);
  auto expect_refused = [&](peft::LoraConfig c, const char* what) {
    try {
      peft::get_peft_model(net, c);
      ADD_FAILURE() << what << ": accepted";
    } catch (const peft::Error& e) {
      SCOPED_TRACE(e.what());
    }
    EXPECT_EQ(param_names(*net), names) << what;
  };
  expect_refused(tokens_config("[1, 2]"), "list form: looks for embed_tokens");
  expect_refused(tokens_config(R"({"nope": [1]})"), "module not found");
  expect_refused(tokens_config(R"({"emb": [6]})"), "index >= vocab");
  auto not_embedding = tokens_config(R"({"proj": [0]})");
  not_embedding.target_modules = {"emb"};
  expect_refused(not_embedding, "not an Embedding");
  auto lora_too = tokens_config(R"({"emb": [1]})");
  lora_too.target_modules = {"emb", "proj"};
  expect_refused(lora_too, "LoRA on the same module");
  auto mts_too = tokens_config(R"({"emb": [1]})");
  mts_too.modules_to_save = std::vector<std::string>{"emb"};
  expect_refused(mts_too, "modules_to_save on the same module");
  try {
    peft::get_peft_model(net, tokens_config(R"({"emb": [0, 6]})"));
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("index 6 is out of bounds for dimension 0 with size 6"), std::string::npos);
  }
}

SEEDED_TEST(TrainableTokens, TheTiedHeadOfTheReferenceModelsUsesTheSameRows) {
  for (const char* name : {"tiny-gpt2", "tiny-llama"}) {
    SCOPED_TRACE(name);
    auto model = peft::models::make_builtin(name, 3);
    model->eval();
    peft::LoraModelOptions opts;
    opts.plan.model_type = model->model_type();
    opts.plan.input_embeddings = model->model_type() == "gpt2" ? "wte" : "embed_tokens";
    peft::LoraConfig c;  // the model type's default targets, plus the list form of tokens
    c.trainable_token_indices = peft::JsonValue::parse("[7, 65]");
    auto pm = peft::get_peft_model(model, c, "default", opts);
    std::shared_ptr<peft::LoraLayer> emb;
    for (auto& [key, layer] : pm.lora_layers())
      if (layer->has_any_trainable_tokens()) emb = layer;
    ASSERT_TRUE(emb);
    {
      torch::NoGradGuard g;
      emb->trainable_tokens_delta("default").normal_();
    }
    const auto ids = torch::tensor({{7, 3, 65, 8}}, torch::kLong);
    torch::Tensor hidden;
    if (auto g2 = std::dynamic_pointer_cast<peft::models::GPT2LMHeadModelImpl>(model))
      hidden = g2->transformer(ids);
    else
      hidden = std::dynamic_pointer_cast<peft::models::LlamaForCausalLMImpl>(model)->model(ids);
    const auto logits = model->forward(ids);
    EXPECT_TRUE(peft_test::close(logits, torch::linear(hidden, emb->weight_for("default")), 0, 1e-5));
    EXPECT_TRUE(peft_test::not_close(logits, torch::linear(hidden, emb->base_weight())));
  }
}
