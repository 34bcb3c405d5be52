// peft::lora_config_from_yaml / load_lora_yaml: the `lora:` section of a training YAML, read with
// the same fields and types as adapter_config.json, and errors that point at file:line:column.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/train/lora_yaml.hpp"
#include "peft/warnings.hpp"
#include "support/message_of.hpp"

namespace {

using peft::ConfigError;
using peft::LoraConfig;
using peft::SerializationError;
using peft::lora_config_from_yaml;

testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

using peft_test::message_of;

ConfigError config_error_of(const std::string& yaml, const std::string& source = "<yaml>") {
  try {
    lora_config_from_yaml(yaml, "lora", source);
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << yaml;
  return ConfigError("", "", "", "");
}

LoraConfig lora(const std::string& body) {
  peft::ScopedWarningCapture quiet;
  return lora_config_from_yaml("lora:\n" + body);
}

const char* const kTrainingYaml = R"(# fine-tuning run
model:
  name_or_path: meta-llama/Llama-2-7b-hf
  dtype: bfloat16
data:
  path: data/train.jsonl
  max_length: 2048
lora:
  r: 16
  lora_alpha: 32
  lora_dropout: 0.05
  target_modules: [q_proj, k_proj, v_proj]
  fan_in_fan_out: false
  modules_to_save:
    - lm_head
    - embed_tokens
  layers_to_transform: [0, 1, 2]
  layers_pattern: layers
  rank_pattern:
    v_proj: 4
    "^model.layers.0.q_proj$": 32
    k_proj: 8
  alpha_pattern:
    v_proj: 8
    k_proj: 2.5
  init_lora_weights: gaussian
  bias: lora_only
  use_rslora: true
  use_dora: true
trainer:
  learning_rate: 2.0e-4
  epochs: 3
)";

// ---------------------------------------------------------------- reading fields

TEST(LoraYaml, ReadsLoraSectionOfATrainingConfig) {
  LoraConfig c = lora_config_from_yaml(kTrainingYaml);
  EXPECT_EQ(c.r, 16);
  EXPECT_EQ(c.lora_alpha.value, 32.0);
  EXPECT_TRUE(c.lora_alpha.integral);
  EXPECT_DOUBLE_EQ(c.lora_dropout, 0.05);
  ASSERT_TRUE(c.target_modules.is_list());
  EXPECT_EQ(c.target_modules.names(), (std::vector<std::string>{"q_proj", "k_proj", "v_proj"}));
  EXPECT_FALSE(c.fan_in_fan_out);
  ASSERT_TRUE(c.modules_to_save.has_value());
  EXPECT_EQ(*c.modules_to_save, (std::vector<std::string>{"lm_head", "embed_tokens"}));
  ASSERT_TRUE(c.layers_to_transform.has_value());
  EXPECT_EQ(c.layers_to_transform->values, (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_FALSE(c.layers_to_transform->scalar);
  ASSERT_TRUE(c.layers_pattern.has_value());
  EXPECT_EQ(c.layers_pattern->values, std::vector<std::string>{"layers"});
  EXPECT_TRUE(c.layers_pattern->scalar);
  EXPECT_EQ(c.init_lora_weights, peft::InitLoraWeights("gaussian"));
  EXPECT_EQ(c.bias, peft::Bias::lora_only);
  EXPECT_TRUE(c.use_rslora);
  EXPECT_TRUE(c.use_dora);
}

TEST(LoraYaml, KeepsRankAndAlphaPatternsInWrittenOrder) {
  LoraConfig c = lora_config_from_yaml(kTrainingYaml);
  const auto& ranks = c.rank_pattern.entries();
  ASSERT_EQ(ranks.size(), 3u);
  EXPECT_EQ(ranks[0], (std::pair<std::string, std::int64_t>{"v_proj", 4}));
  EXPECT_EQ(ranks[1], (std::pair<std::string, std::int64_t>{"^model.layers.0.q_proj$", 32}));
  EXPECT_EQ(ranks[2], (std::pair<std::string, std::int64_t>{"k_proj", 8}));
  const auto& alphas = c.alpha_pattern.entries();
  ASSERT_EQ(alphas.size(), 2u);
  EXPECT_EQ(alphas[0].first, "v_proj");
  EXPECT_TRUE(alphas[0].second.integral);
  EXPECT_EQ(alphas[1].first, "k_proj");
  EXPECT_FALSE(alphas[1].second.integral);
  EXPECT_EQ(alphas[1].second.value, 2.5);
}

TEST(LoraYaml, UnsetFieldsKeepPeftDefaults) {
  LoraConfig c = lora("  r: 4\n");
  LoraConfig d;
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.lora_alpha, d.lora_alpha);
  EXPECT_TRUE(c.target_modules.is_none());
  EXPECT_EQ(c.bias, peft::Bias::none);
  EXPECT_EQ(c.init_lora_weights, peft::InitLoraWeights(true));
  EXPECT_FALSE(c.modules_to_save.has_value());
}

TEST(LoraYaml, AcceptsAnEmptyMappingAsAllDefaults) {
  LoraConfig c = lora_config_from_yaml("lora: {}\n");
  EXPECT_EQ(c.r, 8);
  EXPECT_TRUE(c.target_modules.is_none());
}

TEST(LoraYaml, ReadsLoraAlphaAsIntOrFloat) {
  LoraConfig as_int = lora("  lora_alpha: 16\n");
  EXPECT_EQ(as_int.lora_alpha.value, 16.0);
  EXPECT_TRUE(as_int.lora_alpha.integral);
  LoraConfig as_float = lora("  lora_alpha: 16.0\n");
  EXPECT_EQ(as_float.lora_alpha.value, 16.0);
  EXPECT_FALSE(as_float.lora_alpha.integral);
  LoraConfig fraction = lora("  lora_alpha: 0.5\n");
  EXPECT_EQ(fraction.lora_alpha.value, 0.5);
}

TEST(LoraYaml, ReadsTargetModulesAsBlockList) {
  LoraConfig c = lora("  target_modules:\n    - q_proj\n    - v_proj\n");
  ASSERT_TRUE(c.target_modules.is_list());
  EXPECT_EQ(c.target_modules.names(), (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(LoraYaml, ReadsTargetModulesStringAsRegex) {
  LoraConfig c = lora("  target_modules: '.*\\.(q|v)_proj$'\n");
  ASSERT_TRUE(c.target_modules.is_regex());
  EXPECT_EQ(c.target_modules.pattern(), ".*\\.(q|v)_proj$");
}

TEST(LoraYaml, ReadsAllLinearKeyword) {
  LoraConfig c = lora("  target_modules: all-linear\n");
  EXPECT_TRUE(c.target_modules.is_all_linear());
}

TEST(LoraYaml, ReadsLayersToTransformAsIntOrList) {
  LoraConfig one = lora("  target_modules: [q_proj]\n  layers_to_transform: 3\n");
  ASSERT_TRUE(one.layers_to_transform.has_value());
  EXPECT_TRUE(one.layers_to_transform->scalar);
  EXPECT_EQ(one.layers_to_transform->values, std::vector<std::int64_t>{3});
  LoraConfig many = lora("  target_modules: [q_proj]\n  layers_to_transform:\n    - 0\n    - 5\n");
  EXPECT_FALSE(many.layers_to_transform->scalar);
  EXPECT_EQ(many.layers_to_transform->values, (std::vector<std::int64_t>{0, 5}));
}

TEST(LoraYaml, ReadsLayersPatternAsStringOrList) {
  LoraConfig one = lora("  target_modules: [q_proj]\n  layers_to_transform: [0]\n  layers_pattern: h\n");
  ASSERT_TRUE(one.layers_pattern.has_value());
  EXPECT_TRUE(one.layers_pattern->scalar);
  EXPECT_EQ(one.layers_pattern->values, std::vector<std::string>{"h"});
  LoraConfig many = lora(
      "  target_modules: [q_proj]\n  layers_to_transform: [0]\n  layers_pattern: [layers, h]\n");
  EXPECT_FALSE(many.layers_pattern->scalar);
  EXPECT_EQ(many.layers_pattern->values, (std::vector<std::string>{"layers", "h"}));
}

TEST(LoraYaml, ReadsInitLoraWeightsAsBoolOrName) {
  EXPECT_EQ(lora("  init_lora_weights: false\n").init_lora_weights, peft::InitLoraWeights(false));
  EXPECT_EQ(lora("  init_lora_weights: true\n").init_lora_weights, peft::InitLoraWeights(true));
  LoraConfig named = lora("  init_lora_weights: pissa_niter_4\n");
  EXPECT_EQ(named.init_method(), peft::InitMethod::PissaNiter);
  EXPECT_EQ(named.pissa_niter(), 4);
}

TEST(LoraYaml, ReadsNestedEvaConfigMapping) {
  LoraConfig c = lora(
      "  init_lora_weights: eva\n"
      "  eva_config:\n"
      "    rho: 1.5\n"
      "    tau: 0.9\n"
      "    whiten: true\n"
      "    label_mask_value: -1\n");
  ASSERT_TRUE(c.eva_config.has_value());
  EXPECT_EQ(c.eva_config->rho, 1.5);
  EXPECT_EQ(c.eva_config->tau, 0.9);
  EXPECT_TRUE(c.eva_config->whiten);
  EXPECT_EQ(c.eva_config->label_mask_value, -1);
  EXPECT_TRUE(c.eva_config->use_label_mask);  // unset sub-field keeps its default
}

TEST(LoraYaml, FollowsYaml12CoreSchemaForPlainScalars) {
  LoraConfig c = lora(
      "  use_rslora: True\n"
      "  lora_dropout: 1e-1\n"
      "  modules_to_save: ~\n"
      "  r: +12\n");
  EXPECT_TRUE(c.use_rslora);
  EXPECT_DOUBLE_EQ(c.lora_dropout, 0.1);
  EXPECT_FALSE(c.modules_to_save.has_value());
  EXPECT_EQ(c.r, 12);
}

TEST(LoraYaml, QuotedScalarsStayStrings) {
  LoraConfig c = lora(
      "  target_modules: [q_proj]\n"
      "  layers_to_transform: [0]\n"
      "  layers_pattern: \"1\"\n");
  ASSERT_TRUE(c.layers_pattern.has_value());
  EXPECT_EQ(c.layers_pattern->values, std::vector<std::string>{"1"});

  LoraConfig regex = lora("  target_modules: \"q_proj\"\n");
  ASSERT_TRUE(regex.target_modules.is_regex());
  EXPECT_EQ(regex.target_modules.pattern(), "q_proj");

  // The same value unquoted is an int, and a quoted number is not an int.
  EXPECT_EQ(config_error_of("lora:\n  target_modules: [q_proj]\n  layers_to_transform: [0]\n"
                            "  layers_pattern: 1\n")
                .kind(),
            ConfigError::Kind::WrongType);
  EXPECT_EQ(config_error_of("lora:\n  r: '8'\n").kind(), ConfigError::Kind::WrongType);
  EXPECT_THROW(lora("  init_lora_weights: 'true'\n"), ConfigError);
}

TEST(LoraYaml, EmptySectionNameReadsTheWholeDocument) {
  LoraConfig c = lora_config_from_yaml("r: 4\nlora_alpha: 8\ntarget_modules: [fc1]\n", "");
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.target_modules.names(), std::vector<std::string>{"fc1"});
}

TEST(LoraYaml, ReadsANamedSection) {
  LoraConfig c = lora_config_from_yaml("lora:\n  r: 2\nadapter:\n  r: 32\n", "adapter");
  EXPECT_EQ(c.r, 32);
}

// ---------------------------------------------------------------- config errors, located

TEST(LoraYamlErrors, UnknownKeyIsLocatedAndSuggestsTheClosestField) {
  const std::string yaml =
      "model:\n"
      "  name: gpt2\n"
      "lora:\n"
      "  r: 8\n"
      "  lora_alpah: 16\n";
  ConfigError e = config_error_of(yaml, "train.yaml");
  EXPECT_EQ(e.kind(), ConfigError::Kind::WrongType);  // Python: TypeError, unexpected keyword
  EXPECT_EQ(e.field(), "lora_alpah");
  EXPECT_TRUE(Contains(e.what(), "train.yaml:5:15:"));
  EXPECT_TRUE(Contains(e.what(), "did you mean `lora_alpha`"));
}

TEST(LoraYamlErrors, WrongTypeIsLocatedAtTheValue) {
  ConfigError e = config_error_of("lora:\n  lora_alpha: 16\n  r: four\n");
  EXPECT_EQ(e.kind(), ConfigError::Kind::WrongType);
  EXPECT_EQ(e.field(), "r");
  EXPECT_EQ(std::string(e.what()).rfind("<yaml>:3:6:", 0), 0u) << e.what();
}

TEST(LoraYamlErrors, UnknownBiasIsNotImplemented) {
  ConfigError e = config_error_of("lora:\n  bias: some\n");
  EXPECT_EQ(e.kind(), ConfigError::Kind::NotImplemented);
  EXPECT_EQ(e.field(), "bias");
  EXPECT_TRUE(Contains(e.what(), "<yaml>:2:9:"));
}

TEST(LoraYamlErrors, NestedErrorIsLocatedAtTheNestedValue) {
  ConfigError e = config_error_of(
      "lora:\n"
      "  init_lora_weights: eva\n"
      "  eva_config:\n"
      "    rho: 2.0\n"
      "    tau: high\n");
  EXPECT_EQ(e.field(), "eva_config.tau");
  EXPECT_TRUE(Contains(e.what(), "<yaml>:5:10:"));
}

TEST(LoraYamlErrors, ValidationErrorIsLocated) {
  // PEFT: layers_to_transform cannot be used when target_modules is a str.
  ConfigError e = config_error_of(
      "lora:\n"
      "  target_modules: q_proj\n"
      "  layers_to_transform: 0\n");
  EXPECT_EQ(e.field(), "layers_to_transform");
  EXPECT_TRUE(Contains(e.what(), "<yaml>:3:24:"));
}

// ---------------------------------------------------------------- malformed documents

TEST(LoraYamlErrors, DuplicateKeyIsASerializationError) {
  const std::string msg =
      message_of<SerializationError>([] { lora_config_from_yaml("lora:\n  r: 8\n  r: 16\n"); });
  EXPECT_TRUE(Contains(msg, "duplicate"));
  EXPECT_TRUE(Contains(msg, "<yaml>:3:3:"));
}

TEST(LoraYamlErrors, DuplicateNestedKeyIsASerializationError) {
  const std::string msg = message_of<SerializationError>([] {
    lora_config_from_yaml("lora:\n  rank_pattern:\n    q_proj: 4\n    q_proj: 8\n");
  });
  EXPECT_TRUE(Contains(msg, "duplicate"));
  EXPECT_TRUE(Contains(msg, "<yaml>:4:5:"));
}

TEST(LoraYamlErrors, DuplicateSectionIsASerializationError) {
  const std::string msg = message_of<SerializationError>(
      [] { lora_config_from_yaml("lora:\n  r: 8\ntrainer: {}\nlora:\n  r: 16\n"); });
  EXPECT_TRUE(Contains(msg, "duplicate"));
  EXPECT_TRUE(Contains(msg, "<yaml>:4:1:"));
}

TEST(LoraYamlErrors, TabIndentationIsASerializationErrorWithLine) {
  const std::string msg =
      message_of<SerializationError>([] { lora_config_from_yaml("lora:\n  r: 8\n\tlora_alpha: 16\n"); });
  EXPECT_TRUE(Contains(msg, "<yaml>:3:1: invalid YAML"));
  EXPECT_TRUE(Contains(msg, "tab"));
}

TEST(LoraYamlErrors, UnclosedFlowListIsASerializationErrorWithLine) {
  const std::string msg = message_of<SerializationError>(
      [] { lora_config_from_yaml("lora:\n  r: 8\n  target_modules: [q_proj, v_proj\n"); });
  EXPECT_TRUE(Contains(msg, "invalid YAML"));
  EXPECT_TRUE(Contains(msg, "<yaml>:4:"));  // the list is still open at the end of the text
}

TEST(LoraYamlErrors, BadIndentationIsASerializationErrorWithLine) {
  const std::string msg = message_of<SerializationError>(
      [] { lora_config_from_yaml("lora:\n  r: 8\n    lora_alpha: 16\n"); });
  EXPECT_TRUE(Contains(msg, "<yaml>:3:"));
  EXPECT_TRUE(Contains(msg, "invalid YAML"));
}

TEST(LoraYamlErrors, MissingSectionIsASerializationError) {
  const std::string msg = message_of<SerializationError>(
      [] { lora_config_from_yaml("model:\n  name: gpt2\nlora_settings:\n  r: 8\n"); });
  EXPECT_TRUE(Contains(msg, "no `lora:` section"));
  EXPECT_THROW(lora_config_from_yaml(""), SerializationError);
  EXPECT_THROW(lora_config_from_yaml("- lora\n- r\n"), SerializationError);
}

TEST(LoraYamlErrors, SectionThatIsNotAMappingIsASerializationError) {
  const std::string msg =
      message_of<SerializationError>([] { lora_config_from_yaml("lora: [r, 8]\n"); });
  EXPECT_TRUE(Contains(msg, "must be a mapping"));
  EXPECT_THROW(lora_config_from_yaml("lora: 8\n"), SerializationError);
  EXPECT_THROW(lora_config_from_yaml("lora:\n"), SerializationError);
  EXPECT_THROW(lora_config_from_yaml("- r\n", ""), SerializationError);
}

// ---------------------------------------------------------------- files

class LoraYamlFile : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("peft_yaml_test_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::filesystem::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::filesystem::path dir_;
};

TEST_F(LoraYamlFile, LoadsSectionFromFile) {
  LoraConfig c = peft::load_lora_yaml(write("train.yaml", kTrainingYaml));
  EXPECT_EQ(c.r, 16);
  EXPECT_EQ(c.rank_pattern.size(), 3u);
}

TEST_F(LoraYamlFile, ErrorsNameTheFilePath) {
  const std::filesystem::path p = write("bad.yaml", "lora:\n  r: four\n");
  try {
    peft::load_lora_yaml(p);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(Contains(e.what(), p.string() + ":2:6:"));
  }
}

TEST_F(LoraYamlFile, MissingFileIsASerializationError) {
  const std::filesystem::path p = dir_ / "absent.yaml";
  const std::string msg = message_of<SerializationError>([&] { peft::load_lora_yaml(p); });
  EXPECT_TRUE(Contains(msg, p.string()));
}

}  // namespace
