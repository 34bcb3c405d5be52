// Every golden vector PEFT wrote (configs.json, matching.json, patterns.json) must pass; the
// checks themselves must be able to fail.

#include <gtest/gtest.h>

#include "support/conformance.hpp"
#include "support/fixtures.hpp"

namespace {

void expect_all_pass(const char* file, peft_test::CaseResult (*check)(std::size_t, const peft::JsonValue&)) {
  const auto path = peft_test::fixtures_dir() / file;
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  const peft::JsonValue all = peft_test::read_json(path);
  ASSERT_GT(all.as_array().size(), 0u);
  std::size_t passed = 0;
  for (std::size_t i = 0; i < all.as_array().size(); ++i) {
    const auto r = check(i, all.as_array()[i]);
    EXPECT_NE(r.status, peft_test::Status::Fail) << r.id << ": " << r.reason;
    passed += r.status == peft_test::Status::Pass;
  }
  EXPECT_GE(passed + 1, all.as_array().size()) << "more than one vector skipped in " << file;
}

peft::JsonValue first_entry(const char* file) {
  return peft_test::read_json(peft_test::fixtures_dir() / file).as_array().at(0);
}

}  // namespace

TEST(GoldenVectors, ConfigsAgreeWithPeft) {
  expect_all_pass("configs.json", [](std::size_t i, const peft::JsonValue& e) { return peft_test::check_config_case(i, e); });
}
TEST(GoldenVectors, MatchingAgreesWithPeft) { expect_all_pass("matching.json", peft_test::check_matching_case); }
TEST(GoldenVectors, PatternsAgreeWithPeft) { expect_all_pass("patterns.json", peft_test::check_pattern_case); }

TEST(GoldenVectorChecks, DetectAWrongMatchingExpectation) {
  peft::JsonValue e = first_entry("matching.json");
  e.set("expected", !e.find("expected")->as_bool());
  EXPECT_EQ(peft_test::check_matching_case(0, e).status, peft_test::Status::Fail);
}

TEST(GoldenVectorChecks, DetectAWrongScaling) {
  peft::JsonValue e = first_entry("patterns.json");
  e.set("expected_scaling", e.find("expected_scaling")->as_double() * 1.5);
  EXPECT_EQ(peft_test::check_pattern_case(0, e).status, peft_test::Status::Fail);
}

TEST(GoldenVectorChecks, DetectAWrongSavedConfig) {
  peft::JsonValue e = first_entry("configs.json");
  ASSERT_NE(e.find("adapter_config"), nullptr);
  peft::JsonValue saved = *e.find("adapter_config");
  saved.set("r", 99);
  e.set("adapter_config", saved);
  EXPECT_EQ(peft_test::check_config_case(0, e).status, peft_test::Status::Fail);
}

TEST(GoldenVectorChecks, DetectAnAcceptedInvalidConfig) {
  peft::JsonValue e = first_entry("configs.json");
  e.set("ok", false);
  e.set("stage", "config");
  peft::JsonValue err = peft::JsonValue::object();
  err.set("type", "ValueError");
  e.set("error", err);
  EXPECT_EQ(peft_test::check_config_case(0, e).status, peft_test::Status::Fail);
}
