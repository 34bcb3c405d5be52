// check_target_module_exists (docs/matching.md#the-per-key-test), with PEFT's own test vectors.

#include <gtest/gtest.h>

#include "peft/targeting/matching.hpp"

namespace {

using peft::MatchResult;

MatchResult match(const std::string& key, peft::ModuleSpec targets,
                  std::optional<peft::LayerIndices> layers = std::nullopt,
                  std::optional<peft::LayerPatterns> pattern = std::nullopt) {
  peft::LoraConfig c;
  c.target_modules = std::move(targets);
  c.layers_to_transform = std::move(layers);
  c.layers_pattern = std::move(pattern);
  return peft::check_target_module_exists(c, key);
}

}  // namespace

TEST(TargetMatching, ListMatchesExactKeyOrDotSuffix) {
  EXPECT_EQ(match("foo", {"foo"}), MatchResult::Match);
  EXPECT_EQ(match("a.b.foo", {"foo"}), MatchResult::Match);
  EXPECT_EQ(match("a.b.foo", {"b.foo"}), MatchResult::Match);
  EXPECT_EQ(match("a.xfoo", {"foo"}), MatchResult::NoMatch);  // never a partial segment
  EXPECT_EQ(match("foo", {"bar"}), MatchResult::NoMatch);
  EXPECT_EQ(match("", {}), MatchResult::NoMatch);
  EXPECT_EQ(match("a.foo.b", {"foo"}), MatchResult::NoMatch);
  EXPECT_EQ(match("a.f.o", {"f.o"}), MatchResult::Match);
  EXPECT_EQ(match("a.fxo", {"f.o"}), MatchResult::NoMatch);  // '.' is literal in lists
}

TEST(TargetMatching, StringIsAFullRegexMatch) {
  EXPECT_EQ(match("foo", "foo"), MatchResult::Match);
  EXPECT_EQ(match("foo", ".*oo"), MatchResult::Match);
  EXPECT_EQ(match("foo", "fo.*"), MatchResult::Match);
  EXPECT_EQ(match("foo", ".*bar.*"), MatchResult::NoMatch);
  EXPECT_EQ(match("foobar", ".*oba.*"), MatchResult::Match);
  EXPECT_EQ(match("foobar", "oba"), MatchResult::NoMatch);  // fullmatch, not search
}

TEST(TargetMatching, LayerFilterReadsTheFirstPatternIndex) {
  EXPECT_EQ(match("foo.bar.1.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::Match);
  EXPECT_EQ(match("foo.bar.1.baz", {"baz"}, {{0}}, {{"bar"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("foo.bar.10.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("foo.whatever.1.baz", {"baz"}, {{1}}), MatchResult::Match);
  EXPECT_EQ(match("foo.bar.1.baz", {"baz"}, {{1}}, {{"foo"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("bar.1.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("foo.bar.001.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::Match);
  EXPECT_EQ(match("foo.bar.1.spam.2.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::Match);
  EXPECT_EQ(match("foo.bar.2.spam.1.baz", {"baz"}, {{1}}, {{"bar"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("blocks.1.weight", {"weight"}, {{1}}, {{"blocks"}}), MatchResult::NoMatch);
  EXPECT_EQ(match("mlp.blocks.1.weight", {"weight"}, {{1}}, {{"blocks"}}), MatchResult::Match);
  EXPECT_EQ(match("transformer.h.1.attn.attention.q_proj", {"q_proj"}, {{1}}, {{"h"}}), MatchResult::Match);
}

TEST(TargetMatching, LayerFilterAcceptsIntAndPatternLists) {
  EXPECT_EQ(match("m.layers.1.q", {"q"}, peft::LayerIndices(1), {{"blocks", "layers"}}), MatchResult::Match);
  EXPECT_EQ(match("m.layers.2.q", {"q"}, peft::LayerIndices(1), {{"blocks", "layers"}}), MatchResult::NoMatch);
}

TEST(TargetMatching, ExactKeysAndRegexesSkipTheLayerFilter) {
  EXPECT_EQ(match("model.layers.2.q", {"model.layers.2.q"}, {{0}}), MatchResult::Match);
  peft::LoraConfig c;
  c.target_modules = {"model.layers.2.q"};
  c.layers_to_transform = {0};
  EXPECT_EQ(peft::check_target_module_exists(c, "x.model.layers.2.q"), MatchResult::NoMatch);
}

TEST(TargetMatching, ExcludeModulesWinAndAreReportedAsExcluded) {
  peft::LoraConfig c;
  c.target_modules = {"q_proj", "v_proj"};
  c.exclude_modules = {"layers.1.v_proj"};
  EXPECT_EQ(peft::check_target_module_exists(c, "m.layers.1.v_proj"), MatchResult::Excluded);
  EXPECT_EQ(peft::check_target_module_exists(c, "m.layers.0.v_proj"), MatchResult::Match);
  c.exclude_modules = ".*\\.layers\\.1\\..*";
  EXPECT_EQ(peft::check_target_module_exists(c, "m.layers.1.q_proj"), MatchResult::Excluded);
  EXPECT_EQ(peft::check_target_module_exists(c, "m.layers.10.q_proj"), MatchResult::Match);
  // An excluded key is excluded even when it is not a target at all.
  EXPECT_EQ(peft::check_target_module_exists(c, "m.layers.1.mlp"), MatchResult::Excluded);
}

TEST(TargetMatching, ModulesToSaveExcludeTheModuleAndItsChildren) {
  peft::LoraConfig c;
  c.target_modules = {"lin1", "dense"};
  c.modules_to_save = std::vector<std::string>{"lin1"};
  EXPECT_EQ(peft::check_target_module_exists(c, "lin1"), MatchResult::Excluded);
  EXPECT_EQ(peft::check_target_module_exists(c, "a.lin1.dense"), MatchResult::Excluded);
  EXPECT_EQ(peft::check_target_module_exists(c, "xlin1"), MatchResult::NoMatch);
  EXPECT_EQ(peft::check_target_module_exists(c, "a.dense"), MatchResult::Match);
}

TEST(TargetMatching, PythonRegexSpellingsAreTranslated) {
  EXPECT_EQ(match("a.q_proj", R"((?P<which>q|v)_proj|.*\.(?P<w2>q)_proj)"), MatchResult::Match);
  EXPECT_EQ(match("q_proj", R"(\Aq_proj\Z)"), MatchResult::Match);
  EXPECT_EQ(match("Q_PROJ", "(?i)q_proj"), MatchResult::Match);
}

TEST(TargetMatching, InvalidRegexIsAConfigErrorNamingTheField) {
  peft::LoraConfig c;
  c.target_modules = "model.(q|v";
  try {
    peft::TargetMatcher m(c);
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "target_modules");
  }
  c.target_modules = "(?<=a+)b";  // Python: "look-behind requires fixed-width pattern"; PCRE2 agrees
  EXPECT_THROW(peft::TargetMatcher{c}, peft::ConfigError);
}

// Expected values from CPython's `re` (3.11).
TEST(TargetMatching, LookbehindAndNamedBackReferencesWorkAsInPython) {
  EXPECT_EQ(match("model.score_head", R"(.*(?<!lm)_head)"), MatchResult::Match);
  EXPECT_EQ(match("model.lm_head", R"(.*(?<!lm)_head)"), MatchResult::NoMatch);
  EXPECT_EQ(match("blk.blk", R"((?P<x>[a-z]+)\.(?P=x))"), MatchResult::Match);
  EXPECT_EQ(match("blk.mlp", R"((?P<x>[a-z]+)\.(?P=x))"), MatchResult::NoMatch);
}

TEST(TargetMatching, BackslashZIsTheVeryEndAsInPython) {
  // re.match(r"a\Z", "a\n") is None while re.match(r"a$", "a\n") matches.
  EXPECT_FALSE(peft::PythonRegex(R"(a\Z)", "target_modules").match("a\n"));
  EXPECT_TRUE(peft::PythonRegex(R"(a$)", "target_modules").match("a\n"));
}

TEST(TargetMatching, WordClassesAreUnicodeAsInPython3) {
  EXPECT_EQ(match("layer.\xc3\xbc" "b", R"(.*\.\w+)"), MatchResult::Match);  // "layer.üb"
  EXPECT_EQ(match("layer.-", R"(.*\.\w+)"), MatchResult::NoMatch);
}

TEST(TargetMatching, CatastrophicBacktrackingHitsTheMatchLimitWithAConfigError) {
  peft::LoraConfig c;
  c.target_modules = "(a|aa)+(b|c)+d";
  peft::TargetMatcher m(c);
  try {
    m(std::string(60, 'a') + "ed");  // "d" is present, so PCRE2 cannot rule the key out up front
    FAIL() << "expected the match limit";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "target_modules");
    EXPECT_NE(std::string(e.what()).find("backtracking"), std::string::npos) << e.what();
  }
}

TEST(TargetMatching, NoTargetsMatchesNothing) {
  peft::LoraConfig c;
  EXPECT_EQ(peft::check_target_module_exists(c, "lin0"), MatchResult::NoMatch);
}
