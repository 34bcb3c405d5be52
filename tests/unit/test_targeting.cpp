// Injection planning: all-linear, minimal suffixes, fan_in_fan_out, errors
// (docs/matching.md#order-of-operations).

#include <gtest/gtest.h>

#include "peft/targeting/plan.hpp"
#include "peft/warnings.hpp"

namespace {

using peft::ModuleKind;

std::vector<peft::ModuleInfo> two_layer_llama() {
  std::vector<peft::ModuleInfo> m = {{"", ModuleKind::Container, "Model"},
                                     {"model", ModuleKind::Container, "LlamaModel"},
                                     {"model.embed_tokens", ModuleKind::Embedding, "Embedding"}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    m.push_back({p, ModuleKind::Container, "Block"});
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      m.push_back({p + ".self_attn." + n, ModuleKind::Linear, "Linear"});
    m.push_back({p + ".act", ModuleKind::Other, "SiLU"});
  }
  m.push_back({"lm_head", ModuleKind::Linear, "Linear"});
  return m;
}

std::vector<std::string> keys(const peft::TargetPlan& p) {
  std::vector<std::string> out;
  for (const auto& l : p.layers) out.push_back(l.key);
  return out;
}

peft::LoraConfig targets(peft::ModuleSpec t) {
  peft::LoraConfig c;
  c.target_modules = std::move(t);
  return c;
}

}  // namespace

TEST(MinimalTargetSuffixes, ReproducesPeftVectors) {
  EXPECT_EQ(peft::minimal_target_suffixes({"bar.baz"}, {"foo.bar"}), (std::vector<std::string>{"baz"}));
  EXPECT_EQ(peft::minimal_target_suffixes({"a.b.c", "d.e.f", "g.h.i"}, {"a.b.x", "d.x.f", "x.h.i"}),
            (std::vector<std::string>{"c", "e.f", "g.h.i"}));
  EXPECT_EQ(peft::minimal_target_suffixes({"1.foo", "2.foo", "bar.baz"}, {"3.foo", "bar.bla"}),
            (std::vector<std::string>{"1.foo", "2.foo", "baz"}));
}

TEST(TargetPlan, ListTargetsInNamedModulesOrderWithResolvedSettings) {
  auto c = targets({"v_proj", "q_proj"});
  c.r = 4;
  c.lora_alpha = 8;
  c.rank_pattern.set("layers.1.self_attn.v_proj", 2);
  const auto plan = peft::plan_targets(c, two_layer_llama());
  EXPECT_EQ(keys(plan), (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                                  "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  EXPECT_EQ(plan.layers[3].settings.r, 2);
  EXPECT_EQ(plan.layers[3].settings.scaling, 4.0);
  EXPECT_EQ(plan.layers[0].settings.scaling, 2.0);
}

TEST(TargetPlan, AllLinearTargetsTheOutputLayerOfCustomModels) {
  const auto plan = peft::plan_targets(targets("all-linear"), two_layer_llama());
  EXPECT_EQ(plan.layers.size(), 9u);
  EXPECT_EQ(plan.layers.back().key, "lm_head");
  ASSERT_TRUE(plan.config.target_modules.is_list());
  EXPECT_EQ(plan.config.target_modules.names().size(), 9u);  // < 20: full keys are saved
}

TEST(TargetPlan, AllLinearSkipsADeclaredOutputLayer) {
  peft::PlanOptions o;
  o.output_layer = "lm_head";
  const auto plan = peft::plan_targets(targets("all-linear"), two_layer_llama(), o);
  EXPECT_EQ(plan.layers.size(), 8u);
}

TEST(TargetPlan, TwentyOrMoreTargetsAreSavedAsMinimalSuffixes) {
  std::vector<peft::ModuleInfo> m = {{"", ModuleKind::Container, "M"}};
  for (int i = 0; i < 5; ++i)
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      m.push_back({"layers." + std::to_string(i) + ".attn." + n, ModuleKind::Linear, "Linear"});
  m.push_back({"head", ModuleKind::Linear, "Linear"});
  const auto plan = peft::plan_targets(targets("ALL-LINEAR"), m);
  EXPECT_EQ(plan.layers.size(), 21u);
  EXPECT_EQ(plan.config.target_modules.names(),
            (std::vector<std::string>{"head", "k_proj", "o_proj", "q_proj", "v_proj"}));
}

TEST(TargetPlan, FanInFanOutFollowsTheLayerKindAndTheLastLayerWins) {
  std::vector<peft::ModuleInfo> m = {{"", ModuleKind::Container, "GPT2"},
                                     {"h.0.c_fc", ModuleKind::Conv1D, "Conv1D", true},
                                     {"lm_head", ModuleKind::Linear, "Linear"}};
  peft::ScopedWarningCapture w;
  const auto plan = peft::plan_targets(targets({"c_fc", "lm_head"}), m);
  EXPECT_TRUE(plan.layers[0].fan_in_fan_out);
  EXPECT_FALSE(plan.layers[1].fan_in_fan_out);
  EXPECT_FALSE(plan.config.fan_in_fan_out);
  EXPECT_EQ(w.messages().size(), 2u);
  const auto only_conv = peft::plan_targets(targets({"c_fc"}), m);
  EXPECT_TRUE(only_conv.config.fan_in_fan_out);
}

TEST(TargetPlan, NothingFoundListsTheLayersThatCouldBeTargeted) {
  try {
    peft::plan_targets(targets({"nope"}), two_layer_llama());
    FAIL();
  } catch (const peft::TargetNotFoundError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'nope'"), std::string::npos) << m;
    EXPECT_NE(m.find("`q_proj`"), std::string::npos) << m;
    EXPECT_NE(m.find("`lm_head`"), std::string::npos) << m;
  }
}

TEST(TargetPlan, AllExcludedIsItsOwnError) {
  auto c = targets({"q_proj"});
  c.exclude_modules = {"q_proj"};
  try {
    peft::plan_targets(c, two_layer_llama());
    FAIL();
  } catch (const peft::TargetNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("excluded"), std::string::npos);
  }
}

TEST(TargetPlan, MatchingAnUnsupportedModuleIsAnError) {
  EXPECT_THROW(peft::plan_targets(targets(".*act"), two_layer_llama()), peft::UnsupportedModuleError);
  EXPECT_THROW(peft::plan_targets(targets("model\\.layers\\.0(\\..*)?"), two_layer_llama()),
               peft::UnsupportedModuleError);
  EXPECT_THROW(peft::plan_targets(targets({"act"}), two_layer_llama()), peft::UnsupportedModuleError);
}

TEST(TargetPlan, EmbeddingsAndConvolutionsArePlannedButAllLinearSkipsThem) {
  const auto plan = peft::plan_targets(targets({"embed_tokens"}), two_layer_llama());
  ASSERT_EQ(keys(plan), (std::vector<std::string>{"model.embed_tokens"}));
  EXPECT_EQ(plan.layers[0].kind, ModuleKind::Embedding);
  std::vector<peft::ModuleInfo> m = {{"", ModuleKind::Container, "Net"},
                                     {"emb", ModuleKind::Embedding, "Embedding"},
                                     {"conv", ModuleKind::Conv, "Conv2d"},
                                     {"head", ModuleKind::Linear, "Linear"}};
  EXPECT_EQ(keys(peft::plan_targets(targets("all-linear"), m)), (std::vector<std::string>{"head"}));
  EXPECT_EQ(keys(peft::plan_targets(targets({"conv", "emb"}), m)), (std::vector<std::string>{"emb", "conv"}));
}

TEST(TargetPlan, OrthogonalInitNeedsAnEvenResolvedRank) {
  auto c = targets({"q_proj"});
  c.init_lora_weights = "orthogonal";
  c.r = 4;
  EXPECT_NO_THROW(peft::plan_targets(c, two_layer_llama()));
  c.rank_pattern.set("layers.1.self_attn.q_proj", 3);
  EXPECT_THROW(peft::plan_targets(c, two_layer_llama()), peft::ConfigError);
}

TEST(TargetPlan, NoTargetsUsesTheArchitectureDefault) {
  peft::LoraConfig c;
  EXPECT_THROW(peft::plan_targets(c, two_layer_llama()), peft::ConfigError);
  peft::PlanOptions llama;
  llama.model_type = "llama";
  const auto plan = peft::plan_targets(c, two_layer_llama(), llama);
  EXPECT_EQ(plan.layers.size(), 4u);
  EXPECT_EQ(plan.config.target_modules, (peft::ModuleSpec{"q_proj", "v_proj"}));
}

TEST(TargetPlan, ChildrenOfExistingLoraLayersAreNeverTargets) {
  std::vector<peft::ModuleInfo> m = {{"", ModuleKind::Container, "M"},
                                     {"q_proj", ModuleKind::LoraLayer, "peft::Linear"},
                                     {"q_proj.lora_A.default", ModuleKind::Linear, "Linear"}};
  const auto plan = peft::plan_targets(targets("all-linear"), m);
  EXPECT_EQ(keys(plan), (std::vector<std::string>{"q_proj"}));
}

TEST(TargetPlan, WarnsWhenExcludeModulesExcludedNothing) {
  auto c = targets({"q_proj"});
  c.exclude_modules = {"nope"};
  peft::ScopedWarningCapture w;
  peft::plan_targets(c, two_layer_llama());
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_NE(w.messages()[0].find("exclude_modules"), std::string::npos);
}
