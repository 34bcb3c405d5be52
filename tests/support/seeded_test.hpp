#pragma once
// The fixture of every unit test that draws random numbers (randn, layer init, dropout, ...):
// torch's global generators (CPU, and CUDA where present) are seeded with kTestSeed before each
// test, so its numbers do not depend on which tests ran before it. A test uses it through
//   SEEDED_TEST(PeftLinear, ...) { ... }     // TEST() with SeededTest as the fixture
//   class Corpus : public peft_test::SeededTestWithParam<Case> {};  TEST_P(Corpus, ...)
// (gtest wants one fixture per suite: every test of a suite uses SEEDED_TEST, or none does).
// A test whose expected values come from a specific seed still calls torch::manual_seed itself.

#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cstdint>

namespace peft_test {

inline constexpr std::uint64_t kTestSeed = 0;

class SeededTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(kTestSeed); }
};

/// SeededTest for TEST_P suites.
template <class Param>
class SeededTestWithParam : public SeededTest, public ::testing::WithParamInterface<Param> {};

}  // namespace peft_test

/// TEST(test_suite_name, test_name) with peft_test::SeededTest as the fixture (what TEST_F does
/// with a fixture named like the suite, without declaring one per suite).
#define SEEDED_TEST(test_suite_name, test_name)                  \
  GTEST_TEST_(test_suite_name, test_name, ::peft_test::SeededTest, \
              ::testing::internal::GetTypeId<::peft_test::SeededTest>())
