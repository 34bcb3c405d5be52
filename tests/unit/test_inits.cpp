// Inits that rewrite the base weight (docs/init.md#strategies-at-a-glance): PiSSA, PiSSA-niter, OLoRA,
// CorDA on small
// hand-checkable matrices; their wiring into LoraLayer / injection / preprocess_corda; and the
// save-time conversion and the explicit load choices
// (docs/file-format.md#converting-pissa-olora-and-corda-adapters).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "peft/init/base_rewrite.hpp"
#include "peft/init/corda_preprocess.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/init_conversion.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

namespace fs = std::filesystem;

/// peft_test::close in float32 (bf16 results too), atol only.
::testing::AssertionResult close(const torch::Tensor& a, const torch::Tensor& b, double atol = 1e-5) {
  return peft_test::close(a.to(torch::kFloat32), b.to(torch::kFloat32), 0.0, atol);
}

torch::Tensor delta(const peft::InitFactors& f, double s, bool fifo = false) {
  return peft::lora_delta_weight(f.lora_A, f.lora_B, s, fifo);
}

/// lin0 (6 -> 5) -> tanh -> lin1 (5 -> 4).
struct Net : peft_test::Mlp {
  Net() : Mlp(peft_test::MlpOptions({6, 5, 4}).activation(peft_test::Activation::Tanh)) {}
};

peft::LoraConfig config(const std::string& init, std::int64_t r = 2) {
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec({"lin0", "lin1"});
  c.r = r;
  c.lora_alpha = 4;
  c.init_lora_weights = init;
  return c;
}

}  // namespace

// ---- PiSSA ----

SEEDED_TEST(PissaInit, OnADiagonalMatrixMovesTheLargestSingularValuesIntoTheAdapter) {
  auto W = torch::diag(torch::tensor({3.f, 2.f, 1.f}));
  auto f = peft::pissa_init(W, /*r=*/1, /*scaling=*/1.0, false);
  EXPECT_TRUE(close(delta(f, 1.0), torch::diag(torch::tensor({3.f, 0.f, 0.f}))));
  EXPECT_TRUE(close(f.base_weight, torch::diag(torch::tensor({0.f, 2.f, 1.f}))));
  EXPECT_NEAR(std::abs(f.lora_A[0][0].item<float>()), std::sqrt(3.f), 1e-6);
}

SEEDED_TEST(PissaInit, DividesTheSingularValuesByScaling) {
  auto W = torch::diag(torch::tensor({4.f, 1.f}));
  auto f = peft::pissa_init(W, 1, /*scaling=*/4.0, false);
  EXPECT_TRUE(close(torch::matmul(f.lora_B, f.lora_A), torch::diag(torch::tensor({1.f, 0.f}))));
  EXPECT_TRUE(close(f.base_weight, torch::diag(torch::tensor({0.f, 1.f}))));
}

SEEDED_TEST(PissaInit, ResidualPlusDeltaIsTheWeightAlsoForFanInFanOut) {
  torch::manual_seed(0);
  auto W = torch::randn({7, 5});  // stored [in=7, out=5]
  auto f = peft::pissa_init(W, 3, 2.0, /*fan_in_fan_out=*/true);
  EXPECT_EQ(f.lora_A.sizes(), (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(f.lora_B.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_TRUE(close(f.base_weight + delta(f, 2.0, true), W));
}

SEEDED_TEST(PissaInit, KeepsABf16WeightInBf16AndRejectsOtherDtypes) {
  auto W = torch::randn({4, 4}).to(torch::kBFloat16);
  auto f = peft::pissa_init(W, 2, 1.0, false);
  EXPECT_EQ(f.base_weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(f.lora_A.scalar_type(), torch::kFloat32);
  try {
    peft::pissa_init(torch::randn({4, 4}, torch::kFloat64), 2, 1.0, false);
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);
    EXPECT_NE(std::string(e.what()).find("Please initialize PiSSA under float32"), std::string::npos);
  }
  EXPECT_THROW(peft::olora_init(torch::ones({3, 3}, torch::kInt32), 1, 1.0), peft::ConfigError);
  EXPECT_THROW(peft::check_corda(torch::ones({3, 3}, torch::kFloat64), 1, false, nullptr, ""), peft::ConfigError);
}

SEEDED_TEST(PissaInit, RankAboveTheMatrixRankIsAConfigError) {
  EXPECT_THROW(peft::pissa_init(torch::randn({3, 5}), 4, 1.0, false), peft::ConfigError);
}

SEEDED_TEST(PissaNiterInit, MatchesExactPissaOnALowRankMatrix) {
  torch::manual_seed(1);
  auto W = torch::matmul(torch::randn({8, 2}), torch::randn({2, 6}));
  auto exact = peft::pissa_init(W, 2, 2.0, false);
  auto fast = peft::pissa_init(W, 2, 2.0, false, /*niter=*/2);
  EXPECT_TRUE(close(delta(fast, 2.0), delta(exact, 2.0), 1e-4));
  EXPECT_TRUE(close(fast.base_weight, torch::zeros_like(W), 1e-4));
}

// ---- OLoRA ----

SEEDED_TEST(OloraInit, TakesQColumnsAndRRowsWithoutDividingByScaling) {
  torch::manual_seed(2);
  auto W = torch::randn({5, 4});
  auto f = peft::olora_init(W, 2, 3.0);
  auto [Q, R] = torch::linalg_qr(W);
  EXPECT_TRUE(close(f.lora_B, Q.slice(1, 0, 2)));
  EXPECT_TRUE(close(f.lora_A, R.slice(0, 0, 2)));
  EXPECT_TRUE(close(torch::matmul(f.lora_B.t(), f.lora_B), torch::eye(2)));
  EXPECT_EQ(f.lora_A[1][0].item<float>(), 0.f);  // R is upper triangular
  EXPECT_TRUE(close(f.base_weight, W - 3.0 * torch::matmul(f.lora_B, f.lora_A)));
}

SEEDED_TEST(OloraInit, RejectsWeightsStoredInFanInFanOutLayout) {
  EXPECT_THROW(peft::check_olora(torch::randn({4, 4}), 2, /*fan_in_fan_out=*/true), peft::ConfigError);
}

// ---- CorDA ----

TEST(CordaCovariance, DividesByTheAbsoluteMaximumThenTakesXtX) {
  auto x = torch::tensor({{{1.f, 2.f}, {-4.f, 0.5f}}});  // [1, 2, 2]; max = 2
  auto c = peft::corda_covariance_term(x);
  // X / 2 = [[0.5, 1], [-2, 0.25]]  ->  X^T X = [[4.25, 0], [0, 1.0625]]
  EXPECT_TRUE(close(c, torch::tensor({{4.25f, 0.f}, {0.f, 1.0625f}})));
  EXPECT_THROW(peft::corda_covariance_term(torch::zeros({3, 2})), peft::Error);  // 0 / 0
}

TEST(CordaEigens, WithIdentityCovarianceAreTheSvdOfTheWeight) {
  auto W = torch::diag(torch::tensor({3.f, 1.f}));
  auto e = peft::corda_eigens(W, torch::eye(2), 2, "ipm");
  // C' = 1.01 I: S = 1.01 * (3, 1) and U diag(S) V^T = W C' inv(C') = W.
  EXPECT_TRUE(close(e.S_WC, torch::tensor({3.03f, 1.01f})));
  EXPECT_TRUE(close(torch::matmul(e.U_WC * e.S_WC, e.V_WC.t()), W));
  auto ipm = peft::corda_eigens(W, torch::eye(2), 1, "ipm");
  auto kpm = peft::corda_eigens(W, torch::eye(2), 1, "kpm");
  EXPECT_NEAR(ipm.S_WC[0].item<float>(), 3.03f, 1e-5);
  EXPECT_NEAR(kpm.S_WC[0].item<float>(), 1.01f, 1e-5);
  EXPECT_THROW(peft::corda_eigens(W, torch::eye(2), 1, "xpm"), peft::ConfigError);
}

SEEDED_TEST(CordaInit, ResidualPlusDeltaIsTheWeightAndTheFactorsUseSqrtOfSOverScaling) {
  torch::manual_seed(3);
  auto W = torch::randn({4, 3});
  auto X = torch::randn({10, 3});
  auto e = peft::corda_eigens(W, peft::corda_covariance_term(X), 2, "ipm");
  auto f = peft::corda_init(W, e, 2, 2.0);
  EXPECT_TRUE(close(f.base_weight + delta(f, 2.0), W));
  EXPECT_TRUE(close(f.lora_B, e.U_WC * torch::sqrt(e.S_WC / 2.0)));
  peft::CordaEigens wrong{e.S_WC, e.U_WC.slice(0, 0, 3), e.V_WC};
  EXPECT_THROW(peft::check_corda(W, 2, false, &wrong, "m"), peft::ConfigError);
}

// ---- in a model ----

SEEDED_TEST(BaseRewriteInits, KeepTheOutputAtCreationAndRewriteTheBase) {
  for (const std::string init : {"pissa", "pissa_niter_3", "olora"}) {
    torch::manual_seed(4);
    Net net;
    auto x = torch::randn({3, 6});
    auto before = net->forward(x);
    auto w0 = net->lin0->weight.clone();
    peft::ScopedWarningCapture quiet;
    auto pm = peft::get_peft_model(net, config(init));
    EXPECT_TRUE(close(net->forward(x), before)) << init;
    EXPECT_FALSE(torch::equal(net->lin0->weight, w0)) << init;
    EXPECT_TRUE(close(net->lin0->weight + net->lin0->delta_weight("default"), w0)) << init;
    auto off = pm.disable_adapter();
    EXPECT_FALSE(close(net->forward(x), before, 1e-3)) << init << ": disabled = residual model";
  }
}

SEEDED_TEST(BaseRewriteInits, ASecondAdapterNextToPissaWarns) {
  Net net;
  peft::ScopedWarningCapture w;
  auto pm = peft::get_peft_model(net, config("pissa"));
  EXPECT_TRUE(w.messages().empty());
  pm.add_adapter("other", config("gaussian"));
  ASSERT_FALSE(w.messages().empty());
  EXPECT_EQ(w.messages().back().rfind("PiSSA changes the base weights of the model", 0), 0u);
}

SEEDED_TEST(BaseRewriteInits, LoraBiasIsRejectedByConfigValidation) {
  for (const std::string init : {"pissa", "pissa_niter_2", "olora", "corda"}) {
    auto c = config(init);
    c.lora_bias = true;
    peft::ScopedWarningCapture quiet;
    EXPECT_THROW(c.validate(), peft::ConfigError) << init;
  }
}

SEEDED_TEST(Corda, WithoutPreprocessingFailsNamingTheModuleAndChangesNothing) {
  Net net;
  auto w0 = net->lin0->weight.clone();
  peft::ScopedWarningCapture quiet;
  try {
    peft::get_peft_model(net, config("corda"));
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lin0"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("preprocess_corda"), std::string::npos);
  }
  EXPECT_TRUE(peft_test::equal(net->lin0->weight, w0));
  EXPECT_TRUE(net->lin0->plain());
}

SEEDED_TEST(Corda, PreprocessAttachesEigensThatTheInitConsumes) {
  torch::manual_seed(5);
  Net net;
  auto x = torch::randn({4, 6});
  auto before = net->forward(x);
  auto cfg = config("corda");
  peft::ScopedWarningCapture quiet;
  std::vector<std::size_t> progress;
  peft::CordaOptions opts;
  opts.progress = [&](const peft::CordaProgress& p) { progress.push_back(p.done); };
  net->train();
  peft::preprocess_corda(net.ptr(), cfg, [&] {
    for (int i = 0; i < 3; ++i) net->forward(torch::randn({1, 5, 6}));
  }, opts);
  EXPECT_TRUE(net->is_training());  // training flags restored
  EXPECT_EQ(progress, (std::vector<std::size_t>{1, 2}));
  ASSERT_TRUE(net->lin0->corda_eigens().has_value());
  EXPECT_EQ(net->lin0->corda_eigens()->U_WC.sizes(), (std::vector<int64_t>{5, 2}));
  net->eval();
  auto pm = peft::get_peft_model(net, cfg);
  EXPECT_TRUE(close(net->forward(x), before));
  EXPECT_FALSE(net->lin0->corda_eigens().has_value());
}

SEEDED_TEST(Corda, StockLinearTargetsCannotBeObserved) {
  auto seq = torch::nn::Sequential(torch::nn::Linear(3, 3));
  auto cfg = config("corda");
  cfg.target_modules = peft::ModuleSpec({"0"});
  peft::ScopedWarningCapture quiet;
  EXPECT_THROW(peft::preprocess_corda(seq.ptr(), cfg, [&] { seq->forward(torch::randn({2, 3})); }),
               peft::UnsupportedModuleError);
}

// ---- conversion and loading ----

SEEDED_TEST(InitConversion, DoublesRankAndAlphaAndStacksInitialFactors) {
  auto c = config("pissa");
  c.rank_pattern.set("lin1", 3);
  c.alpha_pattern.set("lin1", peft::Number(1.5));
  auto conv = peft::converted_lora_config(c);
  EXPECT_TRUE(conv.init_lora_weights.is_bool() && conv.init_lora_weights.as_bool());
  EXPECT_EQ(conv.r, 4);
  EXPECT_EQ(conv.lora_alpha.value, 8.0);
  EXPECT_TRUE(conv.lora_alpha.integral);
  EXPECT_EQ(*conv.rank_pattern.find("lin1"), 6);
  EXPECT_EQ(conv.alpha_pattern.find("lin1")->value, 3.0);
  c.use_rslora = true;
  EXPECT_THROW(peft::converted_lora_config(c), peft::ConfigError);
  c.rank_pattern = {};
  c.alpha_pattern = {};
  EXPECT_NEAR(peft::converted_lora_config(c).lora_alpha.value, 4 * std::sqrt(2.0), 1e-12);

  peft::SafetensorsFile initial;
  initial.tensors = {{"m.lora_A.weight", torch::tensor({{1.f, 2.f}})}, {"m.lora_B.weight", torch::tensor({{3.f}})}};
  auto out = peft::convert_mutated_to_lora(
      {{"m.lora_A.weight", torch::tensor({{5.f, 6.f}})}, {"m.lora_B.weight", torch::tensor({{7.f}})}}, initial, "f");
  EXPECT_TRUE(peft_test::equal(out[0].second, torch::tensor({{5.f, 6.f}, {1.f, 2.f}})));
  EXPECT_TRUE(peft_test::equal(out[1].second, torch::tensor({{7.f, -3.f}})));
}

SEEDED_TEST(InitLoading, RequiresAChoiceAndBothChoicesReproduceTheTrainedModel) {
  const auto dir = peft_test::scratch_dir("inits_load");
  torch::manual_seed(6);
  Net original;
  auto x = torch::randn({3, 6});
  Net net;
  net->lin0->weight.data().copy_(original->lin0->weight);
  net->lin1->weight.data().copy_(original->lin1->weight);
  net->lin0->bias.data().copy_(original->lin0->bias);
  net->lin1->bias.data().copy_(original->lin1->bias);
  peft::ScopedWarningCapture quiet;
  auto pm = peft::get_peft_model(net, config("olora"));
  peft::save_pretrained(pm, dir / "initial");
  peft_test::randomise_lora_B(pm);
  const auto trained = net->forward(x);
  peft::save_pretrained(pm, dir / "trained");
  peft::SaveOptions conv;
  conv.path_initial_model_for_weight_conversion = dir / "initial";
  peft::save_pretrained(pm, dir / "converted", {}, conv);

  auto fresh = [&] {
    Net n;
    torch::NoGradGuard g;
    for (auto& p : n->named_parameters()) p.value().copy_(original->named_parameters()[p.key()]);
    return n;
  };
  {
    Net n = fresh();
    auto w0 = n->lin0->weight.clone();
    EXPECT_THROW(peft::from_pretrained(n.ptr(), dir / "trained"), peft::ConfigError);
    EXPECT_TRUE(peft_test::equal(n->lin0->weight, w0));
  }
  {
    Net n = fresh();
    peft::LoadOptions o;
    o.base_rewrite = peft::BaseRewriteLoad::AsSaved;
    auto lm = peft::from_pretrained(n.ptr(), dir / "trained", "default", o);
    EXPECT_TRUE(close(n->forward(x), trained));
  }
  {
    Net n;
    torch::NoGradGuard g;
    for (auto& p : n->named_parameters()) p.value().copy_(net->named_parameters()[p.key()]);  // residual base
    peft::LoadOptions o;
    o.base_rewrite = peft::BaseRewriteLoad::ResidualBase;
    auto lm = peft::from_pretrained(n.ptr(), dir / "trained", "default", o);
    EXPECT_TRUE(close(n->forward(x), trained));
  }
  {
    Net n = fresh();
    auto lm = peft::from_pretrained(n.ptr(), dir / "converted");
    EXPECT_EQ(lm.peft_config().r, 4);
    EXPECT_TRUE(close(n->forward(x), trained));
  }
}

SEEDED_TEST(InitLoading, AsSavedRestoresTheBaseWhenTheFileDoesNotFit) {
  const auto dir = peft_test::scratch_dir("inits_restore");
  Net net;
  peft::ScopedWarningCapture quiet;
  auto pm = peft::get_peft_model(net, config("pissa"));
  peft::save_pretrained(pm, dir);
  // A file with a missing key: lin1's factors dropped.
  auto f = peft::load_safetensors(dir / peft::kAdapterWeightsFile);
  std::vector<std::pair<std::string, torch::Tensor>> kept;
  for (auto& [k, t] : f.tensors)
    if (k.find("lin1") == std::string::npos) kept.emplace_back(k, t);
  peft::save_safetensors(dir / peft::kAdapterWeightsFile, kept);
  Net other;
  auto w0 = other->lin0->weight.clone();
  peft::LoraModel lm(other.ptr(), peft::LoraModelOptions{});
  peft::LoadOptions o;
  o.base_rewrite = peft::BaseRewriteLoad::AsSaved;
  EXPECT_THROW(peft::load_adapter(lm, dir, "default", o), peft::SerializationError);
  EXPECT_TRUE(peft_test::equal(other->lin0->weight, w0));
  EXPECT_TRUE(lm.adapter_names().empty());
}

// ---- LoftQ (pure LibTorch quantiser; not bit-exact with bitsandbytes) ----

SEEDED_TEST(Loftq, NormalPpfMatchesKnownQuantiles) {
  EXPECT_NEAR(peft::detail::normal_ppf(0.975), 1.959963984540054, 1e-12);
  EXPECT_NEAR(peft::detail::normal_ppf(0.5), 0.0, 1e-15);
  EXPECT_NEAR(peft::detail::normal_ppf(0.001), -3.090232306167813, 1e-11);
}

SEEDED_TEST(Loftq, NormalMapHasOneMorePositiveLevelAndZero) {
  auto t = peft::nf_normal_map(2);  // [-1, 0, ppf(0.7339)/ppf(0.9677), 1]
  ASSERT_EQ(t.numel(), 4);
  EXPECT_FLOAT_EQ(t[0].item<float>(), -1.f);
  EXPECT_FLOAT_EQ(t[1].item<float>(), 0.f);
  EXPECT_NEAR(t[2].item<float>(), peft::detail::normal_ppf(0.73385415) / peft::detail::normal_ppf(0.9677083), 1e-6);
  EXPECT_FLOAT_EQ(t[3].item<float>(), 1.f);
  EXPECT_EQ(peft::nf_normal_map(8).numel(), 256);
}

SEEDED_TEST(Loftq, BlockwiseQuantisationRoundsToTheNearestLevelTimesTheBlockAbsmax) {
  auto table = torch::tensor({-1.f, 0.f, 0.5f, 1.f});
  auto w = torch::tensor({{2.f, 0.9f, -0.4f, 0.6f}, {0.1f, 0.2f, 0.3f, -0.4f}});  // blocks of 4 = rows
  auto q = peft::quantize_dequantize_blockwise(w, table, 4);
  // row 0: absmax 2 -> w/2 = [1, .45, -.2, .3] -> [1, .5, 0, .5] * 2
  EXPECT_TRUE(peft_test::equal(q[0], torch::tensor({2.f, 1.f, 0.f, 1.f})));
  // row 1: absmax .4 -> [.25, .5, .75, -1] -> [0 or .5 (tie: first), .5, .5 or 1, -1] * .4
  EXPECT_FLOAT_EQ(q[1][1].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(q[1][3].item<float>(), -0.4f);
}

SEEDED_TEST(Loftq, AdapterCompensatesTheQuantisationError) {
  torch::manual_seed(7);
  auto W = torch::randn({16, 8});
  auto f = peft::loftq_init(W, 4, 4, 2);
  EXPECT_EQ(f.lora_A.sizes(), (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(f.lora_B.sizes(), (std::vector<int64_t>{16, 4}));
  const double q_err = (W - f.base_weight).norm().item<double>();
  const double lora_err = (W - f.base_weight - torch::matmul(f.lora_B, f.lora_A)).norm().item<double>();
  EXPECT_GT(q_err, 0.0);
  EXPECT_LT(lora_err, q_err);
  EXPECT_THROW(peft::loftq_init(W, 3, 4), peft::ConfigError);
}

SEEDED_TEST(Loftq, RunsThroughGetPeftModelAndReplacesTheBaseByItsQuantisedForm) {
  Net net;
  auto w0 = net->lin0->weight.clone();
  auto c = config("loftq");
  c.loftq_config = peft::LoftQConfig{8, 1};
  peft::ScopedWarningCapture quiet;
  auto pm = peft::get_peft_model(net, c);
  EXPECT_FALSE(torch::equal(net->lin0->weight, w0));
  EXPECT_TRUE(peft_test::close(net->lin0->weight, w0, 0, 0.05f));  // 8-bit levels
}

SEEDED_TEST(InitLoading, PissaNiterAsSavedReproducesTheResidualWithTheSameSeed) {
  const auto dir = peft_test::scratch_dir("inits_niter");
  torch::manual_seed(8);
  Net original;
  auto x = torch::randn({2, 6});
  auto copy_of_original = [&] {
    Net n;
    torch::NoGradGuard g;
    for (auto& p : n->named_parameters()) p.value().copy_(original->named_parameters()[p.key()]);
    return n;
  };
  peft::ScopedWarningCapture quiet;
  Net net = copy_of_original();
  torch::manual_seed(9);
  auto pm = peft::get_peft_model(net, config("pissa_niter_1"));
  peft_test::randomise_lora_B(pm);
  const auto trained = net->forward(x);
  peft::save_pretrained(pm, dir);
  Net n = copy_of_original();
  peft::LoadOptions o;
  o.base_rewrite = peft::BaseRewriteLoad::AsSaved;
  torch::manual_seed(9);
  auto lm = peft::from_pretrained(n.ptr(), dir, "default", o);
  EXPECT_TRUE(peft_test::close(n->lin0->weight, net->lin0->weight, 0.0, 1e-6));
  EXPECT_TRUE(close(n->forward(x), trained));
}

SEEDED_TEST(InitConversion, RsloraWithPatternsIsRejectedBeforeAnyFileIsWritten) {
  const auto dir = peft_test::scratch_dir("inits_conv_reject");
  Net net;
  auto c = config("pissa");
  c.use_rslora = true;
  c.rank_pattern.set("lin1", 1);
  peft::ScopedWarningCapture quiet;
  auto pm = peft::get_peft_model(net, c);
  peft::save_pretrained(pm, dir / "initial");
  peft::SaveOptions so;
  so.path_initial_model_for_weight_conversion = dir / "initial";
  EXPECT_THROW(peft::save_pretrained(pm, dir / "out", {}, so), peft::ConfigError);
  EXPECT_FALSE(fs::exists(dir / "out" / peft::kAdapterWeightsFile));
}

SEEDED_TEST(Corda, ATargetThatSawNoInputAttachesNothingAndRemovesTheObservers) {
  Net net;
  peft::ScopedWarningCapture quiet;
  // run_model that only reaches lin0: lin1 gets no covariance.
  EXPECT_THROW(peft::preprocess_corda(net.ptr(), config("corda"), [&] { net->lin0->forward(torch::randn({3, 6})); }),
               peft::Error);
  EXPECT_FALSE(net->lin0->corda_eigens().has_value());
  EXPECT_FALSE(net->lin1->corda_eigens().has_value());
  // No observer left behind: an exception in run_model would otherwise recur here.
  EXPECT_THROW(peft::preprocess_corda(net.ptr(), config("corda"), [&] { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_NO_THROW(net->forward(torch::zeros({1, 6})));  // all-zero input would throw inside an observer
}

SEEDED_TEST(BaseRewriteInits, PissaOnAConv1DWorksInItsStoredLayoutWhileOloraAndCordaAreRefused) {
  torch::manual_seed(10);
  peft_test::OneLayer<peft::Conv1D> net("c_fc", peft::Conv1D(7, 5));  // weight [in=5, out=7]
  auto x = torch::randn({2, 5});
  auto before = net->forward(x);
  auto w0 = net->layer->weight.clone();
  peft::ScopedWarningCapture quiet;
  for (const std::string init : {"olora", "corda"}) {
    auto c = config(init);
    c.target_modules = peft::ModuleSpec({"c_fc"});
    EXPECT_THROW(peft::get_peft_model(net, c), peft::ConfigError) << init;
    EXPECT_TRUE(peft_test::equal(net->layer->weight, w0)) << init;
  }
  auto c = config("pissa");
  c.target_modules = peft::ModuleSpec({"c_fc"});
  auto pm = peft::get_peft_model(net, c);
  EXPECT_EQ(net->layer->lora_A("default")->weight.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(close(net->forward(x), before));
  EXPECT_TRUE(close(net->layer->weight + net->layer->delta_weight("default"), w0));
}

SEEDED_TEST(BaseRewriteInits, ABf16BaseGetsABf16ResidualAndFp32Adapters) {
  torch::manual_seed(11);
  Net net;
  net->to(torch::kBFloat16);
  auto x = torch::randn({2, 6}).to(torch::kBFloat16);
  auto before = net->forward(x);
  peft::ScopedWarningCapture quiet;
  auto pm = peft::get_peft_model(net, config("pissa"));
  EXPECT_EQ(net->lin0->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(net->lin0->lora_A("default")->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(close(net->forward(x), before, 3e-2));
}
