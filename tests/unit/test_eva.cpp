// EVA initialisation (docs/init.md#strategies-at-a-glance "EVA"): IncrementalPCA, the rank
// redistribution, loading an EVA
// state dict (rank changes, alpha adjustment, rank 0) and initialize_lora_eva_weights end to end.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <stdexcept>

#include "peft/init/eva.hpp"
#include "peft/init/incremental_pca.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"

namespace {

/// Rows [k, F]: the top principal directions of X (exact, via the covariance eigenvectors).
torch::Tensor exact_components(const torch::Tensor& X, std::int64_t k) {
  const torch::Tensor Xc = X.to(torch::kDouble) - X.to(torch::kDouble).mean(0);
  auto [U, S, Vh] = torch::linalg_svd(Xc, false);
  return Vh.slice(0, 0, k);
}

/// max over rows of |1 - |<a_i, b_i>||: 0 when the rows agree up to sign.
double row_mismatch(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor dots = (a.to(torch::kDouble) * b.to(torch::kDouble)).sum(1).abs();
  return (1.0 - dots).abs().max().item<double>();
}

/// max over rows of 1 - |projection of the row onto span(basis rows)| (basis rows orthonormal):
/// 0 when every row of `a` lies in that span.
double span_residual(const torch::Tensor& a, const torch::Tensor& basis) {
  const torch::Tensor proj = torch::mm(a.to(torch::kDouble), basis.to(torch::kDouble).t());
  return (1.0 - proj.norm(2, {1}) / a.to(torch::kDouble).norm(2, {1})).abs().max().item<double>();
}

/// 200 samples of 10 features with exact rank 3 (singular values well apart) plus an offset.
torch::Tensor low_rank_data(std::int64_t n = 200) {
  torch::manual_seed(11);
  const torch::Tensor basis = std::get<0>(torch::linalg_qr(torch::randn({10, 3}, torch::kDouble))).t();  // [3, 10]
  const torch::Tensor scales = torch::tensor({6.0, 3.0, 1.0}, torch::kDouble);
  return torch::matmul(torch::randn({n, 3}, torch::kDouble) * scales, basis) + 0.5;
}

// Two layers on the same input x (a, b) and one on x2 (c): PEFT's shared-input case.
struct NetImpl : torch::nn::Module {
  NetImpl()
      : a(register_module("a", peft::Linear(8, 8))),
        b(register_module("b", peft::Linear(8, 8))),
        c(register_module("c", peft::Linear(8, 4))) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& x2) {
    return torch::cat({a(x) + b(x), c(x2)}, -1);
  }
  peft::Linear a, b, c;
};
TORCH_MODULE(Net);

peft::LoraConfig eva_config(std::int64_t r = 2, long long alpha = 8) {
  peft::LoraConfig cfg;
  cfg.target_modules = {"a", "b", "c"};
  cfg.r = r;
  cfg.lora_alpha = alpha;
  cfg.init_lora_weights = "eva";
  cfg.eva_config = peft::EvaConfig{};
  return cfg;
}

/// Calibration data: x = z diag(5, 3, 1.5) W + noise (principal directions W's rows), x2 nearly
/// rank 1 along w2.
struct Calibration {
  torch::Tensor W, w2;
  std::vector<torch::Tensor> x, x2;
  explicit Calibration(int batches = 12) {
    torch::manual_seed(5);
    W = std::get<0>(torch::linalg_qr(torch::randn({8, 3}))).t().contiguous();  // [3, 8]
    w2 = torch::nn::functional::normalize(torch::randn({1, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
    const torch::Tensor s = torch::tensor({5.0f, 3.0f, 1.5f});
    for (int i = 0; i < batches; ++i) {
      x.push_back(torch::matmul(torch::randn({4, 8, 3}) * s, W) + 1e-3 * torch::randn({4, 8, 8}));
      x2.push_back(torch::matmul(torch::randn({4, 8, 1}) * 4.0, w2) + 1e-3 * torch::randn({4, 8, 8}));
    }
  }
  peft::EvaFeed feed(Net& net) {
    return [this, net](peft::EvaBatch& b) mutable {
      if (b.index >= static_cast<std::int64_t>(x.size())) return false;
      net->forward(x[b.index], x2[b.index]);
      return true;
    };
  }
  /// feed() with huge values along another direction at sequence position `pos` of x, which
  /// `mask_out` marks as left out (attention mask, labels): they must not show up in A.
  peft::EvaFeed junk_feed(Net& net, std::int64_t pos, std::function<void(peft::EvaBatch&)> mask_out) {
    const torch::Tensor junk_dir = torch::ones({8}) / std::sqrt(8.0);
    return [this, net, pos, junk_dir, mask_out](peft::EvaBatch& b) mutable {
      if (b.index >= static_cast<std::int64_t>(x.size())) return false;
      torch::Tensor xb = x[b.index].clone();
      xb.select(1, pos).copy_(100.0 * torch::randn({4, 1}) * junk_dir);
      mask_out(b);
      net->forward(xb, x2[b.index]);
      return true;
    };
  }
};

}  // namespace

// ---- IncrementalPCA ----

SEEDED_TEST(IncrementalPCA, BatchesOfLowRankDataGiveTheExactPrincipalDirections) {
  const torch::Tensor X = low_rank_data();
  peft::IncrementalPCAOptions o;
  o.n_components = 3;
  peft::IncrementalPCA pca(o);
  for (std::int64_t start = 0; start < X.size(0); start += 40) pca.partial_fit(X.slice(0, start, start + 40));
  EXPECT_EQ(pca.n_samples_seen(), 200);
  EXPECT_LT(row_mismatch(pca.components(), exact_components(X, 3)), 1e-9);
  EXPECT_TRUE(peft_test::close(pca.mean(), X.mean(0), 1e-12, 1e-12));
  EXPECT_TRUE(peft_test::close(pca.var(), X.var(0, /*unbiased=*/false), 1e-10, 1e-10));
  // Rank-3 data: three components explain all the variance, in decreasing amounts.
  const auto ratio = pca.explained_variance_ratio();
  EXPECT_NEAR(ratio.sum().item<double>(), 1.0, 1e-9);
  EXPECT_GT(ratio[0].item<double>(), ratio[1].item<double>());
  EXPECT_GT(ratio[1].item<double>(), ratio[2].item<double>());
  // explained_variance = S^2 / (n - 1) = the sample variance along each component.
  const torch::Tensor proj = pca.transform(X);
  EXPECT_TRUE(peft_test::close(pca.explained_variance(), proj.var(0, /*unbiased=*/true), 1e-9, 1e-9));
}

SEEDED_TEST(IncrementalPCA, FlipsEachComponentSoItsLargestEntryIsPositive) {
  const torch::Tensor X = low_rank_data();
  peft::IncrementalPCAOptions o;
  o.n_components = 3;
  peft::IncrementalPCA pca(o);
  pca.fit(X, 50);
  const torch::Tensor C = pca.components();
  const torch::Tensor idx = C.abs().argmax(1);
  EXPECT_TRUE(C.gather(1, idx.unsqueeze(1)).gt(0).all().item<bool>());
}

SEEDED_TEST(IncrementalPCA, SeededLowRankPathMatchesExactSvdAndLeavesTheGlobalRngAlone) {
  const torch::Tensor X = low_rank_data().to(torch::kFloat);
  peft::IncrementalPCAOptions exact_o;
  exact_o.n_components = 3;
  peft::IncrementalPCA exact(exact_o);
  peft::IncrementalPCAOptions o = exact_o;
  o.lowrank = true;
  o.lowrank_seed = 42;
  peft::IncrementalPCA lowrank(o), again(o);

  torch::manual_seed(123);
  const torch::Tensor expected_draw = torch::rand({4});
  torch::manual_seed(123);
  for (std::int64_t start = 0; start < X.size(0); start += 50) {
    exact.partial_fit(X.slice(0, start, start + 50));
    lowrank.partial_fit(X.slice(0, start, start + 50));
    again.partial_fit(X.slice(0, start, start + 50));
  }
  EXPECT_TRUE(peft_test::equal(torch::rand({4}), expected_draw));  // seed 42 did not leak
  EXPECT_LT(row_mismatch(lowrank.components(), exact.components()), 1e-6);
  EXPECT_TRUE(peft_test::equal(lowrank.components(), again.components()));  // reproducible
  EXPECT_EQ(lowrank.components().scalar_type(), torch::kDouble);         // PEFT: float64 after step 2
}

SEEDED_TEST(IncrementalPCA, RejectsMoreComponentsThanSamplesOrFeatures) {
  peft::IncrementalPCAOptions o;
  o.n_components = 5;
  peft::IncrementalPCA pca(o);
  EXPECT_THROW(pca.partial_fit(torch::randn({4, 10})), peft::Error);
  EXPECT_THROW(pca.partial_fit(torch::randn({10, 4})), peft::Error);
  EXPECT_FALSE(pca.fitted());
  EXPECT_THROW(pca.components(), peft::Error);
}

// ---- rank redistribution ----

TEST(EvaRankDistribution, CountsTheLargestPooledRatiosPerLayer) {
  const std::vector<torch::Tensor> ratios = {torch::tensor({0.5, 0.3, 0.1, 0.05}), torch::tensor({0.4, 0.2, 0.15, 0.02})};
  EXPECT_EQ(peft::eva_rank_distribution(ratios, {0, 1}, 4), (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(peft::eva_rank_distribution(ratios, {0, 1}, 5), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(peft::eva_rank_distribution(ratios, {0, 1}, 6), (std::vector<std::int64_t>{3, 3}));
  // A layer whose ratios never make the cut gets rank 0.
  const std::vector<torch::Tensor> skewed = {torch::tensor({0.9, 0.8}), torch::tensor({0.01, 0.001})};
  EXPECT_EQ(peft::eva_rank_distribution(skewed, {0, 1}, 2), (std::vector<std::int64_t>{2, 0}));
}

TEST(EvaRankDistribution, TheLayerOwningASharedPcaGetsTheGroupsLargestRank) {
  // Entry 2 shares entry 0's PCA (in EVA with equal ratios, so the tie may fall either way).
  // Here entry 2 wins outright (2 of the 3 slots); the counts are swapped so the owner gets 2.
  const std::vector<torch::Tensor> ratios = {torch::tensor({0.6, 0.3, 0.08}), torch::tensor({0.01, 0.005, 0.001}),
                                             torch::tensor({0.61, 0.31, 0.09})};
  EXPECT_EQ(peft::eva_rank_distribution(ratios, {0, 1, 0}, 3), (std::vector<std::int64_t>{2, 0, 1}));
  // Without sharing the same ratios give entry 2 the larger count.
  EXPECT_EQ(peft::eva_rank_distribution(ratios, {0, 1, 2}, 3), (std::vector<std::int64_t>{1, 0, 2}));
}

TEST(EvaRankDistribution, RoundsLikePython) {
  EXPECT_EQ(peft::detail::round_half_even(2.5), 2);
  EXPECT_EQ(peft::detail::round_half_even(3.5), 4);
  EXPECT_EQ(peft::detail::round_half_even(2.6), 3);
  EXPECT_EQ(peft::detail::round_half_even(8.0), 8);
}

// ---- loading an EVA state dict ----

SEEDED_TEST(LoadEvaStateDict, ResizesAdaptersAdjustsAlphaRemovesRankZeroAndRewritesTheConfig) {
  Net net;
  auto pm = peft::get_peft_model(net, eva_config(/*r=*/2, /*alpha=*/8));
  EXPECT_TRUE(net->a->lora_B("default")->weight.eq(0).all().item<bool>());  // eva creation: B = 0
  const torch::Tensor rows_a = std::get<0>(torch::linalg_qr(torch::randn({8, 3}))).t().contiguous();
  const torch::Tensor rows_b = std::get<0>(torch::linalg_qr(torch::randn({8, 2}))).t().contiguous();
  peft::initialize_lora_eva_weights(pm, peft::EvaStateDict{{"a", rows_a}, {"b", rows_b}, {"c", torch::zeros({0, 8})}});

  const auto& sa = net->a->settings("default");
  EXPECT_EQ(sa.r, 3);
  EXPECT_DOUBLE_EQ(sa.lora_alpha.value, 12.0);  // 8 * 3 / 2
  EXPECT_FALSE(sa.lora_alpha.integral);
  EXPECT_DOUBLE_EQ(sa.scaling, 4.0);
  EXPECT_TRUE(peft_test::equal(net->a->lora_A("default")->weight, rows_a));
  EXPECT_TRUE(net->a->lora_B("default")->weight.eq(0).all().item<bool>());
  EXPECT_EQ(net->b->settings("default").r, 2);
  EXPECT_TRUE(peft_test::equal(net->b->lora_A("default")->weight, rows_b));
  EXPECT_FALSE(net->c->has_adapter("default"));  // rank 0: the base layer stays, adapter gone
  EXPECT_TRUE(net->c->plain());

  const auto& cfg = pm.peft_config();
  EXPECT_EQ(cfg.target_modules, peft::ModuleSpec({"a", "b"}));
  EXPECT_EQ(cfg.rank_pattern, (peft::PatternMap<std::int64_t>{{"a", 3}}));
  EXPECT_EQ(cfg.alpha_pattern, (peft::PatternMap<peft::Number>{{"a", 12.0}}));
  EXPECT_EQ(pm.targeted_module_names(), (std::vector<std::string>{"a", "b"}));
  // The re-created adapter is active and trainable again.
  EXPECT_TRUE(net->a->lora_A("default")->weight.requires_grad());
  EXPECT_EQ(pm.get_nb_trainable_parameters().first, 3 * (8 + 8) + 2 * (8 + 8));
}

SEEDED_TEST(LoadEvaStateDict, KeepsAlphaWithoutAdjustScalingFactors) {
  Net net;
  auto cfg = eva_config(2, 8);
  cfg.eva_config->adjust_scaling_factors = false;
  auto pm = peft::get_peft_model(net, cfg);
  peft::load_eva_state_dict(pm, {{"a", torch::eye(8).slice(0, 0, 4)}, {"b", torch::eye(8).slice(0, 0, 1)},
                                 {"c", torch::eye(8).slice(0, 0, 2)}});
  EXPECT_EQ(net->a->settings("default").r, 4);
  EXPECT_DOUBLE_EQ(net->a->settings("default").scaling, 2.0);  // 8 / 4
  EXPECT_DOUBLE_EQ(net->b->settings("default").scaling, 8.0);  // 8 / 1
  EXPECT_TRUE(pm.peft_config().alpha_pattern.empty());
  EXPECT_EQ(pm.peft_config().rank_pattern, (peft::PatternMap<std::int64_t>{{"a", 4}, {"b", 1}}));
}

SEEDED_TEST(LoadEvaStateDict, LayersMissingFromTheStateDictFallBackToInitTrueWithAWarning) {
  Net net;
  auto pm = peft::get_peft_model(net, eva_config());
  peft::ScopedWarningCapture warnings;
  peft::load_eva_state_dict(pm, {{"a", torch::eye(8).slice(0, 0, 2)}, {"b", torch::eye(8).slice(0, 0, 2)}});
  ASSERT_EQ(warnings.messages().size(), 1u);
  EXPECT_NE(warnings.messages()[0].find("c"), std::string::npos);
  EXPECT_EQ(pm.peft_config().target_modules, peft::ModuleSpec({"a", "b", "c"}));
  EXPECT_TRUE(net->c->lora_B("default")->weight.eq(0).all().item<bool>());
  const double bound = 1.0 / std::sqrt(8.0);
  EXPECT_LE(net->c->lora_A("default")->weight.abs().max().item<double>(), bound);
}

SEEDED_TEST(LoadEvaStateDict, RejectsBadEntriesBeforeChangingAnything) {
  Net net;
  auto pm = peft::get_peft_model(net, eva_config());
  const torch::Tensor A = net->a->lora_A("default")->weight.clone();
  EXPECT_THROW(peft::load_eva_state_dict(pm, {{"a", torch::eye(8).slice(0, 0, 2)}, {"nope", torch::eye(8)}}),
               peft::Error);
  EXPECT_THROW(peft::load_eva_state_dict(pm, {{"a", torch::ones({2, 5})}}), peft::Error);
  EXPECT_TRUE(peft_test::equal(net->a->lora_A("default")->weight, A));
  EXPECT_TRUE(pm.peft_config().rank_pattern.empty());
}

// ---- initialize_lora_eva_weights ----

SEEDED_TEST(InitializeLoraEvaWeights, FindsThePrincipalDirectionsAndRedistributesRanks) {
  Calibration data;
  Net net;
  net->train();
  auto pm = peft::get_peft_model(net, eva_config(/*r=*/2, /*alpha=*/8));
  const torch::Tensor probe = data.x[0], probe2 = data.x2[0];
  torch::Tensor base_out;
  {
    auto off = pm.disable_adapter();
    base_out = net->forward(probe, probe2);
  }
  std::vector<peft::EvaProgress> progress;
  peft::EvaOptions opt;
  opt.progress = [&](const peft::EvaProgress& p) { progress.push_back(p); };
  peft::initialize_lora_eva_weights(pm, data.feed(net), opt);

  // a and b share x: one PCA, the owner a gets the group's larger rank. Pooled ratios: x2 is
  // rank 1 (one large ratio), x has three (5 : 3 : 1.5): budget 6 = c 1, a 3 (the tie at the
  // third component of x goes to the owner), b 2.
  EXPECT_EQ(net->a->settings("default").r, 3);
  EXPECT_EQ(net->b->settings("default").r, 2);
  EXPECT_EQ(net->c->settings("default").r, 1);
  // A's rows are x's principal directions: unit rows in span(W), the first along W's first row
  // (the sample covariance of z rotates them slightly within the span).
  const torch::Tensor Aa = net->a->lora_A("default")->weight;
  EXPECT_LT(span_residual(Aa, data.W), 1e-4);
  EXPECT_TRUE(peft_test::close(torch::mm(Aa, Aa.t()), torch::eye(3), 0, 1e-5));
  EXPECT_GT(std::abs(torch::dot(Aa[0], data.W[0]).item<double>()), 0.9);
  EXPECT_TRUE(peft_test::equal(net->b->lora_A("default")->weight, Aa.slice(0, 0, 2)));
  EXPECT_LT(row_mismatch(net->c->lora_A("default")->weight, data.w2), 1e-3);
  EXPECT_EQ(pm.peft_config().rank_pattern, (peft::PatternMap<std::int64_t>{{"a", 3}, {"c", 1}}));
  EXPECT_EQ(pm.peft_config().alpha_pattern, (peft::PatternMap<peft::Number>{{"a", 12.0}, {"c", 4.0}}));

  EXPECT_TRUE(peft_test::close(net->forward(probe, probe2), base_out));  // B = 0: still the base model
  EXPECT_TRUE(net->is_training());                                    // train mode restored
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().converged_layers, 3);
  EXPECT_EQ(progress.back().layers, 3);
  EXPECT_GE(progress.back().step, 2);  // convergence needs two batches at least
}

SEEDED_TEST(InitializeLoraEvaWeights, LeavesPositionsOutByAttentionMask) {
  Calibration data;
  Net net;
  auto pm = peft::get_peft_model(net, eva_config());
  peft::initialize_lora_eva_weights(pm, data.junk_feed(net, 7, [](peft::EvaBatch& b) {
    b.attention_mask = torch::ones({4, 8}, torch::kLong);
    b.attention_mask.select(1, 7).zero_();
  }));
  EXPECT_LT(span_residual(net->a->lora_A("default")->weight, data.W), 1e-4);
}

SEEDED_TEST(InitializeLoraEvaWeights, RefusesWrongSetupsWithoutChangingTheModel) {
  Calibration data;
  Net net;
  auto pm = peft::get_peft_model(net, eva_config());
  const torch::Tensor A = net->a->lora_A("default")->weight.clone();
  // No data.
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm, peft::EvaFeed{}), peft::ConfigError);
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm, [](peft::EvaBatch&) { return false; }), peft::ConfigError);
  // A layer that never sees input (c is not run).
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm,
                                                 [&](peft::EvaBatch& b) {
                                                   if (b.index >= 3) return false;
                                                   net->a(data.x[b.index]);
                                                   net->b(data.x[b.index]);
                                                   return true;
                                                 }),
               peft::Error);
  // The feed throws midway.
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm,
                                                 [&](peft::EvaBatch& b) -> bool {
                                                   if (b.index == 2) throw std::runtime_error("disk gone");
                                                   net->forward(data.x[b.index], data.x2[b.index]);
                                                   return true;
                                                 }),
               std::runtime_error);
  EXPECT_TRUE(peft_test::equal(net->a->lora_A("default")->weight, A));
  EXPECT_EQ(net->a->settings("default").r, 2);
  EXPECT_TRUE(pm.peft_config().rank_pattern.empty());
  // Adapters are enabled again: a non-zero B changes the output.
  {
    torch::NoGradGuard g;
    net->a->lora_B("default")->weight.fill_(1.0);
  }
  torch::Tensor with, without;
  with = net->forward(data.x[0], data.x2[0]);
  {
    auto off = pm.disable_adapter();
    without = net->forward(data.x[0], data.x2[0]);
  }
  EXPECT_TRUE(peft_test::not_close(with, without));

  // Init other than eva; more than one active adapter.
  Net other;
  auto plain = eva_config();
  plain.init_lora_weights = true;
  plain.eva_config.reset();
  auto pm2 = peft::get_peft_model(other, plain);
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm2, data.feed(other)), peft::ConfigError);
  Net two;
  auto pm3 = peft::get_peft_model(two, eva_config());
  pm3.add_adapter("second", eva_config());
  pm3.set_adapter(std::vector<std::string>{"default", "second"});
  EXPECT_THROW(peft::initialize_lora_eva_weights(pm3, data.feed(two)), peft::Error);
}

SEEDED_TEST(InitializeLoraEvaWeights, StopsAtTheEndOfTheDataWhenNotCycling) {
  Calibration data(2);
  Net net;
  auto cfg = eva_config();
  cfg.eva_config->tau = 1.0;  // never reached exactly: only the data end stops the loop
  auto pm = peft::get_peft_model(net, cfg);
  peft::EvaOptions opt;
  opt.cycle = false;
  std::int64_t last_step = -1;
  opt.progress = [&](const peft::EvaProgress& p) { last_step = p.step; };
  peft::ScopedWarningCapture warnings;
  peft::initialize_lora_eva_weights(pm, data.feed(net), opt);
  EXPECT_EQ(last_step, 2);
  EXPECT_FALSE(warnings.messages().empty());  // names the layers that did not converge
  std::int64_t total = 0;
  for (auto& [key, layer] : pm.lora_layers()) total += layer->settings("default").r;
  EXPECT_EQ(total, 6);  // the budget is spread in full
}

SEEDED_TEST(InitializeLoraEvaWeights, LeavesLabelMaskedPositionsOut) {
  Calibration data;
  Net net;
  auto pm = peft::get_peft_model(net, eva_config());
  peft::initialize_lora_eva_weights(pm, data.junk_feed(net, 0, [](peft::EvaBatch& b) {
    b.labels = torch::full({4, 8}, 3, torch::kLong);
    b.labels.select(1, 0).fill_(-100);  // eva_config.label_mask_value
  }));
  EXPECT_LT(span_residual(net->a->lora_A("default")->weight, data.W), 1e-4);
}

SEEDED_TEST(GetEvaStateDict, ComputesRowsWithoutChangingTheModelAndWhitensOnRequest) {
  Calibration data;
  Net plain_net, white_net;
  auto plain = peft::get_peft_model(plain_net, eva_config());
  auto white_cfg = eva_config();
  white_cfg.eva_config->whiten = true;
  auto white = peft::get_peft_model(white_net, white_cfg);
  const torch::Tensor A_before = plain_net->a->lora_A("default")->weight.clone();

  const auto rows = peft::get_eva_state_dict(plain, data.feed(plain_net));
  const auto whitened = peft::get_eva_state_dict(white, data.feed(white_net));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].first, "a");
  EXPECT_EQ(rows[1].first, "b");
  EXPECT_EQ(rows[2].first, "c");
  EXPECT_EQ(rows[0].second.size(0) + rows[1].second.size(0) + rows[2].second.size(0), 6);  // the budget
  EXPECT_TRUE(peft_test::equal(plain_net->a->lora_A("default")->weight, A_before));          // model untouched
  EXPECT_EQ(plain_net->a->settings("default").r, 2);

  // Whitening divides row i by sqrt(S_i): same directions, norms growing as S falls (once, also
  // for b, which shares a's PCA).
  for (std::size_t k = 0; k < 2; ++k) {
    const torch::Tensor& u = rows[k].second;
    const torch::Tensor& w = whitened[k].second;
    ASSERT_EQ(u.sizes(), w.sizes());
    const torch::Tensor norms = w.norm(2, {1});
    EXPECT_LT(row_mismatch(w / norms.unsqueeze(1), u), 1e-9);
    for (std::int64_t i = 1; i < norms.size(0); ++i) EXPECT_GT(norms[i].item<double>(), norms[i - 1].item<double>());
  }
  EXPECT_TRUE(peft_test::close(whitened[1].second, whitened[0].second.slice(0, 0, whitened[1].second.size(0))));
}

SEEDED_TEST(InitializeLoraEvaWeights, CudaModelGivesTheCpuSubspaces) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  Calibration data;
  Net cpu_net, gpu_net;
  gpu_net->to(torch::kCUDA);
  auto cpu = peft::get_peft_model(cpu_net, eva_config());
  auto gpu = peft::get_peft_model(gpu_net, eva_config());
  peft::initialize_lora_eva_weights(cpu, data.feed(cpu_net));
  torch::manual_seed(3);
  const torch::Tensor draw = torch::rand({2}, torch::kCUDA).cpu();
  torch::manual_seed(3);
  peft::initialize_lora_eva_weights(gpu, [&](peft::EvaBatch& b) {
    if (b.index >= static_cast<std::int64_t>(data.x.size())) return false;
    gpu_net->forward(data.x[b.index].cuda(), data.x2[b.index].cuda());
    return true;
  });
  EXPECT_TRUE(peft_test::equal(torch::rand({2}, torch::kCUDA).cpu(), draw));  // the CUDA stream did not move
  for (auto* name : {"a", "b", "c"}) {
    auto& l_cpu = *std::dynamic_pointer_cast<peft::LoraLayer>(cpu_net->named_children()[name]);
    auto& l_gpu = *std::dynamic_pointer_cast<peft::LoraLayer>(gpu_net->named_children()[name]);
    ASSERT_EQ(l_cpu.settings("default").r, l_gpu.settings("default").r) << name;
    EXPECT_LT(row_mismatch(l_gpu.lora_A("default")->weight.cpu(), l_cpu.lora_A("default")->weight), 1e-4) << name;
    EXPECT_TRUE(l_gpu.lora_A("default")->weight.is_cuda());
  }
}
