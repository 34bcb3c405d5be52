// merge_utils (PEFT's combination functions) and add_weighted_adapter (docs/lifecycle.md#weighted-adapters).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/tuner/combination_ops.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "peft/tuner/weighted_adapter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

namespace merge = peft::merge;

torch::Tensor t2x3(std::vector<float> v) { return torch::tensor(v).reshape({2, 3}); }

// Two task tensors worked through by hand in the tests below (density 0.5 keeps 3 of 6 values):
//   T1 = [[4, -1, 2], [-3, .5, 1]]      pruned P1 = [[4, 0, 2], [-3, 0, 0]]
//   T2 = [[3, 5, -6], [2, 1, -.25]]     pruned P2 = [[3, 5, -6], [0, 0, 0]]
//   weights [0.5, 2]
std::vector<torch::Tensor> task_tensors() {
  return {t2x3({4, -1, 2, -3, 0.5f, 1}), t2x3({3, 5, -6, 2, 1, -0.25f})};
}
torch::Tensor task_weights() { return merge::weights_tensor({0.5, 2.0}); }

void expect_equal(const torch::Tensor& got, const torch::Tensor& want) {
  EXPECT_TRUE(peft_test::equal(got, want)) << "got\n" << got << "\nwant\n" << want;
}

/// lin0 (10 -> 20) -> relu -> lin1 (20 -> 6).
struct TwoLayer : peft_test::Mlp {
  TwoLayer() : Mlp(peft_test::MlpOptions({10, 20, 6})) {}
};

/// Options with only combination_type set (a braced {"type"} leaves the other fields to
/// -Wmissing-field-initializers).
peft::WeightedAdapterOptions combination(decltype(peft::WeightedAdapterOptions::combination_type) type) {
  peft::WeightedAdapterOptions o;
  o.combination_type = std::move(type);
  return o;
}

const auto lora = peft_test::lora_config;

/// `default` (lin0, lin1; r 4, alpha 8) active, `other` (lin1; r given, alpha 2), both with
/// random B so they change the output.
peft::LoraModel two_adapters(TwoLayer& net, std::int64_t other_r = 4) {
  torch::manual_seed(0);
  auto pm = peft::get_peft_model(net, lora({"lin0", "lin1"}, 4, 8));
  pm.add_adapter("other", lora({"lin1"}, other_r, 2));
  peft_test::randomise_lora_B(pm);
  return pm;
}

std::shared_ptr<peft::LoraLayer> layer(const peft::LoraModel& pm, const std::string& key) {
  for (const auto& [k, l] : pm.lora_layers())
    if (k == key) return l;
  return nullptr;
}

/// Everything an add_weighted_adapter failure must leave alone.
struct Snapshot {
  std::vector<std::string> adapters, active, params;
  torch::Tensor out;
  Snapshot(peft::LoraModel& pm, TwoLayer& net, const torch::Tensor& x)
      : adapters(pm.adapter_names()), active(pm.active_adapters()), params(peft_test::param_names(*net)),
        out(net(x)) {}
  void expect_same(peft::LoraModel& pm, TwoLayer& net, const torch::Tensor& x) const {
    EXPECT_EQ(pm.adapter_names(), adapters);
    EXPECT_EQ(pm.active_adapters(), active);
    EXPECT_EQ(peft_test::param_names(*net), params);
    EXPECT_TRUE(peft_test::equal(net(x), out));
  }
};

}  // namespace

// ---- merge_utils ----

SEEDED_TEST(MergeUtils, TaskArithmeticIsTheWeightedSum) {
  expect_equal(merge::task_arithmetic(task_tensors(), task_weights()), t2x3({8, 9.5f, -11, 2.5f, 2.25f, 0}));
}

SEEDED_TEST(MergeUtils, MagnitudePruningKeepsTheTopIntDensityTimesNumelValues) {
  auto t = task_tensors()[0];
  expect_equal(merge::magnitude_based_pruning(t, 0.5), t2x3({4, 0, 2, -3, 0, 0}));
  // int(0.34 * 6) = 2: 4 and -3 stay
  expect_equal(merge::magnitude_based_pruning(t, 0.34), t2x3({4, 0, 0, -3, 0, 0}));
  expect_equal(merge::magnitude_based_pruning(t, 0.0), torch::zeros({2, 3}));
}

SEEDED_TEST(MergeUtils, MagnitudePrunePrunesEachTensorThenSums) {
  expect_equal(merge::magnitude_prune(task_tensors(), task_weights(), 0.5), t2x3({8, 10, -11, -1.5f, 0, 0}));
}

SEEDED_TEST(MergeUtils, TiesElectsTheSignOfTheTotalAndAveragesTheAgreeingValues) {
  // Σ P = [[7, 5, -4], [-3, 0, 0]] -> majority [[+, +, -], [-, +, +]]; P1 agrees at (0,0), (1,0),
  // P2 at (0,0), (0,1), (0,2). Weighted: 0.5·P1, 2·P2; (0,0) keeps both -> (2 + 6) / 2.
  expect_equal(merge::ties(task_tensors(), task_weights(), 0.5), t2x3({4, 10, -12, -1.5f, 0, 0}));
}

SEEDED_TEST(MergeUtils, TiesFrequencyElectsTheSignOfTheMajorityCount) {
  // Σ sign(P) = [[2, 1, 0], [-1, 0, 0]] -> majority [[+, +, +], [-, +, +]]: (0,2) now keeps P1's 2·0.5.
  expect_equal(merge::ties(task_tensors(), task_weights(), 0.5, merge::MajoritySignMethod::frequency),
               t2x3({4, 10, 1, -1.5f, 0, 0}));
}

SEEDED_TEST(MergeUtils, DensityOfOneOrMoreWarnsAndDoesNotPrune) {
  peft::ScopedWarningCapture w;
  expect_equal(merge::magnitude_prune(task_tensors(), task_weights(), 1.0),
               merge::task_arithmetic(task_tensors(), task_weights()));
  expect_equal(merge::dare_linear(task_tensors(), task_weights(), 1.5),
               merge::task_arithmetic(task_tensors(), task_weights()));
  ASSERT_FALSE(w.messages().empty());
  EXPECT_NE(w.messages().front().find("no pruning will be performed"), std::string::npos);
}

SEEDED_TEST(MergeUtils, NegativeDensityIsAConfigError) {
  EXPECT_THROW(merge::ties(task_tensors(), task_weights(), -0.1), peft::ConfigError);
  EXPECT_THROW(merge::prune(task_tensors()[0], -1, merge::PruneMethod::random, true), peft::ConfigError);
  EXPECT_THROW(merge::parse_majority_sign_method("median"), peft::ConfigError);
}

SEEDED_TEST(MergeUtils, RandomPruningKeepsABernoulliMaskAndRescales) {
  auto t = torch::arange(1, 2001, torch::kFloat32);
  torch::manual_seed(7);
  auto p = merge::random_pruning(t, 0.25, true);
  auto kept = p != 0;
  // kept values are t / density, dropped ones 0; about a quarter is kept
  EXPECT_TRUE(peft_test::equal(p.masked_select(kept), t.masked_select(kept) / 0.25));
  const double frac = kept.to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(frac, 0.25, 0.05);
  // the mask comes from the default generator: same seed, same mask
  torch::manual_seed(7);
  EXPECT_TRUE(peft_test::equal(merge::random_pruning(t, 0.25, true), p));
  torch::manual_seed(7);
  EXPECT_TRUE(peft_test::equal(merge::random_pruning(t, 0.25, false), p * 0.25));
}

SEEDED_TEST(MergeUtils, DareLinearIsTaskArithmeticOfRandomlyPrunedTensors) {
  auto ts = task_tensors();
  torch::manual_seed(3);
  auto got = merge::dare_linear(ts, task_weights(), 0.5);
  torch::manual_seed(3);
  auto p1 = merge::random_pruning(ts[0], 0.5, true);
  auto p2 = merge::random_pruning(ts[1], 0.5, true);
  expect_equal(got, merge::task_arithmetic({p1, p2}, task_weights()));
}

SEEDED_TEST(MergeUtils, DareTiesElectsSignsOnTheRandomlyPrunedTensors) {
  auto ts = task_tensors();
  torch::manual_seed(5);
  auto got = merge::dare_ties(ts, task_weights(), 0.5);
  torch::manual_seed(5);
  auto stack = torch::stack({merge::random_pruning(ts[0], 0.5, true), merge::random_pruning(ts[1], 0.5, true)});
  auto mask = merge::calculate_majority_sign_mask(stack);
  expect_equal(got, merge::disjoint_merge(stack * task_weights().view({2, 1, 1}), mask));
  // without pruning it is the plain sign-elected mean
  peft::ScopedWarningCapture quiet;
  // T1 + T2 = [[7, 4, -4], [-1, 1.5, .75]] -> majority [[+, +, -], [-, +, +]];
  // 0.5·T1 = [[2, -.5, 1], [-1.5, .25, .5]], 2·T2 = [[6, 10, -12], [4, 2, -.5]]
  expect_equal(merge::dare_ties(ts, task_weights(), 1.0), t2x3({4, 10, -12, -1.5f, 1.125f, 0.5f}));
}

// ---- add_weighted_adapter ----

SEEDED_TEST(AddWeightedAdapter, OneAdapterGivesWeightTimesItsDelta) {
  TwoLayer net;
  auto pm = two_adapters(net);
  for (double w : {0.6, -0.6}) {
    const std::string name = w > 0 ? "pos" : "neg";
    peft::WeightedAdapterOptions o;
    o.combination_type = peft::CombinationType::cat;  // one source: always linear
    ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default"}, {w}, name, o));
    EXPECT_EQ(pm.peft_config(name).r, 4);
    EXPECT_EQ(pm.peft_config(name).lora_alpha.value, 4);
    for (const char* key : {"lin0", "lin1"}) {
      auto l = layer(pm, key);
      EXPECT_EQ(l->settings(name).scaling, 1.0);
      EXPECT_TRUE(peft_test::close(l->delta_weight(name), l->delta_weight("default") * w, 1e-5, 1e-7)) << key;
    }
  }
}

SEEDED_TEST(AddWeightedAdapter, CatReproducesTheSumOfTheSources) {
  TwoLayer net;
  auto pm = two_adapters(net, 2);
  auto x = torch::randn({5, 10});
  pm.set_adapter(std::vector<std::string>{"default", "other"});
  const auto both = net(x);
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {1.0, 1.0}, "cat",
                                         combination(peft::CombinationType::cat)));
  EXPECT_EQ(pm.peft_config("cat").r, 6);  // 4 + 2
  EXPECT_EQ(layer(pm, "lin1")->lora_A("cat")->weight.size(0), 6);
  // lin0 has only `default`: its rows 4..5 stay zero
  EXPECT_TRUE(peft_test::equal(layer(pm, "lin0")->lora_A("cat")->weight.slice(0, 4), torch::zeros({2, 10})));
  pm.set_adapter("cat");
  EXPECT_TRUE(peft_test::close(net(x), both, 1e-5, 1e-6));
  // weighted: delta = Σ w_i Δ_i
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {0.5, -2.0}, "cat2",
                                         combination(peft::CombinationType::cat)));
  auto l = layer(pm, "lin1");
  EXPECT_TRUE(peft_test::close(l->delta_weight("cat2"), 0.5 * l->delta_weight("default") - 2.0 * l->delta_weight("other"),
                              1e-5, 1e-6));
}

SEEDED_TEST(AddWeightedAdapter, SvdOfFullRankScalesEachDeltaTwice) {
  TwoLayer net;
  auto pm = two_adapters(net, 2);
  peft::WeightedAdapterOptions o;  // "svd"
  o.svd_rank = 6;                  // r0 + r1: the SVD reproduces D exactly
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {0.7, 0.5}, "svd", o));
  auto l = layer(pm, "lin1");
  const double s0 = l->settings("default").scaling, s1 = l->settings("other").scaling;
  ASSERT_NE(s0, 1.0);
  // PEFT's quirk: Δ_i already holds s_i and is weighted by w_i·s_i again.
  auto want = 0.7 * s0 * l->delta_weight("default") + 0.5 * s1 * l->delta_weight("other");
  EXPECT_TRUE(peft_test::close(l->delta_weight("svd"), want, 1e-4, 1e-5));
  // default rank: the largest source rank
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {0.7, 0.5}, "svd4", {}));
  EXPECT_EQ(pm.peft_config("svd4").r, 4);
  EXPECT_EQ(l->lora_B("svd4")->weight.sizes(), (std::vector<std::int64_t>{6, 4}));
}

SEEDED_TEST(AddWeightedAdapter, SvdClampBoundsTheFactorsByTheQuantile) {
  TwoLayer net;
  auto pm = two_adapters(net);
  peft::WeightedAdapterOptions o;
  o.svd_clamp = 0.9;
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {1.0, 1.0}, "clamped", o));
  auto l = layer(pm, "lin1");
  auto A = l->lora_A("clamped")->weight, B = l->lora_B("clamped")->weight;
  const double hi = std::max(A.max().item<double>(), B.max().item<double>());
  // the top 10% of the pooled values are cut to the 0.9 quantile: several sit exactly on it
  EXPECT_GT((A == hi).sum().item<std::int64_t>() + (B == hi).sum().item<std::int64_t>(), 1);
  EXPECT_LE(std::max(A.abs().max().item<double>(), B.abs().max().item<double>()), hi);
}

SEEDED_TEST(AddWeightedAdapter, TiesIsFactorWiseWithSignedSquareRootWeights) {
  TwoLayer net;
  auto pm = two_adapters(net);
  peft::WeightedAdapterOptions o;
  o.combination_type = peft::CombinationType::ties;
  o.density = 0.5;
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {0.7, -0.5}, "t", o));
  auto l = layer(pm, "lin1");
  const double c0 = 0.7 * l->settings("default").scaling, c1 = -0.5 * l->settings("other").scaling;
  auto wa = merge::weights_tensor({std::sqrt(c0), -std::sqrt(-c1)});
  auto wb = merge::weights_tensor({std::sqrt(c0), std::sqrt(-c1)});
  expect_equal(l->lora_A("t")->weight,
               merge::ties({l->lora_A("default")->weight, l->lora_A("other")->weight}, wa, 0.5));
  expect_equal(l->lora_B("t")->weight,
               merge::ties({l->lora_B("default")->weight, l->lora_B("other")->weight}, wb, 0.5));
}

SEEDED_TEST(AddWeightedAdapter, NewAdapterIsFrozenInactiveAndTargetsTheUnion) {
  TwoLayer net;
  auto pm = two_adapters(net);
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"other", "default"}, {1.0, 1.0}, "lin",
                                         combination(peft::CombinationType::linear)));
  EXPECT_EQ(pm.active_adapters(), std::vector<std::string>{"default"});
  EXPECT_EQ(pm.peft_config("lin").target_modules, peft::ModuleSpec({"lin0", "lin1"}));
  EXPECT_TRUE(pm.peft_config("lin").rank_pattern.empty());
  for (const auto& p : net->named_parameters()) {
    if (p.key().find(".lin.") != std::string::npos) {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
  }
  EXPECT_EQ(pm.targeted_module_names("lin"), (std::vector<std::string>{"lin0", "lin1"}));
}

SEEDED_TEST(AddWeightedAdapter, RegexTargetsAreJoinedAsAlternatives) {
  TwoLayer net;
  torch::manual_seed(0);
  auto pm = peft::get_peft_model(net, lora(peft::ModuleSpec::regex("lin0"), 4, 4));
  pm.add_adapter("b", lora(peft::ModuleSpec::regex("lin1"), 4, 4));
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "b"}, {1.0, 1.0}, "w", combination(peft::CombinationType::linear)));
  EXPECT_EQ(pm.peft_config("w").target_modules.pattern(), "(lin0)|(lin1)");
}

SEEDED_TEST(AddWeightedAdapter, InheritsUseRsloraSoTheScalingIsSqrtR) {
  TwoLayer net;
  auto c = lora({"lin0"}, 4, 8);
  c.use_rslora = true;
  auto pm = peft::get_peft_model(net, c);
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default"}, {1.0}, "w"));
  EXPECT_DOUBLE_EQ(layer(pm, "lin0")->settings("w").scaling, 2.0);  // 4 / sqrt(4)
}

SEEDED_TEST(AddWeightedAdapter, RankRules) {
  TwoLayer net;
  auto pm = two_adapters(net, 2);
  auto x = torch::randn({3, 10});
  const Snapshot before(pm, net, x);
  for (const char* type : {"linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"}) {
    peft::WeightedAdapterOptions o;
    o.combination_type = peft::parse_combination_type(type);
    o.density = 0.5;
    EXPECT_THROW(peft::add_weighted_adapter(pm, {"default", "other"}, {1.0, 1.0}, "w", o), peft::ConfigError) << type;
  }
  before.expect_same(pm, net, x);
  peft::WeightedAdapterOptions o;
  o.combination_type = peft::CombinationType::magnitude_prune_svd;
  o.density = 0.5;
  o.svd_rank = 3;
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {1.0, 1.0}, "w", o));
  EXPECT_EQ(pm.peft_config("w").r, 3);
  EXPECT_EQ(pm.peft_config("w").lora_alpha.value, 3);
}

SEEDED_TEST(AddWeightedAdapter, BadArgumentsChangeNothing) {
  TwoLayer net;
  auto pm = two_adapters(net);
  auto x = torch::randn({3, 10});
  const Snapshot before(pm, net, x);
  auto call = [&](std::vector<std::string> adapters, std::vector<double> weights, peft::WeightedAdapterOptions o) {
    peft::add_weighted_adapter(pm, adapters, weights, "w", o);
  };
  peft::WeightedAdapterOptions ties;
  ties.combination_type = peft::CombinationType::ties;
  EXPECT_THROW(call({"default", "other"}, {1, 1}, ties), peft::ConfigError);  // no density
  ties.density = -0.5;
  EXPECT_THROW(call({"default", "other"}, {1, 1}, ties), peft::ConfigError);
  ties.density = 0.5;
  EXPECT_THROW(ties.majority_sign_method = merge::parse_majority_sign_method("mode"), peft::ConfigError);
  ties.majority_sign_method = static_cast<merge::MajoritySignMethod>(7);  // outside PEFT's set
  EXPECT_THROW(call({"default", "other"}, {1, 1}, ties), peft::ConfigError);
  EXPECT_THROW(call({"default", "missing"}, {1, 1}, {}), peft::Error);
  EXPECT_THROW(call({"default", "other"}, {1}, {}), peft::ConfigError);
  EXPECT_THROW(call({}, {}, {}), peft::ConfigError);
  EXPECT_THROW(peft::parse_combination_type("average"), peft::ConfigError);
  EXPECT_THROW(call({"default", "other"}, {1, 1}, combination(static_cast<peft::CombinationType>(42))),
               peft::ConfigError);
  peft::WeightedAdapterOptions svd;
  svd.svd_clamp = 1.5;
  EXPECT_THROW(call({"default", "other"}, {1, 1}, svd), peft::ConfigError);
  svd.svd_clamp.reset();
  svd.svd_driver = "gesvdj";  // CUDA only
  EXPECT_THROW(call({"default", "other"}, {1, 1}, svd), peft::ConfigError);
  before.expect_same(pm, net, x);
  // a regex source and a list source
  pm.add_adapter("rx", lora(peft::ModuleSpec::regex("lin0"), 4, 4));
  const Snapshot with_rx(pm, net, x);
  EXPECT_THROW(call({"default", "rx"}, {1, 1}, combination(peft::CombinationType::linear)), peft::ConfigError);
  with_rx.expect_same(pm, net, x);
}

SEEDED_TEST(AddWeightedAdapter, AnExistingNameWarnsAndChangesNothing) {
  TwoLayer net;
  auto pm = two_adapters(net);
  auto x = torch::randn({3, 10});
  pm.set_adapter("other");
  const Snapshot before(pm, net, x);
  const auto old_A = layer(pm, "lin1")->lora_A("other")->weight.clone();
  peft::ScopedWarningCapture w;
  EXPECT_FALSE(peft::add_weighted_adapter(pm, {"default"}, {2.0}, "other"));
  EXPECT_EQ(w.messages().size(), 1u);
  before.expect_same(pm, net, x);
  EXPECT_TRUE(peft_test::equal(layer(pm, "lin1")->lora_A("other")->weight, old_A));
}

SEEDED_TEST(AddWeightedAdapter, SvdTransposesFanInFanOutDeltasBeforeDecomposing) {
  peft_test::OneLayer<peft::Conv1D> net("c_attn", peft::Conv1D(6, 10));
  torch::manual_seed(1);
  auto c = lora({"c_attn"}, 2, 4);
  c.fan_in_fan_out = true;
  auto pm = peft::get_peft_model(net, c);
  c.lora_alpha = 3LL;
  pm.add_adapter("other", c);
  peft_test::randomise_lora_B(pm);
  peft::WeightedAdapterOptions o;
  o.svd_rank = 4;
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "other"}, {0.7, 0.5}, "w", o));
  auto l = layer(pm, "c_attn");
  EXPECT_EQ(l->lora_A("w")->weight.sizes(), (std::vector<std::int64_t>{4, 10}));  // [R, in]
  EXPECT_EQ(l->lora_B("w")->weight.sizes(), (std::vector<std::int64_t>{6, 4}));   // [out, R]
  const double s0 = l->settings("default").scaling, s1 = l->settings("other").scaling;
  auto want = 0.7 * s0 * l->delta_weight("default") + 0.5 * s1 * l->delta_weight("other");  // [in, out]
  EXPECT_TRUE(peft_test::close(l->delta_weight("w"), want, 1e-4, 1e-5));
}

SEEDED_TEST(AddWeightedAdapter, ALayerTheCopiedConfigTargetsWithoutAnySourceIsAnError) {
  TwoLayer net;
  torch::manual_seed(0);
  auto pm = peft::get_peft_model(net, lora({"lin0"}, 4, 4));
  auto b = lora({"lin0", "lin1"}, 4, 4);
  b.exclude_modules = peft::ModuleSpec({"lin1"});  // b sits on lin0 only, but names lin1
  pm.add_adapter("b", b);
  auto x = torch::randn({3, 10});
  const Snapshot before(pm, net, x);
  // the new config is default's (no exclusions) with targets {lin0, lin1}: lin1 has no source
  EXPECT_THROW(peft::add_weighted_adapter(pm, {"default", "b"}, {1, 1}, "w", combination(peft::CombinationType::linear)),
               peft::Error);
  before.expect_same(pm, net, x);
  // with b first, its exclusion is copied too and the combination works
  EXPECT_TRUE(peft::add_weighted_adapter(pm, {"b", "default"}, {1, 1}, "w", combination(peft::CombinationType::linear)));
  EXPECT_EQ(pm.targeted_module_names("w"), std::vector<std::string>{"lin0"});
}

SEEDED_TEST(AddWeightedAdapter, RankPatternRaisesTheSourceRankAndCatKeepsEveryLayersRank) {
  TwoLayer net;
  torch::manual_seed(0);
  auto a = lora({"lin0", "lin1"}, 4, 4);
  a.rank_pattern.set("lin1", 2);
  auto pm = peft::get_peft_model(net, a);
  pm.add_adapter("b", lora({"lin0", "lin1"}, 4, 8));
  peft_test::randomise_lora_B(pm);
  auto x = torch::randn({3, 10});
  const Snapshot before(pm, net, x);
  // equal ρ (max(4, 2) = 4) passes the rank rule, but lin1 holds ranks 2 and 4: cannot stack
  EXPECT_THROW(peft::add_weighted_adapter(pm, {"default", "b"}, {1, 1}, "w", combination(peft::CombinationType::linear)),
               peft::ConfigError);
  before.expect_same(pm, net, x);
  ASSERT_TRUE(peft::add_weighted_adapter(pm, {"default", "b"}, {0.5, 2}, "w", combination(peft::CombinationType::cat)));
  EXPECT_EQ(pm.peft_config("w").r, 8);
  auto l = layer(pm, "lin1");
  EXPECT_EQ(l->lora_A("w")->weight.size(0), 8);
  EXPECT_TRUE(peft_test::equal(l->lora_A("w")->weight.slice(0, 6), torch::zeros({2, 20})));  // 2 + 4 used
  EXPECT_TRUE(peft_test::close(l->delta_weight("w"), 0.5 * l->delta_weight("default") + 2 * l->delta_weight("b"),
                              1e-5, 1e-6));
}
