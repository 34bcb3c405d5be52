// adapter_config.json reading and writing (docs/config.md#saving-the-config), against files PEFT wrote.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"
#include "peft/warnings.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) { return peft_test::scratch_dir(name); }

peft::JsonValue kwargs(const std::string& json) { return peft::JsonValue::parse(json); }

peft::ConfigError kwargs_error(const std::string& json) {
  try {
    peft::lora_config_from_json_value(kwargs(json), peft::ConfigSource::Kwargs);
  } catch (const peft::ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted " << json;
  return peft::ConfigError("", "", "", "");
}

std::vector<fs::path> adapter_config_files() {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(peft_test::fixtures_dir()))
    if (e.path().filename() == "adapter_config.json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(AdapterConfigJson, EveryFileWrittenByPeftIsReproducedByteForByte) {
  peft::ScopedWarningCapture quiet;
  const auto files = adapter_config_files();
  ASSERT_GT(files.size(), 10u) << "fixtures not found in " << peft_test::fixtures_dir();
  for (const auto& f : files) {
    const std::string text = peft::read_text_file(f);
    const peft::LoraConfig cfg = peft::load_adapter_config(f.parent_path());
    std::string ours = peft::to_json(cfg);
    // json.dumps writes no trailing newline; tolerate one added by an editor.
    std::string theirs = text;
    while (!theirs.empty() && theirs.back() == '\n') theirs.pop_back();
    EXPECT_EQ(ours, theirs) << f;
  }
}

TEST(AdapterConfigJson, WritesThe40KeysOfPeft020) {
  peft::LoraConfig c;
  c.target_modules = {"lin0"};
  const peft::JsonValue j = peft::to_json_value(c);
  EXPECT_EQ(j.as_object().size(), 40u);
  EXPECT_EQ(j.find("peft_type")->as_string(), "LORA");
  EXPECT_TRUE(j.find("loftq_config")->is_object());
  EXPECT_TRUE(j.find("loftq_config")->as_object().empty());
  EXPECT_EQ(j.find("lora_dropout")->dump(), "0.0");
  EXPECT_EQ(j.find("lora_alpha")->dump(), "8");
  EXPECT_EQ(j.find("runtime_config"), nullptr);
}

TEST(AdapterConfigJson, RoundTripKeepsEveryField) {
  peft::ScopedWarningCapture quiet;
  peft::LoraConfig c;
  c.task_type = peft::TaskType::CAUSAL_LM;
  c.r = 12;
  c.lora_alpha = 2.5;
  c.lora_dropout = 0.05;
  c.target_modules = {"q_proj", "v_proj"};
  c.exclude_modules = ".*layers\\.1\\..*";
  c.bias = peft::Bias::lora_only;
  c.use_rslora = true;
  c.modules_to_save = std::vector<std::string>{"lm_head"};
  c.init_lora_weights = "gaussian";
  c.layers_to_transform = {0, 2};
  c.layers_pattern = {"blocks", "layers"};
  c.rank_pattern.set("v_proj", 4);
  c.rank_pattern.set("^model.layers.0.self_attn.q_proj", 16);
  c.alpha_pattern.set("q_proj", 3.5);
  c.eva_config = peft::EvaConfig{};
  c.use_dora = true;
  c.alora_invocation_tokens = std::vector<std::int64_t>{1, 2};
  c.layer_replication = std::vector<std::array<std::int64_t, 2>>{{0, 2}, {1, 3}};
  c.target_parameters = std::vector<std::string>{"experts.w"};
  c.base_model_name_or_path = "meta-llama/Llama-3.2-1B";
  c.revision = "main";
  c.qalora_group_size = 32;
  c.validate();
  const std::string json = peft::to_json(c);
  const peft::LoraConfig back = peft::lora_config_from_json(json);
  EXPECT_EQ(peft::to_json(back), json);
  EXPECT_EQ(back.lora_alpha.value, 2.5);
  EXPECT_FALSE(back.lora_alpha.integral);
  EXPECT_EQ(back.layers_pattern->values, (std::vector<std::string>{"blocks", "layers"}));
  // Pattern maps come back in file (sorted) order, as PEFT reloads them.
  EXPECT_EQ(back.rank_pattern.entries().front().first, "^model.layers.0.self_attn.q_proj");
}

TEST(AdapterConfigJson, UnknownKeysOfANewerPeftAreKeptAndWarnedAbout) {
  peft::ScopedWarningCapture w;
  const auto cfg = peft::lora_config_from_json(
      R"({"peft_type": "LORA", "r": 4, "target_modules": ["lin0"], "future_option": {"a": [1, 2]}})");
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_NE(w.messages()[0].find("'future_option'"), std::string::npos);
  ASSERT_EQ(cfg.extra_fields.size(), 1u);
  const peft::JsonValue again = peft::JsonValue::parse(peft::to_json(cfg));
  ASSERT_NE(again.find("future_option"), nullptr);
  EXPECT_EQ(again.find("future_option")->dump(), R"({"a": [1, 2]})");
}

TEST(AdapterConfigJson, FileWithoutPeftTypeIsRejected) {
  try {
    peft::lora_config_from_json(R"({"r": 4, "target_modules": ["lin0"]})");
    FAIL() << "accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "peft_type");
    EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);
  }
}

TEST(AdapterConfigJson, OtherPeftTypesAreRejected) {
  EXPECT_THROW(peft::lora_config_from_json(R"({"peft_type": "IA3"})"), peft::ConfigError);
}

TEST(AdapterConfigJson, RuntimeConfigIsDroppedWithAWarning) {
  peft::ScopedWarningCapture w;
  const auto cfg = peft::lora_config_from_json(
      R"({"peft_type": "LORA", "runtime_config": {"ephemeral_gpu_offload": false}})");
  EXPECT_EQ(w.messages().size(), 1u);
  EXPECT_TRUE(cfg.extra_fields.empty());
  EXPECT_EQ(peft::to_json(cfg).find("runtime_config"), std::string::npos);
}

TEST(LoraConfigKwargs, UnknownKeyIsAnErrorWithASuggestion) {
  auto e = kwargs_error(R"({"target_modules": ["lin0"], "lora_alpah": 16})");
  EXPECT_EQ(e.field(), "lora_alpah");
  EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);
  EXPECT_NE(std::string(e.what()).find("did you mean `lora_alpha`"), std::string::npos) << e.what();
}

TEST(LoraConfigKwargs, EveryFieldRejectsAWrongType) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"r", "\"8\""}, {"r", "8.0"}, {"r", "true"}, {"lora_alpha", "\"8\""},
      {"lora_dropout", "\"0.1\""}, {"target_modules", "3"}, {"target_modules", "[1]"},
      {"exclude_modules", "{}"}, {"fan_in_fan_out", "1"}, {"bias", "false"},
      {"use_rslora", "\"yes\""}, {"modules_to_save", "\"lm_head\""}, {"init_lora_weights", "1"},
      {"layers_to_transform", "\"0\""}, {"layers_to_transform", "[0.5]"}, {"layers_pattern", "3"},
      {"rank_pattern", "[]"}, {"rank_pattern", "{\"q\": 2.5}"}, {"alpha_pattern", "{\"q\": \"x\"}"},
      {"megatron_core", "3"}, {"trainable_token_indices", "3"}, {"loftq_config", "[]"},
      {"loftq_config", "{\"bits\": 4}"}, {"eva_config", "[]"}, {"eva_config", "{\"rho\": \"2\"}"},
      {"eva_config", "{\"nope\": 1}"}, {"corda_config", "{\"corda_method\": 1}"}, {"use_dora", "0"},
      {"alora_invocation_tokens", "[\"a\"]"}, {"use_qalora", "null"}, {"qalora_group_size", "1.5"},
      {"layer_replication", "[[0, 1, 2]]"}, {"layer_replication", "[0, 1]"}, {"lora_bias", "\"no\""},
      {"target_parameters", "\"lin0.weight\""}, {"ensure_weight_tying", "null"},
      {"task_type", "1"}, {"peft_type", "1"}, {"auto_mapping", "[]"}, {"peft_version", "1"},
      {"base_model_name_or_path", "[]"}, {"revision", "false"}, {"inference_mode", "\"true\""},
      {"velora_config", "3"}, {"monteclora_config", "[]"}, {"arrow_config", "1"}, {"use_bdlora", "true"}};
  for (const auto& [key, value] : bad) {
    auto e = kwargs_error("{\"" + key + "\": " + value + "}");
    EXPECT_EQ(e.field().substr(0, key.size()), key) << key << " = " << value << ": " << e.what();
  }
}

TEST(LoraConfigKwargs, ClosedSetsRejectUnknownNames) {
  auto bias = kwargs_error(R"({"bias": "some"})");
  EXPECT_EQ(bias.field(), "bias");
  EXPECT_EQ(bias.kind(), peft::ConfigError::Kind::NotImplemented);
  auto task = kwargs_error(R"({"task_type": "NOT_A_TASK"})");
  EXPECT_EQ(task.field(), "task_type");
  EXPECT_NE(std::string(task.what()).find("CAUSAL_LM"), std::string::npos);
  EXPECT_EQ(kwargs_error(R"({"init_lora_weights": "foo"})").field(), "init_lora_weights");
}

TEST(LoraConfigKwargs, SubConfigsAreParsed) {
  peft::ScopedWarningCapture quiet;
  const auto c = peft::lora_config_from_json_value(
      kwargs(R"({"init_lora_weights": "eva", "eva_config": {"rho": 1.5, "whiten": true},
                 "layers_to_transform": 1, "layers_pattern": "layers", "target_modules": ["q"]})"),
      peft::ConfigSource::Kwargs);
  ASSERT_TRUE(c.eva_config.has_value());
  EXPECT_EQ(c.eva_config->rho, 1.5);
  EXPECT_TRUE(c.eva_config->whiten);
  EXPECT_EQ(c.eva_config->tau, 0.99);
  EXPECT_TRUE(c.layers_to_transform->scalar);
}

TEST(AdapterConfigFiles, SaveThenLoadGivesTheSameConfig) {
  const fs::path dir = temp_dir("save_load") / "nested" / "adapter";
  peft::LoraConfig c;
  c.target_modules = "model\\.layers\\.[02]\\.(self_attn\\.(q|v)_proj|mlp\\.down_proj)";
  c.r = 4;
  c.validate();
  peft::save_adapter_config(c, dir);
  ASSERT_TRUE(fs::exists(dir / "adapter_config.json"));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "adapter_config.json") << "temporary file left behind";
  const auto back = peft::load_adapter_config(dir);
  EXPECT_EQ(peft::to_json(back), peft::to_json(c));
  const auto same = peft::load_adapter_config(dir / "adapter_config.json");
  EXPECT_EQ(same.r, 4);
}

TEST(AdapterConfigFiles, MissingOrMalformedFilesRaiseSerializationErrorNamingThePath) {
  const fs::path dir = temp_dir("bad_files");
  try {
    peft::load_adapter_config(dir);
    FAIL();
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos);
  }
  std::ofstream(dir / "adapter_config.json") << "{\"peft_type\": \"LORA\", ";
  EXPECT_THROW(peft::load_adapter_config(dir), peft::SerializationError);
  std::ofstream(dir / "adapter_config.json") << "{\"peft_type\": \"LORA\", \"r\": \"x\"}";
  try {
    peft::load_adapter_config(dir);
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos);
    EXPECT_EQ(e.field(), "r");
  }
}

TEST(AdapterConfigFiles, AFailedSaveLeavesThePreviousFileIntact) {
  const fs::path dir = temp_dir("atomic");
  peft::LoraConfig c;
  c.target_modules = {"lin0"};
  peft::save_adapter_config(c, dir);
  const std::string before = peft::read_text_file(dir / "adapter_config.json");
  // A directory squatting on the temporary name makes the write fail midway.
  fs::create_directories(dir / ("adapter_config.json.tmp-" + std::to_string(::getpid())));
  c.r = 64;
  EXPECT_THROW(peft::save_adapter_config(c, dir), peft::SerializationError);
  EXPECT_EQ(peft::read_text_file(dir / "adapter_config.json"), before);
}
