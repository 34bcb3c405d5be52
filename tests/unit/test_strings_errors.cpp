// peft/detail/strings.hpp, the subject of ConfigError messages (LoraConfig, add_weighted_adapter,
// the models' configs, peft-merge) and the enums of add_weighted_adapter parsed from PEFT's spellings.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/models/model_config.hpp"
#include "peft/tuner/combination_ops.hpp"
#include "peft/tuner/combination_type.hpp"

namespace {

/// what() and subject() of the ConfigError `f` throws.
template <class F>
std::pair<std::string, std::string> config_error(F&& f) {
  try {
    f();
  } catch (const peft::ConfigError& e) {
    return {e.what(), e.subject()};
  }
  return {"no ConfigError", ""};
}

using peft::detail::starts_with;

}  // namespace

TEST(Strings, PrefixSuffixQuotesAndShapes) {
  using namespace peft::detail;
  EXPECT_TRUE(ends_with("lin0.lora_A.weight", ".lora_A.weight"));
  EXPECT_TRUE(ends_with("abc", ""));
  EXPECT_FALSE(ends_with("a", "ba"));
  EXPECT_TRUE(starts_with("builtin:tiny-gpt2", "builtin:"));
  EXPECT_FALSE(starts_with("bu", "builtin:"));
  EXPECT_EQ(ticked("w"), "`w`");
  EXPECT_EQ(in_quotes("F32"), "\"F32\"");
  EXPECT_EQ(shape_string(std::vector<std::int64_t>{2, 3}), "[2, 3]");
  EXPECT_EQ(shape_string(std::vector<std::int64_t>{}), "[]");
  EXPECT_EQ(shape_string(torch::zeros({4, 1, 2}).sizes()), "[4, 1, 2]");
}

TEST(Strings, AbbreviatedListsCountWhatTheyLeaveOut) {
  using peft::detail::abbreviated_list;
  EXPECT_EQ(abbreviated_list({}, 8, " "), "");
  EXPECT_EQ(abbreviated_list({"a", "b"}, 8, " "), "a b");
  EXPECT_EQ(abbreviated_list({"a", "b", "c"}, 2, " "), "a b ... (3 in all)");
  EXPECT_EQ(abbreviated_list({"a", "b", "c"}, 2, ", ", "'"), "'a', 'b', ... (3 in all)");
}

TEST(ConfigErrorSubject, LoraConfigIsTheDefaultAndAboutNamesAnother) {
  const peft::ConfigError lora("r", "0", "must be positive", "use r >= 1");
  EXPECT_EQ(lora.subject(), "LoraConfig");
  EXPECT_STREQ(lora.what(), "LoraConfig.r = 0: must be positive (hint: use r >= 1)");
  const auto e = peft::ConfigError::about("add_weighted_adapter", "density", "-1", "Density should be >= 0", "",
                                          peft::ConfigError::Kind::WrongType);
  EXPECT_EQ(e.subject(), "add_weighted_adapter");
  EXPECT_EQ(e.field(), "density");
  EXPECT_EQ(e.value(), "-1");
  EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);
  EXPECT_STREQ(e.what(), "add_weighted_adapter.density = -1: Density should be >= 0");
  const auto at = e.located("t.yaml:3:1");
  EXPECT_STREQ(at.what(), "t.yaml:3:1: add_weighted_adapter.density = -1: Density should be >= 0");
  EXPECT_EQ(at.subject(), "add_weighted_adapter");
}

TEST(ConfigErrorSubject, ModelConfigsAndPeftMergeNameThemselves) {
  auto [what, subject] = config_error([] {
    peft::models::GPT2Config c;
    c.n_layer = 0;
    c.validate();
  });
  EXPECT_EQ(subject, "GPT2Config");
  EXPECT_TRUE(starts_with(what, "GPT2Config.n_layer = 0: must be positive")) << what;
  std::tie(what, subject) = config_error([] {
    peft::models::llama_config_from_json(peft::JsonValue::parse(
        R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 3})"), "dir/config.json");
  });
  EXPECT_EQ(subject, "LlamaConfig");
  EXPECT_TRUE(starts_with(what, "dir/config.json: LlamaConfig.num_attention_heads = 3:")) << what;
  std::tie(what, subject) = config_error([] { peft::models::torch_dtype_name(torch::kInt64); });
  EXPECT_EQ(subject, "config");
  std::tie(what, subject) = config_error([] { peft::parse_merge_dtype("int8"); });
  EXPECT_EQ(subject, "peft-merge");
  EXPECT_TRUE(starts_with(what, "peft-merge.dtype = int8: unknown output dtype")) << what;
}

TEST(WeightedAdapterEnums, ParseAndPrintPeftsSpellings) {
  const std::vector<std::string> all = {"svd",       "linear",          "cat",           "ties",
                                        "ties_svd",  "dare_linear",     "dare_ties",     "dare_linear_svd",
                                        "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd"};
  for (const auto& name : all) EXPECT_EQ(peft::to_string(peft::parse_combination_type(name)), name);
  EXPECT_EQ(peft::parse_combination_type("dare_ties_svd"), peft::CombinationType::dare_ties_svd);
  EXPECT_TRUE(peft::is_svd_combination(peft::CombinationType::svd));
  EXPECT_FALSE(peft::is_svd_combination(peft::CombinationType::dare_ties));
  EXPECT_EQ(peft::combination_function(peft::CombinationType::magnitude_prune_svd), peft::CombinationType::magnitude_prune);
  EXPECT_EQ(peft::combination_function(peft::CombinationType::svd), peft::CombinationType::linear);
  EXPECT_EQ(peft::combination_function(peft::CombinationType::cat), peft::CombinationType::cat);
  using peft::merge::MajoritySignMethod;
  EXPECT_EQ(peft::merge::parse_majority_sign_method("frequency"), MajoritySignMethod::frequency);
  EXPECT_EQ(peft::merge::to_string(MajoritySignMethod::total), "total");
}

TEST(WeightedAdapterEnums, BadSpellingsNameTheValueAndTheValidSet) {
  auto [what, subject] = config_error([] { peft::parse_combination_type("average"); });
  EXPECT_EQ(subject, "add_weighted_adapter");
  EXPECT_EQ(what, "add_weighted_adapter.combination_type = \"average\": Invalid combination_type (hint: use one of "
                  "svd, linear, cat, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, "
                  "magnitude_prune, magnitude_prune_svd)");
  std::tie(what, subject) = config_error([] { peft::merge::parse_majority_sign_method("median"); });
  EXPECT_EQ(subject, "add_weighted_adapter");
  EXPECT_EQ(what, "add_weighted_adapter.majority_sign_method = \"median\": Unimplemented mask method (hint: use "
                  "\"total\" or \"frequency\")");
  std::tie(what, subject) = config_error([] { peft::to_string(static_cast<peft::CombinationType>(99)); });
  EXPECT_TRUE(starts_with(what, "add_weighted_adapter.combination_type = 99: Invalid combination_type")) << what;
  std::tie(what, subject) = config_error([] { peft::merge::to_string(static_cast<peft::merge::MajoritySignMethod>(5)); });
  EXPECT_EQ(subject, "add_weighted_adapter");
}
