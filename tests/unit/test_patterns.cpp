// rank_pattern / alpha_pattern resolution and scaling (docs/matching.md#rank-and-alpha-patterns,
// docs/layer.md#scaling).

#include <gtest/gtest.h>

#include <cmath>

#include "peft/targeting/patterns.hpp"

namespace {

std::int64_t rank_of(const peft::PatternMap<std::int64_t>& pattern, const std::string& key) {
  peft::LoraConfig c;
  c.rank_pattern = pattern;
  return peft::resolve_layer_settings(c, key).r;
}

}  // namespace

TEST(RankPattern, MatchesDotAlignedSuffixes) {
  peft::PatternMap<std::int64_t> p{{"foo", 16}};
  EXPECT_EQ(rank_of(p, "foo"), 16);
  EXPECT_EQ(rank_of(p, "module.foo"), 16);
  EXPECT_EQ(rank_of(p, "module.module.foo"), 16);
  EXPECT_EQ(rank_of(p, "bar"), 8);
  EXPECT_EQ(rank_of(p, "module.foobar"), 8);
  EXPECT_EQ(rank_of(p, "module.module.barfoo"), 8);
}

TEST(RankPattern, CaretAnchorsAtTheFullKey) {
  EXPECT_EQ(rank_of({{"^foo", 16}}, "foo"), 16);
  EXPECT_EQ(rank_of({{"^foo", 16}}, "module.foo"), 8);
  EXPECT_EQ(rank_of({{"^module.foo", 16}}, "module.foo"), 16);
  EXPECT_EQ(rank_of({{"^module.foo", 16}}, "module.module.foo"), 8);
  EXPECT_EQ(rank_of({{"module.foo", 16}}, "module.module.foo"), 16);
}

TEST(RankPattern, FirstPatternInInsertionOrderWins) {
  peft::PatternMap<std::int64_t> a{{"foo", 2}, {"module.foo", 4}};
  peft::PatternMap<std::int64_t> b{{"module.foo", 4}, {"foo", 2}};
  EXPECT_EQ(rank_of(a, "module.foo"), 2);
  EXPECT_EQ(rank_of(b, "module.foo"), 4);
  peft::PatternMap<std::int64_t> anchored{{"^module.module.foo", 32}, {"^module.foo", 24}, {"^foo", 16}};
  EXPECT_EQ(rank_of(anchored, "foo"), 16);
  EXPECT_EQ(rank_of(anchored, "module.foo"), 24);
  EXPECT_EQ(rank_of(anchored, "module.module.foo"), 32);
}

TEST(RankPattern, ReportsWhichPatternMatched) {
  peft::PatternMap<std::int64_t> p{{"bla", 4}, {"o+", 6}};
  EXPECT_EQ(peft::get_pattern_key(p, "a.oo"), std::optional<std::string>("o+"));
  EXPECT_EQ(peft::get_pattern_key(p, "a.foo"), std::nullopt);  // must cover a whole segment
  EXPECT_EQ(peft::get_pattern_key(p, "a.bar"), std::nullopt);
}

TEST(LayerScaling, AlphaOverRankOrOverSqrtRankWithRslora) {
  peft::LoraConfig c;
  c.r = 25;
  c.lora_alpha = 17;
  c.rank_pattern.set("embed", 9);
  c.rank_pattern.set("conv2d", 16);
  c.alpha_pattern.set("linear", 11);
  c.alpha_pattern.set("conv2d", 13);
  EXPECT_DOUBLE_EQ(peft::resolve_layer_settings(c, "linear").scaling, 11.0 / 25);
  EXPECT_DOUBLE_EQ(peft::resolve_layer_settings(c, "embed").scaling, 17.0 / 9);
  EXPECT_DOUBLE_EQ(peft::resolve_layer_settings(c, "conv2d").scaling, 13.0 / 16);
  c.use_rslora = true;
  EXPECT_EQ(peft::resolve_layer_settings(c, "linear").scaling, 11.0 / 5);
  EXPECT_EQ(peft::resolve_layer_settings(c, "embed").scaling, 17.0 / 3);
  EXPECT_EQ(peft::resolve_layer_settings(c, "conv2d").scaling, 13.0 / 4);
}

TEST(LayerScaling, RankAndAlphaResolveIndependently) {
  peft::LoraConfig c;
  c.alpha_pattern.set("0.linear", 2);
  const double alone = peft::resolve_layer_settings(c, "0.linear").scaling;
  c.rank_pattern.set("linear", 8);
  EXPECT_EQ(peft::resolve_layer_settings(c, "0.linear").scaling, alone);
  EXPECT_EQ(alone, 2.0 / 8);
}

TEST(LayerScaling, FloatAlphaIsKept) {
  peft::LoraConfig c;
  c.r = 4;
  c.lora_alpha = 2.5;
  const auto s = peft::resolve_layer_settings(c, "x");
  EXPECT_EQ(s.scaling, 0.625);
  EXPECT_FALSE(s.lora_alpha.integral);
}

TEST(LayerScaling, NonPositiveResolvedRankIsAConfigError) {
  peft::LoraConfig c;
  c.rank_pattern.set("v_proj", 0);
  EXPECT_NO_THROW(peft::resolve_layer_settings(c, "q_proj"));
  try {
    peft::resolve_layer_settings(c, "a.v_proj");
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "rank_pattern[\"v_proj\"]");
    EXPECT_NE(std::string(e.what()).find("a.v_proj"), std::string::npos);
  }
  c.r = -2;
  EXPECT_THROW(peft::resolve_layer_settings(c, "q_proj"), peft::ConfigError);
}
