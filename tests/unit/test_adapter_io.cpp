// save_pretrained / load_adapter / from_pretrained (docs/file-format.md#adapter-files): PEFT's keys and
// layout, strict
// validation, and a model left as it was when an adapter does not fit.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "peft/format/adapter_keys.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace fs = std::filesystem;

namespace {

/// lin0 (10 -> hidden) -> relu -> lin1 (hidden -> 2).
struct Net : peft_test::Mlp {
  explicit Net(std::int64_t hidden = 20) : Mlp(peft_test::MlpOptions({10, hidden, 2})) {}
};

fs::path temp_dir(const std::string& name) { return peft_test::scratch_dir("io_" + name); }

peft::LoraConfig cfg(peft::ModuleSpec t) {
  peft::LoraConfig c;
  c.target_modules = std::move(t);
  c.r = 4;
  c.lora_alpha = 8;
  return c;
}

using peft_test::param_names;

}  // namespace

SEEDED_TEST(SavePretrained, WritesPeftKeysAndConfig) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg({"lin0", "lin1"}));
  const auto dir = temp_dir("keys");
  peft::save_pretrained(pm, dir);
  const auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  std::vector<std::string> keys;
  for (const auto& [k, t] : f.tensors) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"base_model.model.lin0.lora_A.weight", "base_model.model.lin0.lora_B.weight",
                                            "base_model.model.lin1.lora_A.weight", "base_model.model.lin1.lora_B.weight"}));
  ASSERT_EQ(f.metadata.size(), 1u);
  EXPECT_EQ(f.metadata[0], (std::pair<std::string, std::string>{"format", "pt"}));
  const auto c = peft::load_adapter_config(dir);
  EXPECT_TRUE(c.inference_mode);
  EXPECT_EQ(c.r, 4);
}

SEEDED_TEST(SavePretrained, OtherAdaptersGoToSubdirectoriesAndBiasAllSavesBiases) {
  Net net;
  auto c = cfg({"lin0"});
  c.bias = peft::Bias::all;
  auto pm = peft::get_peft_model(net, c);
  pm.add_adapter("second", cfg({"lin1"}));
  const auto dir = temp_dir("subdirs");
  peft::save_pretrained(pm, dir);
  EXPECT_TRUE(fs::exists(dir / "adapter_config.json"));
  EXPECT_TRUE(fs::exists(dir / "second" / "adapter_model.safetensors"));
  const auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  EXPECT_NE(f.find("base_model.model.lin0.base_layer.bias"), nullptr);
  // lin1 carries LoRA (of adapter "second"), so PEFT names its bias base_layer.bias too.
  EXPECT_NE(f.find("base_model.model.lin1.base_layer.bias"), nullptr);
  EXPECT_EQ(f.find("base_model.model.lin1.lora_A.weight"), nullptr);  // adapter "second"'s
}

SEEDED_TEST(SavePretrained, BiasAllWithModulesToSaveWritesTheTrainedCopysBiasOnce) {
  // The modules_to_save copy of lin1 is saved under lin1.weight / lin1.bias (docs/file-format.md);
  // bias="all" must not add the frozen original's bias under the same key again.
  torch::manual_seed(3);
  Net net;
  auto c = cfg({"lin0"});
  c.bias = peft::Bias::all;
  c.modules_to_save = std::vector<std::string>{"lin1"};
  auto pm = peft::get_peft_model(net, c);
  {
    torch::NoGradGuard no_grad;
    net->lin1->trainable_copy("default").base_bias().fill_(0.25);
  }
  const auto dir = temp_dir("bias_all_modules_to_save");
  peft::save_pretrained(pm, dir);
  const auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  std::vector<std::string> keys;
  for (const auto& [k, t] : f.tensors) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"base_model.model.lin0.base_layer.bias", "base_model.model.lin0.lora_A.weight",
                                            "base_model.model.lin0.lora_B.weight", "base_model.model.lin1.bias",
                                            "base_model.model.lin1.weight"}));
  ASSERT_NE(f.find("base_model.model.lin1.bias"), nullptr);
  EXPECT_TRUE(torch::equal(*f.find("base_model.model.lin1.bias"), torch::full({2}, 0.25)));
  // ... and loads back into the trained copy.
  Net other;
  auto again = peft::from_pretrained(other.ptr(), dir);
  EXPECT_TRUE(torch::equal(other->lin1->trainable_copy("default").base_bias(), torch::full({2}, 0.25)));
}

SEEDED_TEST(SavePretrained, EverySavedKeyParsesBackByTheSameKeyRules) {
  // save_pretrained's names (detail::adapter_key_map) and peft-merge's parsing share format/adapter_keys.hpp.
  Net net;
  auto c = cfg({"lin0"});
  c.lora_bias = true;
  c.bias = peft::Bias::all;
  c.modules_to_save = std::vector<std::string>{"lin1"};
  auto pm = peft::get_peft_model(net, c);
  auto dora = cfg({"lin0"});
  dora.use_dora = true;
  pm.add_adapter("dora", dora);
  auto parse_all = [&](const std::string& adapter) {
    std::vector<std::string> lora, other;
    for (const auto& [key, t] : peft::get_peft_model_state_dict(pm, adapter)) {
      EXPECT_TRUE(peft::adapter_keys::has_root(key)) << key;
      if (const auto parsed = peft::adapter_keys::parse_lora_key(key)) {
        EXPECT_EQ(peft::adapter_keys::lora_key(parsed->module, parsed->tensor), key);
        lora.push_back(parsed->module + "/" + peft::adapter_keys::suffix(parsed->tensor));
      } else {
        other.push_back(peft::adapter_keys::base_model_key(key));  // the base tensor it replaces
      }
    }
    std::sort(lora.begin(), lora.end());
    std::sort(other.begin(), other.end());
    return std::make_pair(lora, other);
  };
  const auto [lora, other] = parse_all("default");
  EXPECT_EQ(lora, (std::vector<std::string>{"lin0/lora_A.weight", "lin0/lora_B.bias", "lin0/lora_B.weight"}));
  EXPECT_EQ(other, (std::vector<std::string>{"lin0.bias", "lin1.bias", "lin1.weight"}));
  const auto [dora_lora, dora_other] = parse_all("dora");
  EXPECT_EQ(dora_lora, (std::vector<std::string>{"lin0/lora_A.weight", "lin0/lora_B.weight", "lin0/lora_magnitude_vector"}));
  EXPECT_TRUE(dora_other.empty());
}

SEEDED_TEST(LoadAdapter, RoundTripGivesIdenticalOutputs) {
  torch::manual_seed(1);
  Net net;
  auto pm = peft::get_peft_model(net, cfg({"lin0", "lin1"}));
  peft_test::randomise_lora_B(pm);
  auto x = torch::randn({4, 10});
  auto y = net(x);
  const auto dir = temp_dir("roundtrip");
  peft::save_pretrained(pm, dir);
  pm.unload();
  auto again = peft::from_pretrained(net.ptr(), dir);
  EXPECT_TRUE(peft_test::equal(net(x), y));
  EXPECT_EQ(again.get_nb_trainable_parameters().first, 0);  // frozen unless is_trainable
  peft::LoraModel trainable(net.ptr(), peft::LoraModelOptions{});
  peft::load_adapter(trainable, dir, "t", /*is_trainable=*/true);
  trainable.set_adapter("t");
  EXPECT_GT(trainable.get_nb_trainable_parameters().first, 0);
}

SEEDED_TEST(LoadAdapter, AWrongBaseModelNamesTheKeyAndBothShapesAndChangesNothing) {
  Net small;
  auto pm = peft::get_peft_model(small, cfg({"lin0"}));
  const auto dir = temp_dir("wrong_base");
  peft::save_pretrained(pm, dir);
  Net wide(32);
  peft::LoraModel target(wide.ptr(), peft::LoraModelOptions{});
  const auto before = param_names(*wide);
  try {
    peft::load_adapter(target, dir, "default");
    FAIL() << "accepted";
  } catch (const peft::SerializationError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("base_model.model.lin0.lora_B.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("[20, 4]"), std::string::npos) << m;
    EXPECT_NE(m.find("[32, 4]"), std::string::npos) << m;
  }
  EXPECT_EQ(param_names(*wide), before);
  EXPECT_TRUE(target.adapter_names().empty());
}

SEEDED_TEST(LoadAdapter, MissingAndUnexpectedKeysAreListed) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg({"lin0"}));
  const auto dir = temp_dir("keys_off");
  peft::save_pretrained(pm, dir);
  auto f = peft::load_safetensors(dir / "adapter_model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> kept;
  for (auto& [k, t] : f.tensors)
    if (k.find("lora_B") == std::string::npos) kept.emplace_back(k, t);
  kept.emplace_back("base_model.model.lin9.lora_A.weight", torch::zeros({4, 10}));
  peft::save_safetensors(dir / "adapter_model.safetensors", kept);
  Net other;
  peft::LoraModel target(other.ptr(), peft::LoraModelOptions{});
  try {
    peft::load_adapter(target, dir, "default");
    FAIL();
  } catch (const peft::SerializationError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Missing keys: base_model.model.lin0.lora_B.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("Unexpected keys: base_model.model.lin9.lora_A.weight"), std::string::npos) << m;
  }
  EXPECT_EQ(param_names(*other), (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin1.weight", "lin1.bias"}));
}

SEEDED_TEST(LoadAdapter, RefusesInitsThatRewroteTheBase) {
  Net net;
  auto pm = peft::get_peft_model(net, cfg({"lin0"}));
  const auto dir = temp_dir("pissa");
  peft::save_pretrained(pm, dir);
  auto c = peft::load_adapter_config(dir);
  c.init_lora_weights = "pissa";
  peft::save_adapter_config(c, dir);
  peft::LoraModel target(net.ptr(), peft::LoraModelOptions{});
  EXPECT_THROW(peft::load_adapter(target, dir, "p"), peft::ConfigError);
}

SEEDED_TEST(LoadCheckpoint, ReadsASingleFileOrAShardedIndexByParameterName) {
  torch::manual_seed(2);
  Net source;
  const auto dir = temp_dir("hf_single");
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (const auto& p : source->named_parameters()) all.emplace_back(p.key(), p.value().detach());
  peft::save_safetensors(dir / "model.safetensors", all);
  Net target;
  peft::load_checkpoint(*target, dir);
  auto x = torch::randn({3, 10});
  EXPECT_TRUE(peft_test::equal(target(x), source(x)));

  const auto sharded = temp_dir("hf_sharded");
  peft::save_safetensors(sharded / "model-00001-of-00002.safetensors", {all[0], all[1]});
  peft::save_safetensors(sharded / "model-00002-of-00002.safetensors", {all[2], all[3]});
  std::ofstream(sharded / "model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"lin0.weight": "model-00001-of-00002.safetensors",
            "lin0.bias": "model-00001-of-00002.safetensors", "lin1.weight": "model-00002-of-00002.safetensors",
            "lin1.bias": "model-00002-of-00002.safetensors"}})";
  Net target2;
  peft::load_checkpoint(*target2, sharded);
  EXPECT_TRUE(peft_test::equal(target2(x), source(x)));
}

SEEDED_TEST(LoadCheckpoint, MismatchesChangeNothingAndNameTheKeys) {
  Net source(32);
  const auto dir = temp_dir("hf_wrong");
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (const auto& p : source->named_parameters()) all.emplace_back(p.key(), p.value().detach());
  peft::save_safetensors(dir / "model.safetensors", all);
  Net target;
  auto w0 = target->lin0->weight.clone();
  try {
    peft::load_checkpoint(*target, dir);
    FAIL();
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("lin0.weight"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(peft_test::equal(target->lin0->weight, w0));
  peft::save_safetensors(dir / "model.safetensors", {all[0], all[1], {"extra.weight", torch::zeros({1})}});
  Net narrow(32);
  EXPECT_THROW(peft::load_checkpoint(*narrow, dir), peft::SerializationError);
  const auto report = peft::load_checkpoint(*narrow, dir, /*strict=*/false);
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"extra.weight"}));
  EXPECT_EQ(report.missing, (std::vector<std::string>{"lin1.bias", "lin1.weight"}));
}
