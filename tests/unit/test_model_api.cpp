// PEFT's model API: get_layer_status / get_model_status, set_requires_grad, hotswap_adapter,
// LoRA+, save_pretrained options, save_model / state_dict (docs/lifecycle.md, docs/file-format.md).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/io/adapters.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/hotswap.hpp"
#include "peft/io/save_model.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/train/loraplus.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

peft_test::Mlp mlp() { return peft_test::Mlp(peft_test::MlpOptions({4, 3, 2})); }

peft::LoraConfig targets(std::vector<std::string> t, std::int64_t r = 2, long long alpha = 4) {
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::move(t));
  c.r = r;
  c.lora_alpha = alpha;
  return c;
}

std::vector<std::string> keys_of(const std::vector<std::pair<std::string, torch::Tensor>>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.first);
  return out;
}

}  // namespace

SEEDED_TEST(ModelStatus, ReportsLayersAndAggregatesIrregularValues) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0", "lin1"}));
  pm.add_adapter("other", targets({"lin0"}));
  auto layers = pm.get_layer_status();
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0].name, "lin0");
  EXPECT_EQ(layers[0].module_type, "lora.Linear");
  EXPECT_EQ(layers[0].available_adapters, (std::vector<std::string>{"default", "other"}));
  EXPECT_EQ(layers[0].requires_grad.at("default"), peft::Tristate::True);
  EXPECT_EQ(layers[0].requires_grad.at("other"), peft::Tristate::False);
  EXPECT_EQ(layers[0].devices.at("default"), std::vector<std::string>{"cpu"});
  auto s = pm.get_model_status();
  EXPECT_EQ(s.adapter_model_type, "LoraModel");
  EXPECT_EQ(s.base_model_type, "Mlp");
  EXPECT_EQ(s.num_adapter_layers, 2);
  EXPECT_EQ(s.peft_types.at("other"), "LORA");
  EXPECT_EQ(s.enabled, peft::Tristate::True);
  ASSERT_TRUE(s.active_adapters);
  EXPECT_EQ(*s.active_adapters, std::vector<std::string>{"default"});
  EXPECT_EQ(s.available_adapters, (std::vector<std::string>{"default", "other"}));
  // Merge on one layer only: merged_adapters becomes "irregular".
  m->lin0->merge(false, {"default"});
  EXPECT_FALSE(pm.get_model_status().merged_adapters.has_value());
  m->lin1->merge(false, {"default"});
  EXPECT_EQ(*pm.get_model_status().merged_adapters, std::vector<std::string>{"default"});
  pm.unmerge_adapter();
  // requires_grad of one adapter differing between layers: "irregular".
  m->lin1->lora_A("default")->weight.set_requires_grad(false);
  EXPECT_EQ(pm.get_layer_status()[1].requires_grad.at("default"), peft::Tristate::Irregular);
  EXPECT_EQ(pm.get_model_status().requires_grad.at("default"), peft::Tristate::Irregular);
  {
    auto off = pm.disable_adapter();
    EXPECT_EQ(pm.get_model_status().enabled, peft::Tristate::False);
  }
}

SEEDED_TEST(ModelStatus, NoAdapterLayersIsAnError) {
  auto m = mlp();
  peft::LoraModel pm(m.ptr(), peft::LoraModelOptions{});
  EXPECT_THROW(pm.get_layer_status(), peft::Error);
}

SEEDED_TEST(SetRequiresGrad, UnfreezesAnInactiveAdapterAndRejectsUnknownNames) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0"}));
  pm.add_adapter("other", targets({"lin0"}));
  EXPECT_FALSE(m->lin0->lora_A("other")->weight.requires_grad());
  pm.set_requires_grad({"other"});
  EXPECT_TRUE(m->lin0->lora_A("other")->weight.requires_grad());
  EXPECT_TRUE(m->lin0->lora_B("other")->weight.requires_grad());
  pm.set_requires_grad({"default"}, false);
  EXPECT_FALSE(m->lin0->lora_A("default")->weight.requires_grad());
  EXPECT_THROW(pm.set_requires_grad({"nope"}), peft::Error);
}

SEEDED_TEST(Hotswap, SwapsWeightsInPlaceKeepingTensorIdentity) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0", "lin1"}, 2, 4));
  peft_test::randomise_lora_B(pm);
  const auto x = torch::randn({3, 4});
  // The second adapter: rank 1, alpha 3, on lin0 only; made in another model and saved.
  auto m2 = mlp();
  { torch::NoGradGuard g; for (const auto& p : m2->named_parameters()) p.value().copy_(m->named_parameters()[p.key()]); }
  auto pm2 = peft::get_peft_model(m2, targets({"lin0"}, 1, 3));
  peft_test::randomise_lora_B(pm2);
  const auto want = m2(x);
  const auto dir = peft_test::scratch_dir("hotswap_b");
  peft::save_pretrained(pm2, dir);

  peft::prepare_for_hotswap(pm, 4);  // pad to rank 4: same outputs
  const auto A = m->lin0->lora_A("default")->weight;
  const void* storage = A.data_ptr();
  EXPECT_EQ(A.size(0), 4);
  peft::hotswap_adapter(pm, dir, "default");
  EXPECT_TRUE(m->lin0->lora_A("default")->weight.is_same(A));
  EXPECT_EQ(A.data_ptr(), storage);  // no re-allocation
  EXPECT_TRUE(peft_test::close(m(x), want, 1e-6, 1e-6));
  EXPECT_EQ(m->lin0->settings("default").scaling, 3.0);
  EXPECT_TRUE(peft_test::equal(m->lin1->lora_B("default")->weight, torch::zeros({2, 4})));  // lin1: zeroed
  // Saved again: the new adapter's own rank and layers.
  const auto sd = peft::get_peft_model_state_dict(pm);
  EXPECT_EQ(keys_of(sd), (std::vector<std::string>{"base_model.model.lin0.lora_A.weight",
                                                   "base_model.model.lin0.lora_B.weight"}));
  EXPECT_EQ(sd[0].second.size(0), 1);
}

SEEDED_TEST(Hotswap, IncompatibleConfigOrLargerRankIsRefusedBeforeAnyChange) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0"}, 2, 4));
  const auto before = m->lin0->lora_A("default")->weight.clone();
  auto cfg = targets({"lin0"}, 2, 4);
  cfg.use_rslora = true;
  EXPECT_THROW(peft::hotswap_adapter_from_state_dict(pm, {}, "default", cfg), peft::ConfigError);
  const std::vector<std::pair<std::string, torch::Tensor>> big{
      {"base_model.model.lin0.lora_A.weight", torch::ones({3, 4})},
      {"base_model.model.lin0.lora_B.weight", torch::ones({3, 3})}};
  EXPECT_THROW(peft::hotswap_adapter_from_state_dict(pm, big, "default", targets({"lin0"}, 3, 4)),
               peft::SerializationError);
  const std::vector<std::pair<std::string, torch::Tensor>> extra{{"base_model.model.lin1.weight", torch::ones({2, 3})}};
  EXPECT_THROW(peft::hotswap_adapter_from_state_dict(pm, extra, "default", targets({"lin0"}, 2, 4)),
               peft::SerializationError);
  EXPECT_TRUE(peft_test::equal(m->lin0->lora_A("default")->weight, before));
}

SEEDED_TEST(LoraPlus, BFactorsAndBiasesLearnRatioTimesFaster) {
  auto m = mlp();
  peft::LoraConfig c = targets({"lin0"});
  c.bias = peft::Bias::lora_only;
  c.lora_bias = false;
  auto pm = peft::get_peft_model(m, c);
  const auto g = peft::loraplus_parameter_groups(*m.ptr());
  EXPECT_EQ(g.names[0], std::vector<std::string>{"lin0.lora_A.default.weight"});
  EXPECT_TRUE(g.names[1].empty());  // PEFT's embedding group is always empty
  EXPECT_EQ(g.names[2], std::vector<std::string>{"lin0.lora_B.default.weight"});
  EXPECT_EQ(g.names[3], std::vector<std::string>{"lin0.bias"});
  peft::LoraPlusOptions plus;
  plus.loraplus_lr_ratio = 4;
  plus.loraplus_weight_decay = 0.1;
  auto opt = peft::create_loraplus_optimizer(pm, torch::optim::AdamWOptions(0.01), plus);
  ASSERT_EQ(opt->param_groups().size(), 3u);
  auto o = [&](std::size_t i) { return static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[i].options()); };
  EXPECT_DOUBLE_EQ(o(0).lr(), 0.01);
  EXPECT_DOUBLE_EQ(o(0).weight_decay(), 0.1);
  EXPECT_DOUBLE_EQ(o(1).lr(), 0.04);
  EXPECT_DOUBLE_EQ(o(2).lr(), 0.04);
  EXPECT_DOUBLE_EQ(o(2).weight_decay(), 0.0);
}

/// embed_tokens -> proj -> lm_head; `owner`: names its embeddings like a transformers model.
struct LmImpl : torch::nn::Module {
  LmImpl()
      : embed_tokens(register_module("embed_tokens", torch::nn::Embedding(6, 4))),
        proj(register_module("proj", peft::Linear(4, 4))),
        lm_head(register_module("lm_head", peft::Linear(4, 6))) {}
  torch::nn::Embedding embed_tokens;
  peft::Linear proj, lm_head;
};
struct OwnerLmImpl : LmImpl, peft::EmbeddingOwner {
  std::string input_embeddings_key() const override { return "embed_tokens"; }
  std::string output_embeddings_key() const override { return "lm_head"; }
};

SEEDED_TEST(SavePretrained, SelectedAdaptersAndEmbeddingLayers) {
  auto lm = std::make_shared<OwnerLmImpl>();
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"proj", "lm_head"});
  auto pm = peft::get_peft_model(std::shared_ptr<torch::nn::Module>(lm), c);
  pm.add_adapter("b", targets({"proj"}));
  const auto dir = peft_test::scratch_dir("save_selected");
  peft::ScopedWarningCapture warnings;
  peft::save_pretrained(pm, dir, {"b"});  // only b
  EXPECT_FALSE(std::filesystem::exists(dir / "adapter_model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir / "b" / "adapter_model.safetensors"));
  EXPECT_THROW(peft::save_pretrained(pm, dir, {"nope"}), peft::Error);
  // "auto": lm_head is targeted, so the LoRA-carrying embedding layer's base weight is saved.
  peft::SaveOptions autos;
  autos.save_embedding_layers = peft::SaveEmbeddingLayers::Auto;
  peft::save_pretrained(pm, dir, {"default"}, autos);
  const auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  EXPECT_NE(f.find("base_model.model.lm_head.base_layer.weight"), nullptr);
  EXPECT_EQ(f.find("base_model.model.embed_tokens.weight"), nullptr);  // not targeted: PEFT skips it
  peft::SaveOptions no;
  no.save_embedding_layers = peft::SaveEmbeddingLayers::No;
  peft::save_pretrained(pm, dir, {"default"}, no);
  EXPECT_EQ(peft::load_safetensors(dir / "adapter_model.safetensors").find("base_model.model.lm_head.base_layer.weight"),
            nullptr);
  peft::SaveOptions yes;
  yes.save_embedding_layers = peft::SaveEmbeddingLayers::Yes;
  peft::save_pretrained(pm, dir, {"b"}, yes);  // b targets no embedding: both embeddings saved
  const auto fb = peft::load_safetensors(dir / "b" / "adapter_model.safetensors");
  EXPECT_NE(fb.find("base_model.model.embed_tokens.weight"), nullptr);
  EXPECT_NE(fb.find("base_model.model.lm_head.base_layer.weight"), nullptr);
}

SEEDED_TEST(SavePretrained, APlainModuleSavesNoEmbeddingLayersLikePeft) {
  auto lm = std::make_shared<LmImpl>();  // no get_input_embeddings: PEFT saves none, even for lm_head
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"proj", "lm_head"});
  auto pm = peft::get_peft_model(std::shared_ptr<torch::nn::Module>(lm), c);
  const auto dir = peft_test::scratch_dir("save_plain_embeddings");
  peft::save_pretrained(pm, dir);  // the default, Auto
  const auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  EXPECT_EQ(f.find("base_model.model.lm_head.base_layer.weight"), nullptr);
  EXPECT_EQ(f.tensors.size(), 4u);  // proj and lm_head: lora_A, lora_B
  peft::SaveOptions yes;
  yes.save_embedding_layers = peft::SaveEmbeddingLayers::Yes;
  try {
    peft::save_pretrained(pm, peft_test::scratch_dir("save_plain_yes"), {}, yes);
    FAIL() << "save_embedding_layers=Yes on a plain module saved";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("EmbeddingOwner"), std::string::npos) << e.what();
  }
}

SEEDED_TEST(SaveModel, MergedModelRoundTripsThroughLoadCheckpointAlsoSharded) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0"}));
  peft_test::randomise_lora_B(pm);
  const auto x = torch::randn({2, 4});
  const auto want = m(x);
  auto merged = pm.merge_and_unload();
  EXPECT_EQ(keys_of(peft::state_dict(*merged)),
            (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin1.weight", "lin1.bias"}));
  for (std::int64_t shard : {0, 40}) {
    const auto dir = peft_test::scratch_dir("save_model_" + std::to_string(shard));
    peft::SaveModelOptions o;
    o.max_shard_size = shard;
    peft::save_model(*merged, dir, o);
    EXPECT_EQ(std::filesystem::exists(dir / "model.safetensors.index.json"), shard > 0);
    auto fresh = mlp();
    peft::load_checkpoint(*fresh, dir);
    EXPECT_TRUE(peft_test::close(fresh(x), want, 1e-6, 1e-6));
  }
}

SEEDED_TEST(FromPretrained, TakesAModuleHolder) {
  auto m = mlp();
  auto pm = peft::get_peft_model(m, targets({"lin0"}));
  const auto dir = peft_test::scratch_dir("from_pretrained_holder");
  peft::save_pretrained(pm, dir);
  auto fresh = mlp();
  auto loaded = peft::from_pretrained(fresh, dir);
  EXPECT_TRUE(fresh->lin0->has_adapter("default"));
}

SEEDED_TEST(MergeAdapter, WarnsLikePeftWhenATiedEmbeddingCarriesAnAdapter) {
  auto model = peft::models::make_builtin("tiny-llama");  // tie_word_embeddings = true
  ASSERT_TRUE(model->tie_word_embeddings());
  EXPECT_EQ(model->input_embeddings_key(), "model.embed_tokens");
  EXPECT_EQ(model->output_embeddings_key(), "");  // tied: no lm_head module
  auto warned = [](peft::LoraModel& pm) {
    peft::ScopedWarningCapture w;
    pm.merge_adapter();
    pm.unmerge_adapter();
    for (const auto& m : w.messages())
      if (m.find("tied_target_modules=['model.embed_tokens']") != std::string::npos) return true;
    return false;
  };
  auto pm = peft::get_peft_model(std::shared_ptr<torch::nn::Module>(model), targets({"q_proj"}));
  EXPECT_FALSE(warned(pm));  // no embedding among the targets
  pm.add_adapter("emb", targets({"embed_tokens"}));
  pm.set_adapter(std::string("emb"));
  EXPECT_TRUE(warned(pm));
}
