// modules_to_save for any module type (value-swapped copies), one copy per active adapter, one
// error naming every refused module, refused config fields, layer_replication
// (docs/lifecycle.md "modules_to_save", docs/config.md "Fields peft-cpp refuses").

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/adapters.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/tuner/weighted_adapter.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

/// lin (peft::Linear 4 -> 3) -> norm (stock LayerNorm, member-held) -> head (stock Linear 3 -> 2).
struct NetImpl : torch::nn::Module {
  NetImpl()
      : lin(register_module("lin", peft::Linear(4, 3))),
        norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({3})))),
        head(register_module("head", torch::nn::Linear(3, 2))) {}
  torch::Tensor forward(const torch::Tensor& x) { return head(norm(lin(x))); }
  peft::Linear lin;
  torch::nn::LayerNorm norm;
  torch::nn::Linear head;
};
TORCH_MODULE(Net);

peft::LoraConfig cfg(std::vector<std::string> save = {"norm"}) {
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"lin"});
  c.r = 2;
  c.lora_alpha = 2;
  c.modules_to_save = std::move(save);
  return c;
}

}  // namespace

SEEDED_TEST(ModulesToSaveAnyModule, StockLayerNormIsSwappedByValueAndKeepsItsTensors) {
  Net net;
  const auto weight = net->norm->weight;  // the member's tensor: must stay the same object
  auto x = torch::randn({5, 4});
  auto pm = peft::get_peft_model(net, cfg());
  EXPECT_TRUE(net->norm->weight.is_same(weight));
  EXPECT_TRUE(weight.requires_grad());           // the active copy trains
  EXPECT_FALSE(net->head->weight.requires_grad());
  // PEFT counts original + copy: LoRA 2*4 + 3*2 = 14, copy 6; all = 15 + 6 + 8 (head) + 14 + 6.
  EXPECT_EQ(pm.get_nb_trainable_parameters(), (std::pair<std::int64_t, std::int64_t>{20, 49}));
  torch::Tensor base;
  {
    auto off = pm.disable_adapter();
    base = net(x);
  }
  { torch::NoGradGuard g; weight.fill_(2.0); }  // "train" the copy: scale 2 instead of 1
  const auto trained = net(x);
  EXPECT_TRUE(peft_test::not_close(trained, base));
  {
    auto off = pm.disable_adapter();  // the original values are back, in the same tensor
    EXPECT_TRUE(peft_test::equal(weight, torch::ones({3})));
    EXPECT_TRUE(peft_test::close(net(x), base, 1e-6, 1e-6));
  }
  EXPECT_TRUE(peft_test::equal(weight, torch::full({3}, 2.0)));
  pm.merge_and_unload();  // keeps the active copy, like PEFT
  EXPECT_TRUE(peft_test::equal(net->norm->weight, torch::full({3}, 2.0)));
  EXPECT_TRUE(net->norm->weight.is_same(weight));
}

SEEDED_TEST(ModulesToSaveAnyModule, EachAdapterHasItsCopyAndSetAdapterSwapsThem) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg());
  pm.add_adapter("b", cfg());
  { torch::NoGradGuard g; net->norm->weight.fill_(3.0); }  // default's copy
  pm.set_adapter("b");  // b's copy is the original (PEFT deep-copies the original module)
  EXPECT_TRUE(peft_test::equal(net->norm->weight, torch::ones({3})));
  pm.set_adapter("default");
  EXPECT_TRUE(peft_test::equal(net->norm->weight, torch::full({3}, 3.0)));
  // Saved under PEFT's keys: base_model.model.norm.weight / .bias, per adapter.
  auto sd = peft::get_peft_model_state_dict(pm, "b");
  std::vector<std::string> keys;
  for (const auto& [k, t] : sd) keys.push_back(k);
  EXPECT_NE(std::find(keys.begin(), keys.end(), "base_model.model.norm.weight"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "base_model.model.norm.bias"), keys.end());
  for (const auto& [k, t] : sd) {
    if (k == "base_model.model.norm.weight") {
      EXPECT_TRUE(peft_test::equal(t, torch::ones({3})));
    }
  }
  pm.delete_adapter("default");  // its live copy goes; b becomes active (PEFT's rule) and live
  EXPECT_EQ(pm.active_adapters(), std::vector<std::string>{"b"});
  EXPECT_TRUE(peft_test::equal(net->norm->weight, torch::ones({3})));
  pm.unload();
  EXPECT_TRUE(net->norm->weight.requires_grad());
}

SEEDED_TEST(ModulesToSaveAnyModule, SaveAndLoadRoundTripThroughAFreshModel) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg({"norm", "head"}));
  peft_test::randomise_lora_B(pm);
  { torch::NoGradGuard g; net->norm->bias.fill_(0.5); net->head->weight.mul_(3.0); }
  const auto x = torch::randn({2, 4});
  const auto want = net(x);
  const auto dir = peft_test::scratch_dir("mts_any_roundtrip");
  peft::save_pretrained(pm, dir);
  torch::manual_seed(0);
  Net fresh;
  {
    torch::NoGradGuard g;  // same base weights as `net` before training
    for (const auto& p : fresh->named_parameters()) p.value().copy_(net->named_parameters()[p.key()]);
    auto off = pm.disable_adapter();
    for (const auto& p : fresh->named_parameters()) p.value().copy_(net->named_parameters()[p.key()]);
  }
  auto loaded = peft::from_pretrained(fresh, dir);
  EXPECT_TRUE(peft_test::close(fresh(x), want, 1e-6, 1e-6));
}

SEEDED_TEST(ModulesToSaveAnyModule, MixedBatchThroughASwappedModuleIsRefused) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg());
  net->eval();
  try {
    auto scope = pm.mixed_batch({"default", "__base__"});
    FAIL() << "expected an error";
  } catch (const peft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Mixed batching is only supported"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("`norm`"), std::string::npos) << e.what();
  }
}

SEEDED_TEST(ModulesToSaveAnyModule, OneErrorNamesEveryRefusedModule) {
  // Two stale stock Linear targets and a ModuleList in modules_to_save: one error, all three named.
  struct StaleImpl : torch::nn::Module {
    StaleImpl()
        : a(register_module("a", torch::nn::Linear(3, 3))),
          b(register_module("b", torch::nn::Linear(3, 3))),
          blocks(register_module("blocks", torch::nn::ModuleList(torch::nn::Linear(3, 3)))) {}
    torch::nn::Linear a, b;
    torch::nn::ModuleList blocks;
  };
  auto m = std::make_shared<StaleImpl>();
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"a", "b"});
  c.modules_to_save = std::vector<std::string>{"blocks"};
  const auto before = peft_test::param_names(*m);
  try {
    peft::get_peft_model(std::shared_ptr<torch::nn::Module>(m), c);
    FAIL() << "expected UnsupportedModuleError";
  } catch (const peft::UnsupportedModuleError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("3 modules are refused"), std::string::npos) << msg;
    EXPECT_NE(msg.find("target `a`"), std::string::npos) << msg;
    EXPECT_NE(msg.find("target `b`"), std::string::npos) << msg;
    EXPECT_NE(msg.find("modules_to_save `blocks`"), std::string::npos) << msg;
  }
  EXPECT_EQ(peft_test::param_names(*m), before);
}

SEEDED_TEST(ModulesToSaveAnyModule, TiedTensorsCannotBeSwappedByValue) {
  struct OutImpl : torch::nn::Module {  // holds the embedding's tensor (HF's tie_word_embeddings)
    explicit OutImpl(const torch::Tensor& w) { weight = register_parameter("weight", w); }
    torch::Tensor weight;
  };
  struct TiedImpl : torch::nn::Module {
    TiedImpl()
        : lin(register_module("lin", peft::Linear(4, 4))),
          emb(register_module("emb", torch::nn::Embedding(5, 4))),
          out(register_module("out", std::make_shared<OutImpl>(emb->weight))) {}
    peft::Linear lin;
    torch::nn::Embedding emb;
    std::shared_ptr<OutImpl> out;
  };
  auto m = std::make_shared<TiedImpl>();
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"lin"});
  c.modules_to_save = std::vector<std::string>{"emb"};
  try {
    peft::get_peft_model(std::shared_ptr<torch::nn::Module>(m), c);
    FAIL() << "expected UnsupportedModuleError";
  } catch (const peft::UnsupportedModuleError& e) {
    EXPECT_NE(std::string(e.what()).find("also `out.weight`"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(m->lin->adapter_names().empty());
}

SEEDED_TEST(SeveralActiveAdapters, ModulesToSaveOfTwoActiveAdaptersIsRefusedLikePeft) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg());
  pm.add_adapter("b", cfg());
  pm.add_adapter("plain", cfg({}));  // no modules_to_save: may be active with either
  try {
    pm.set_adapter(std::vector<std::string>{"default", "b"});
    FAIL() << "expected an error";
  } catch (const peft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Only one adapter can be set at a time for modules_to_save"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("`norm`"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pm.active_adapters(), std::vector<std::string>{"default"});  // unchanged
  pm.set_adapter(std::vector<std::string>{"plain", "b"});                  // one copy: fine
  EXPECT_EQ(pm.get_layer_status().back().active_adapters, std::vector<std::string>{"b"});
  EXPECT_THROW(peft::add_weighted_adapter(pm, {"default", "b"}, {1.0, 1.0}, "mix"), peft::Error);
}

SEEDED_TEST(SeveralActiveAdapters, InLayerCopiesFollowTheSameRule) {
  peft_test::Mlp mlp(peft_test::MlpOptions({4, 3, 2}));
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"lin0"});
  c.modules_to_save = std::vector<std::string>{"lin1"};
  auto pm = peft::get_peft_model(mlp, c);
  pm.add_adapter("b", c);
  EXPECT_THROW(pm.set_adapter(std::vector<std::string>{"default", "b"}), peft::Error);
}

TEST(UnsupportedFields, EachFieldIsRefusedByNameAndNothingChanges) {
  struct Case {
    const char* field;
    std::function<void(peft::LoraConfig&)> set;
  };
  const std::vector<Case> cases = {
      {"alora_invocation_tokens", [](peft::LoraConfig& c) { c.alora_invocation_tokens = std::vector<std::int64_t>{1, 2}; }},
      {"use_qalora", [](peft::LoraConfig& c) { c.use_qalora = true; }},
      {"arrow_config", [](peft::LoraConfig& c) { c.arrow_config = peft::JsonValue::object(); }},
      {"velora_config", [](peft::LoraConfig& c) { c.velora_config = peft::JsonValue::object(); }},
      {"monteclora_config", [](peft::LoraConfig& c) { c.monteclora_config = peft::JsonValue::object(); }},
      {"use_bdlora", [](peft::LoraConfig& c) { c.use_bdlora = peft::JsonValue::object(); }},
      {"megatron_config", [](peft::LoraConfig& c) {
         auto o = peft::JsonValue::object();
         o.set("tensor_model_parallel_size", std::int64_t{2});
         c.megatron_config = o;
       }},
      {"kasa_config", [](peft::LoraConfig& c) {
         auto o = peft::JsonValue::object();
         o.set("beta", 0.001);
         c.extra_fields.emplace_back("kasa_config", o);
       }},
  };
  for (const auto& k : cases) {
    Net net;
    auto c = cfg({});
    k.set(c);
    try {
      peft::get_peft_model(net, c);
      ADD_FAILURE() << k.field << ": expected a ConfigError";
    } catch (const peft::ConfigError& e) {
      EXPECT_EQ(e.field(), k.field);
      EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(net->lin->adapter_names().empty()) << k.field;
  }
}

TEST(UnsupportedFields, UnsetNewerKeysAndUntiedWeightTyingAreAccepted) {
  Net net;
  auto c = cfg({});
  c.extra_fields.emplace_back("kasa_config", peft::JsonValue());
  c.extra_fields.emplace_back("some_flag", peft::JsonValue(false));
  c.ensure_weight_tying = true;  // nothing tied: PEFT only warns
  peft::ScopedWarningCapture warnings;
  EXPECT_NO_THROW(peft::get_peft_model(net, c));
}

TEST(UnsupportedFields, LoadAdapterRefusesAFileWithAnUnsupportedField) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg({}));
  const auto dir = peft_test::scratch_dir("unsupported_field_load");
  peft::save_pretrained(pm, dir);
  auto text = peft::read_text_file(dir / "adapter_config.json");
  text.replace(text.find("\"use_qalora\": false"), 19, "\"use_qalora\": true");
  peft::write_file_atomically(dir / "adapter_config.json", text);
  Net other;
  try {
    peft::from_pretrained(other, dir);
    FAIL() << "expected a ConfigError";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "use_qalora");
  }
}

namespace {
/// model.layers: ModuleList of 3 blocks, each a peft::Linear `proj` (2 -> 2) with a residual.
struct BlockImpl : torch::nn::Cloneable<BlockImpl> {
  BlockImpl() { reset(); }
  void reset() override { proj = register_module("proj", peft::Linear(2, 2)); }
  torch::Tensor forward(const torch::Tensor& x) { return x + proj(x); }
  peft::Linear proj{nullptr};
};
TORCH_MODULE(Block);
struct InnerImpl : torch::nn::Module {
  InnerImpl() : layers(register_module("layers", torch::nn::ModuleList(Block(), Block(), Block()))) {}
  torch::nn::ModuleList layers;
};
TORCH_MODULE(Inner);
struct DecoderImpl : torch::nn::Module {
  DecoderImpl() : model(register_module("model", Inner())) {}
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& l : *model->layers) x = l->as<BlockImpl>()->forward(x);
    return x;
  }
  Inner model;
};
TORCH_MODULE(Decoder);
}  // namespace

SEEDED_TEST(LayerReplication, ReplicatesRangesSharingBaseWeightsWithOwnAdapters) {
  Decoder dec;
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"proj"});
  c.r = 1;
  c.layer_replication = std::vector<std::array<std::int64_t, 2>>{{0, 2}, {1, 3}};  // [0, 1, 1, 2]
  const auto w1 = dec->model->layers[1]->as<BlockImpl>()->proj->weight.clone();
  auto pm = peft::get_peft_model(dec, c);
  ASSERT_EQ(dec->model->layers->size(), 4u);
  auto proj = [&](std::size_t i) { return dec->model->layers[i]->as<BlockImpl>()->proj; };
  EXPECT_TRUE(peft_test::equal(proj(1)->weight, w1));
  EXPECT_EQ(proj(1)->weight.data_ptr(), proj(2)->weight.data_ptr());  // shared storage
  EXPECT_TRUE(proj(2)->has_adapter("default"));
  EXPECT_FALSE(proj(1)->lora_A("default")->weight.is_same(proj(2)->lora_A("default")->weight));
  // 4 adapters of 2*1 + 1*2; the base counted once: 3 * (4 + 2) = 18.
  EXPECT_EQ(pm.get_nb_trainable_parameters(), (std::pair<std::int64_t, std::int64_t>{16, 34}));
  EXPECT_EQ(pm.targeted_module_names().back(), "model.layers.3.proj");
  EXPECT_THROW(pm.merge_adapter(), peft::Error);  // PEFT: cannot merge replicated layers
  EXPECT_THROW(pm.add_adapter("again", c), peft::ConfigError);
}

SEEDED_TEST(LayerReplication, IsAppliedOnLoadAndABadRangeInTheFileChangesNothing) {
  Decoder dec, fresh, other;
  {
    torch::NoGradGuard g;
    for (auto* d : {&fresh, &other}) {
      auto src = dec->named_parameters();
      for (auto& p : (*d)->named_parameters()) p.value().copy_(src[p.key()]);
    }
  }
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"proj"});
  c.r = 1;
  c.layer_replication = std::vector<std::array<std::int64_t, 2>>{{0, 2}, {1, 3}};
  auto pm = peft::get_peft_model(dec, c);
  {
    torch::NoGradGuard g;
    for (auto& p : dec->named_parameters())
      if (p.key().find("lora_") != std::string::npos) p.value().normal_();
  }
  const auto x = torch::randn({5, 2});
  const auto want = dec->forward(x);
  const auto dir = peft_test::scratch_dir("replication_load");
  peft::save_pretrained(pm, dir);
  auto loaded = peft::from_pretrained(fresh.ptr(), dir);
  ASSERT_EQ(fresh->model->layers->size(), 4u);
  EXPECT_TRUE(peft_test::close(fresh->forward(x), want, 0, 1e-6));
  // The same file with a range past the 3 layers: refused before the layer list grows.
  auto cfg = peft::JsonValue::parse(peft::read_text_file(dir / "adapter_config.json"));
  cfg.set("layer_replication", peft::JsonValue::parse("[[0, 2], [1, 9]]"));
  peft::write_file_atomically(dir / "adapter_config.json", cfg.dump(2));
  const auto names = peft_test::param_names(*other);
  try {
    peft::from_pretrained(other.ptr(), dir);
    ADD_FAILURE() << "a replication range past the model's layers was accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "layer_replication") << e.what();
  }
  EXPECT_EQ(other->model->layers->size(), 3u);
  EXPECT_EQ(peft_test::param_names(*other), names);
}

SEEDED_TEST(LayerReplication, BadRangeChangesNothing) {
  Decoder dec;
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"proj"});
  c.layer_replication = std::vector<std::array<std::int64_t, 2>>{{0, 4}};
  EXPECT_THROW(peft::get_peft_model(dec, c), peft::ConfigError);
  EXPECT_EQ(dec->model->layers->size(), 3u);
}
