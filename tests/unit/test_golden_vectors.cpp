// Every golden vector PEFT wrote (configs.json, matching.json, patterns.json) must pass; the
// checks themselves must be able to fail.

#include <gtest/gtest.h>

#include "peft/io/safetensors.hpp"
#include "support/conformance.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"

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

SEEDED_TEST(GoldenVectors, ConfigsAgreeWithPeft) {
  expect_all_pass("configs.json", [](std::size_t i, const peft::JsonValue& e) { return peft_test::check_config_case(i, e); });
}
SEEDED_TEST(GoldenVectors, MatchingAgreesWithPeft) { expect_all_pass("matching.json", peft_test::check_matching_case); }
SEEDED_TEST(GoldenVectors, PatternsAgreeWithPeft) { expect_all_pass("patterns.json", peft_test::check_pattern_case); }

SEEDED_TEST(GoldenVectorChecks, DetectAWrongMatchingExpectation) {
  peft::JsonValue e = first_entry("matching.json");
  e.set("expected", !e.find("expected")->as_bool());
  EXPECT_EQ(peft_test::check_matching_case(0, e).status, peft_test::Status::Fail);
}

SEEDED_TEST(GoldenVectorChecks, DetectAWrongScaling) {
  peft::JsonValue e = first_entry("patterns.json");
  e.set("expected_scaling", e.find("expected_scaling")->as_double() * 1.5);
  EXPECT_EQ(peft_test::check_pattern_case(0, e).status, peft_test::Status::Fail);
}

SEEDED_TEST(GoldenVectorChecks, DetectAWrongSavedConfig) {
  peft::JsonValue e = first_entry("configs.json");
  ASSERT_NE(e.find("adapter_config"), nullptr);
  peft::JsonValue saved = *e.find("adapter_config");
  saved.set("r", 99);
  e.set("adapter_config", saved);
  EXPECT_EQ(peft_test::check_config_case(0, e).status, peft_test::Status::Fail);
}

SEEDED_TEST(GoldenVectorChecks, DetectAnAcceptedInvalidConfig) {
  peft::JsonValue e = first_entry("configs.json");
  e.set("ok", false);
  e.set("stage", "config");
  peft::JsonValue err = peft::JsonValue::object();
  err.set("type", "ValueError");
  e.set("error", err);
  EXPECT_EQ(peft_test::check_config_case(0, e).status, peft_test::Status::Fail);
}

SEEDED_TEST(GoldenModelCases, EveryRunnableCaseAgreesWithPeft) {
  std::size_t passed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(peft_test::fixtures_dir())) {
    if (!std::filesystem::exists(entry.path() / "case.json")) continue;
    const auto r = peft_test::check_model_case(entry.path().string());
    EXPECT_NE(r.status, peft_test::Status::Fail) << r.id << ": " << r.reason;
    passed += r.status == peft_test::Status::Pass;
  }
  EXPECT_GT(passed, 0u);
}

SEEDED_TEST(GoldenVectorChecks, DetectAWrongModelOutput) {
  namespace fs = std::filesystem;
  const fs::path src = peft_test::fixtures_dir() / "mlp_default";
  const char* base = std::getenv("PEFT_TEST_TMP");
  const fs::path dst = fs::path(base ? base : fs::temp_directory_path().string()) / "peft_bad_case" / "mlp_default";
  fs::remove_all(dst);
  fs::create_directories(dst.parent_path());
  fs::copy(src, dst, fs::copy_options::recursive);
  auto expected = peft::load_safetensors(dst / "expected.safetensors");
  for (auto& [key, t] : expected.tensors)
    if (key == "out_adapter") t = t + 1e-3;
  peft::save_safetensors(dst / "expected.safetensors", expected.tensors, expected.metadata);
  const auto r = peft_test::check_model_case(dst.string());
  EXPECT_EQ(r.status, peft_test::Status::Fail);
  EXPECT_NE(r.reason.find("out_adapter"), std::string::npos) << r.reason;
}
