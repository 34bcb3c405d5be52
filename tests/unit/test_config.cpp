// LoraConfig defaults and PEFT's post-init validation (docs/config.md#lora-fields).

#include <gtest/gtest.h>

#include "peft/config/lora_config.hpp"
#include "peft/warnings.hpp"

namespace {

peft::ConfigError expect_config_error(peft::LoraConfig cfg) {
  try {
    cfg.validate();
  } catch (const peft::ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "validate() accepted the config";
  return peft::ConfigError("", "", "", "");
}

peft::LoraConfig with_targets() {
  peft::LoraConfig c;
  c.target_modules = {"q_proj", "v_proj"};
  return c;
}

}  // namespace

TEST(LoraConfigDefaults, MatchPeft020) {
  peft::LoraConfig c;
  EXPECT_EQ(c.r, 8);
  EXPECT_EQ(c.lora_alpha.value, 8.0);
  EXPECT_TRUE(c.lora_alpha.integral);
  EXPECT_EQ(c.lora_dropout, 0.0);
  EXPECT_TRUE(c.target_modules.is_none());
  EXPECT_TRUE(c.exclude_modules.is_none());
  EXPECT_FALSE(c.fan_in_fan_out);
  EXPECT_EQ(c.bias, peft::Bias::none);
  EXPECT_FALSE(c.use_rslora);
  EXPECT_FALSE(c.modules_to_save.has_value());
  EXPECT_TRUE(c.init_lora_weights.is_bool() && c.init_lora_weights.as_bool());
  EXPECT_FALSE(c.layers_to_transform.has_value());
  EXPECT_FALSE(c.layers_pattern.has_value());
  EXPECT_TRUE(c.rank_pattern.empty());
  EXPECT_TRUE(c.alpha_pattern.empty());
  EXPECT_EQ(c.megatron_core, "megatron.core");
  EXPECT_FALSE(c.loftq_config.has_value());
  EXPECT_FALSE(c.eva_config.has_value());
  EXPECT_FALSE(c.corda_config.has_value());
  EXPECT_FALSE(c.use_dora);
  EXPECT_FALSE(c.use_qalora);
  EXPECT_EQ(c.qalora_group_size, 16);
  EXPECT_FALSE(c.lora_bias);
  EXPECT_FALSE(c.ensure_weight_tying);
  EXPECT_FALSE(c.inference_mode);
  EXPECT_FALSE(c.task_type.has_value());
  EXPECT_EQ(*c.peft_version, "0.20.0");
  EXPECT_STREQ(peft::LoraConfig::peft_type, "LORA");
}

TEST(LoraConfigDefaults, SubConfigDefaultsMatchPeft) {
  peft::EvaConfig e;
  EXPECT_EQ(e.rho, 2.0);
  EXPECT_EQ(e.tau, 0.99);
  EXPECT_TRUE(e.use_label_mask);
  EXPECT_EQ(e.label_mask_value, -100);
  EXPECT_FALSE(e.whiten);
  EXPECT_TRUE(e.adjust_scaling_factors);
  peft::CordaConfig c;
  EXPECT_EQ(c.corda_method, "ipm");
  EXPECT_TRUE(c.prune_temporary_fields);
  peft::LoftQConfig l;
  EXPECT_EQ(l.loftq_bits, 4);
  EXPECT_EQ(l.loftq_iter, 1);
}

TEST(LoraConfigTypes, ModuleSpecListDeduplicatesAndKeepsFirstOrder) {
  peft::ModuleSpec s = {"v_proj", "q_proj", "v_proj"};
  ASSERT_TRUE(s.is_list());
  EXPECT_EQ(s.names(), (std::vector<std::string>{"v_proj", "q_proj"}));
  EXPECT_EQ(s, (peft::ModuleSpec{"q_proj", "v_proj"}));  // a set: order is not meaning
}

TEST(LoraConfigTypes, AllLinearIsAStringKeywordInAnyCase) {
  EXPECT_TRUE(peft::ModuleSpec("all-linear").is_all_linear());
  EXPECT_TRUE(peft::ModuleSpec("ALL-Linear").is_all_linear());
  EXPECT_FALSE(peft::ModuleSpec({"all-linear"}).is_all_linear());
  EXPECT_FALSE(peft::ModuleSpec("all-linear.*").is_all_linear());
}

TEST(LoraConfigTypes, NumberRemembersIntOrFloat) {
  peft::LoraConfig c;
  c.lora_alpha = 16;
  EXPECT_TRUE(c.lora_alpha.integral);
  c.lora_alpha = 16.0;
  EXPECT_FALSE(c.lora_alpha.integral);
  EXPECT_EQ(static_cast<double>(c.lora_alpha), 16.0);
}

TEST(LoraConfigTypes, OneOrManyRemembersScalarForm) {
  peft::LoraConfig c;
  c.layers_to_transform = 1;
  EXPECT_TRUE(c.layers_to_transform->scalar);
  c.layers_to_transform = {0, 2};
  EXPECT_FALSE(c.layers_to_transform->scalar);
  c.layers_pattern = "layers";
  EXPECT_TRUE(c.layers_pattern->scalar);
  EXPECT_EQ(c.layers_pattern->values.front(), "layers");
}

TEST(LoraConfigInit, NamesParseCaseInsensitively) {
  peft::LoraConfig c;
  EXPECT_EQ(c.init_method(), peft::InitMethod::Default);
  c.init_lora_weights = false;
  EXPECT_EQ(c.init_method(), peft::InitMethod::Random);
  c.init_lora_weights = "GAUSSIAN";
  EXPECT_EQ(c.init_method(), peft::InitMethod::Gaussian);
  c.init_lora_weights = "OLoRA";
  EXPECT_EQ(c.init_method(), peft::InitMethod::Olora);
  c.init_lora_weights = "pissa_niter_16";
  EXPECT_EQ(c.init_method(), peft::InitMethod::PissaNiter);
  EXPECT_EQ(c.pissa_niter(), 16);
  for (const char* n : {"eva", "pissa", "corda", "loftq", "orthogonal", "mica", "lora_ga"}) {
    c.init_lora_weights = n;
    EXPECT_NO_THROW(c.init_method()) << n;
  }
  EXPECT_EQ(c.init_lora_weights.name(), "lora_ga");  // written back as given
}

TEST(LoraConfigValidation, RejectsUnknownInitNameWithTheKnownOnesAsHint) {
  auto c = with_targets();
  c.init_lora_weights = "foo";
  auto e = expect_config_error(c);
  EXPECT_EQ(e.field(), "init_lora_weights");
  EXPECT_NE(std::string(e.what()).find("\"foo\""), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("gaussian"), std::string::npos);
}

TEST(LoraConfigValidation, RejectsPissaNiterWithoutANumber) {
  auto c = with_targets();
  c.init_lora_weights = "pissa_niter_x";
  EXPECT_EQ(expect_config_error(c).field(), "init_lora_weights");
  c.init_lora_weights = "pissa_fast";
  EXPECT_EQ(expect_config_error(c).field(), "init_lora_weights");
}

TEST(LoraConfigValidation, RejectsDropoutAboveOneButAcceptsNegative) {
  auto c = with_targets();
  c.lora_dropout = 1.5;
  EXPECT_EQ(expect_config_error(c).field(), "lora_dropout");
  c.lora_dropout = -0.1;  // PEFT: silently "no dropout"
  EXPECT_NO_THROW(c.validate());
}

TEST(LoraConfigValidation, RegexTargetsRejectLayerFilters) {
  auto c = with_targets();
  c.target_modules = ".*q_proj";
  c.layers_to_transform = {0};
  EXPECT_EQ(expect_config_error(c).field(), "layers_to_transform");
  c.layers_to_transform.reset();
  c.layers_pattern = "layers";
  EXPECT_EQ(expect_config_error(c).field(), "layers_pattern");
  c.target_modules = "all-linear";
  EXPECT_EQ(expect_config_error(c).field(), "layers_pattern");
}

TEST(LoraConfigValidation, LayersPatternNeedsTruthyLayersToTransform) {
  auto c = with_targets();
  c.layers_pattern = "layers";
  EXPECT_EQ(expect_config_error(c).field(), "layers_to_transform");
  c.layers_to_transform = 0;  // PEFT 0.20.0 quirk: 0 is falsy, rejected
  EXPECT_EQ(expect_config_error(c).field(), "layers_to_transform");
  c.layers_to_transform = std::vector<std::int64_t>{};
  EXPECT_EQ(expect_config_error(c).field(), "layers_to_transform");
  c.layers_to_transform = 1;
  EXPECT_NO_THROW(c.validate());
  auto d = with_targets();
  d.layers_to_transform = 0;  // without a pattern, 0 is fine
  EXPECT_NO_THROW(d.validate());
}

TEST(LoraConfigValidation, DoraRejectsMegatron) {
  auto c = with_targets();
  c.use_dora = true;
  peft::JsonValue m = peft::JsonValue::object();
  m.set("x", 1);
  c.megatron_config = m;
  EXPECT_EQ(expect_config_error(c).field(), "use_dora");
}

TEST(LoraConfigValidation, LoraBiasNeedsBoolInitAndNoDora) {
  auto c = with_targets();
  c.lora_bias = true;
  EXPECT_NO_THROW(c.validate());
  c.init_lora_weights = false;
  EXPECT_NO_THROW(c.validate());
  for (const char* init : {"gaussian", "pissa", "olora", "orthogonal", "eva", "corda", "mica"}) {
    auto d = c;
    d.init_lora_weights = init;
    auto e = expect_config_error(d);
    EXPECT_EQ(e.field(), "lora_bias") << init;
    EXPECT_NE(std::string(e.what()).find(init), std::string::npos);
  }
  c.init_lora_weights = true;
  c.use_dora = true;
  EXPECT_EQ(expect_config_error(c).field(), "lora_bias");
}

TEST(LoraConfigValidation, LoftqNeedsItsConfigAndOtherwiseDropsIt) {
  auto c = with_targets();
  c.init_lora_weights = "loftq";
  EXPECT_EQ(expect_config_error(c).field(), "loftq_config");
  c.loftq_config = peft::LoftQConfig{};
  EXPECT_NO_THROW(c.validate());
  auto d = with_targets();
  d.loftq_config = peft::LoftQConfig{};
  peft::ScopedWarningCapture w;
  d.validate();
  EXPECT_FALSE(d.loftq_config.has_value());
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_NE(w.messages()[0].find("loftq_config"), std::string::npos);
}

TEST(LoraConfigValidation, EvaAndCordaDefaultsAreFilledWithAWarning) {
  peft::ScopedWarningCapture w;
  auto c = with_targets();
  c.init_lora_weights = "eva";
  c.validate();
  ASSERT_TRUE(c.eva_config.has_value());
  EXPECT_EQ(c.eva_config->rho, 2.0);
  auto d = with_targets();
  d.init_lora_weights = "corda";
  d.validate();
  ASSERT_TRUE(d.corda_config.has_value());
  EXPECT_EQ(d.corda_config->corda_method, "ipm");
  EXPECT_EQ(w.messages().size(), 2u);
}

TEST(LoraConfigValidation, IgnoredEvaConfigIsKeptWithAWarning) {
  peft::ScopedWarningCapture w;
  auto c = with_targets();
  c.eva_config = peft::EvaConfig{1.5};
  c.validate();
  EXPECT_TRUE(c.eva_config.has_value());
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_NE(w.messages()[0].find("eva_config"), std::string::npos);
}

TEST(LoraConfigValidation, EvaRhoAndTauBounds) {
  auto c = with_targets();
  c.init_lora_weights = "eva";
  c.eva_config = peft::EvaConfig{};
  c.eva_config->rho = 0.5;
  EXPECT_EQ(expect_config_error(c).field(), "eva_config.rho");
  c.eva_config->rho = 1.0;
  c.eva_config->tau = 1.5;
  EXPECT_EQ(expect_config_error(c).field(), "eva_config.tau");
  c.eva_config->tau = 1.0;
  EXPECT_NO_THROW(c.validate());
}

TEST(LoraConfigValidation, CordaMethodIsAClosedSet) {
  auto c = with_targets();
  c.corda_config = peft::CordaConfig{};
  c.corda_config->corda_method = "kpm";
  peft::ScopedWarningCapture quiet;
  EXPECT_NO_THROW(c.validate());
  c.corda_config->corda_method = "fast";
  EXPECT_EQ(expect_config_error(c).field(), "corda_config.corda_method");
}

TEST(LoraConfigValidation, VariantSubConfigsAreChecked) {
  auto c = with_targets();
  c.velora_config = peft::JsonValue(3);
  auto e = expect_config_error(c);
  EXPECT_EQ(e.field(), "velora_config");
  EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);
  peft::JsonValue v = peft::JsonValue::object();
  v.set("num_groups", 0);
  c.velora_config = v;
  EXPECT_EQ(expect_config_error(c).field(), "velora_config.num_groups");
  v = peft::JsonValue::object();
  v.set("init_type", "bogus");
  c.velora_config = v;
  EXPECT_EQ(expect_config_error(c).field(), "velora_config.init_type");
  c.velora_config.reset();
  v = peft::JsonValue::object();
  v.set("num_samples", 0);
  c.monteclora_config = v;
  EXPECT_EQ(expect_config_error(c).field(), "monteclora_config.num_samples");
  c.monteclora_config.reset();
  v = peft::JsonValue::object();
  v.set("top_k", 0);
  c.arrow_config = v;
  EXPECT_EQ(expect_config_error(c).field(), "arrow_config.top_k");
  c.arrow_config.reset();
  v = peft::JsonValue::object();
  v.set("target_modules_bd_a", peft::JsonValue::Array{"q_proj"});
  v.set("target_modules_bd_b", peft::JsonValue::Array{"q_proj"});
  c.use_bdlora = v;
  EXPECT_EQ(expect_config_error(c).field(), "use_bdlora");
}

TEST(LoraConfigValidation, WarnsForAloraWithoutCausalLm) {
  peft::ScopedWarningCapture w;
  auto c = with_targets();
  c.alora_invocation_tokens = std::vector<std::int64_t>{1, 2};
  c.validate();
  EXPECT_EQ(w.messages().size(), 1u);
  c.task_type = peft::TaskType::CAUSAL_LM;
  c.validate();
  EXPECT_EQ(w.messages().size(), 1u);
}

TEST(LoraConfigValidation, WarnsForRsloraPatternsWithPissa) {
  peft::ScopedWarningCapture w;
  auto c = with_targets();
  c.use_rslora = true;
  c.rank_pattern.set("q_proj", 2);
  c.init_lora_weights = "pissa";
  c.validate();
  ASSERT_EQ(w.messages().size(), 1u);
  EXPECT_NE(w.messages()[0].find("Rank-Stabilized"), std::string::npos);
}

TEST(LoraConfigValidation, ErrorMessageNamesFieldValueAndHint) {
  auto c = with_targets();
  c.lora_dropout = 2.0;
  auto e = expect_config_error(c);
  const std::string m = e.what();
  EXPECT_NE(m.find("LoraConfig.lora_dropout = 2"), std::string::npos) << m;
  EXPECT_NE(m.find("hint:"), std::string::npos) << m;
  EXPECT_EQ(e.value(), "2");
}

TEST(LoraConfigValidation, ValidateIsIdempotent) {
  auto c = with_targets();
  c.init_lora_weights = "eva";
  peft::ScopedWarningCapture quiet;
  c.validate();
  auto once = c;
  c.validate();
  EXPECT_EQ(c.eva_config, once.eva_config);
}
