// DoRA (docs/dora.md#dora): magnitude init, forward against the plain formula, the fast weight norm,
// merge/unmerge, dropout, gradients, caching, and PEFT's file key.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "peft/io/adapters.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "peft/variants/dora.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

peft::AdapterSettings dora(std::int64_t r, double alpha, double dropout = 0.0) {
  peft::AdapterSettings s;
  s.r = r;
  s.lora_alpha = alpha;
  s.scaling = alpha / static_cast<double>(r);
  s.use_dora = true;
  s.lora_dropout = dropout;
  return s;
}

/// The spec's formula, written out: W' rows renormalised, y = k*(W x) + b + k*s*B A x.
torch::Tensor reference_forward(const torch::Tensor& x, const torch::Tensor& W_out_in, const torch::Tensor& bias,
                                const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& m, double s) {
  auto norm = torch::linalg_norm(W_out_in + s * torch::matmul(B, A), c10::nullopt, c10::IntArrayRef{1}, false,
                                 c10::nullopt);
  auto k = m / norm;
  auto y = torch::matmul(x, W_out_in.t()) * k + torch::matmul(torch::matmul(x, A.t()), B.t()) * s * k;
  return bias.defined() ? y + bias : y;
}

/// A DoRA layer whose adapter has been "trained" (B and m moved away from their init).
peft::Linear trained_linear(std::int64_t in, std::int64_t out, std::int64_t r, double alpha, bool bias = true) {
  peft::Linear l(torch::nn::LinearOptions(in, out).bias(bias));
  l->update_layer("default", dora(r, alpha));
  l->set_adapter({"default"});
  torch::NoGradGuard g;
  l->lora_B("default")->weight.normal_(0, 0.3);
  l->lora_magnitude("default").add_(torch::randn({out}) * 0.1);
  return l;
}

}  // namespace

SEEDED_TEST(Dora, MagnitudeStartsAsTheRowNormOfTheBaseWeight) {
  peft::Linear l(torch::nn::LinearOptions(2, 2).bias(false));
  {
    torch::NoGradGuard g;
    l->weight.copy_(torch::tensor({{3.f, 4.f}, {0.f, 5.f}}));
  }
  l->update_layer("default", dora(1, 1));
  EXPECT_TRUE(peft_test::close(l->lora_magnitude("default"), torch::tensor({5.f, 5.f})));
  EXPECT_EQ(peft_test::param_names(*l),
            (std::vector<std::string>{"weight", "lora_A.default.weight", "lora_B.default.weight",
                                      "lora_magnitude_vector.default.weight"}));
  // With B = 0 the adapter is a no-op at init.
  l->set_adapter({"default"});
  auto x = torch::randn({3, 2});
  EXPECT_TRUE(peft_test::close(l(x), torch::matmul(x, l->weight.t()), 0, 1e-6));
}

SEEDED_TEST(Dora, MagnitudeOfANonZeroAdapterIncludesTheLowRankTerm) {
  // W = I, A = [1, 1], B = [[1], [2]], s = 2:  W + sBA = [[3, 2], [4, 5]] -> norms sqrt(13), sqrt(41).
  auto W = torch::eye(2);
  auto m = peft::dora_init_magnitude(W, torch::tensor({{1.f, 1.f}}), torch::tensor({{1.f}, {2.f}}), 2.0, false);
  EXPECT_NEAR(m[0].item<double>(), std::sqrt(13.0), 1e-6);
  EXPECT_NEAR(m[1].item<double>(), std::sqrt(41.0), 1e-6);
  // fan_in_fan_out: W stored [in, out] gives the same norms after PEFT's transpose.
  auto m_t = peft::dora_init_magnitude(W.t(), torch::tensor({{1.f, 1.f}}), torch::tensor({{1.f}, {2.f}}), 2.0, true);
  EXPECT_TRUE(peft_test::close(m, m_t));
}

SEEDED_TEST(Dora, ForwardMatchesTheFormulaForLinearWithAndWithoutBias) {
  torch::manual_seed(0);
  for (bool bias : {true, false}) {
    auto l = trained_linear(7, 5, 3, 6.0, bias);
    l->eval();
    auto x = torch::randn({4, 7});
    auto want = reference_forward(x, l->weight, bias ? l->bias : torch::Tensor(), l->lora_A("default")->weight,
                                  l->lora_B("default")->weight, l->lora_magnitude("default"), 2.0);
    EXPECT_TRUE(peft_test::close(l(x), want, 0, 1e-5)) << "bias=" << bias;
  }
}

SEEDED_TEST(Dora, ForwardMatchesTheFormulaForConv1DWithItsTransposedWeight) {
  torch::manual_seed(1);
  peft::Conv1D c(6, 4);  // nf=6 outputs, nx=4 inputs, weight [4, 6]
  c->update_layer("default", dora(2, 4));
  c->set_adapter({"default"});
  {
    torch::NoGradGuard g;
    c->bias.normal_();
    c->lora_B("default")->weight.normal_(0, 0.5);
  }
  auto x = torch::randn({2, 3, 4});
  auto want = reference_forward(x, c->weight.t(), c->bias, c->lora_A("default")->weight, c->lora_B("default")->weight,
                                c->lora_magnitude("default"), 2.0);
  EXPECT_TRUE(peft_test::close(c(x), want, 0, 1e-5));
}

SEEDED_TEST(Dora, FastWeightNormEqualsThePlainFormula) {
  torch::manual_seed(2);
  for (bool fifo : {false, true}) {
    for (double s : {0.5, 2.0, 16.0}) {
      auto W = torch::randn(fifo ? std::vector<std::int64_t>{9, 6} : std::vector<std::int64_t>{6, 9});
      auto A = torch::randn({3, 9}) * 0.3;
      auto B = torch::randn({6, 3}) * 0.3;
      auto plain = peft::dora_weight_norm(W, torch::matmul(B, A), s, fifo);
      auto fast = peft::dora_weight_norm_fast(W, peft::dora_base_row_sq(W, fifo, torch::kFloat32), A, B, s, fifo);
      EXPECT_TRUE(peft_test::close(fast, plain, 0, 1e-5 * plain.max().item<double>()))
          << "fifo=" << fifo << " s=" << s;
    }
  }
}

SEEDED_TEST(Dora, FastWeightNormFallsBackWhenARowCancels) {
  // Row 0 of W + sBA is exactly zero + 1e-3: the expansion would lose every digit.
  auto A = torch::tensor({{1.f, 0.f}});
  auto B = torch::tensor({{1.f}, {0.f}});
  auto W = torch::tensor({{-1.f, 1e-3f}, {0.f, 2.f}});
  auto fast = peft::dora_weight_norm_fast(W, peft::dora_base_row_sq(W, false, torch::kFloat32), A, B, 1.0, false);
  EXPECT_NEAR(fast[0].item<double>(), 1e-3, 1e-9);
  EXPECT_NEAR(fast[1].item<double>(), 2.0, 1e-6);
}

SEEDED_TEST(Dora, MergeGivesTheAdaptedOutputAndUnmergeRestoresTheWeight) {
  torch::manual_seed(3);
  for (bool conv : {false, true}) {
    std::shared_ptr<peft::LoraLayer> layer;
    if (conv) {
      peft::Conv1D c(5, 7);
      c->update_layer("default", dora(3, 6));
      layer = c.ptr();
    } else {
      peft::Linear l(7, 5);
      l->update_layer("default", dora(3, 6));
      layer = l.ptr();
    }
    layer->set_adapter({"default"});
    {
      torch::NoGradGuard g;
      layer->lora_B("default")->weight.normal_(0, 0.3);
      layer->lora_magnitude("default").add_(0.2);
    }
    layer->eval();
    auto x = torch::randn({4, 7});
    const auto W0 = layer->base_weight().clone();
    const auto adapted = layer->lora_forward(x);
    layer->merge();
    EXPECT_TRUE(peft_test::close(layer->lora_forward(x), adapted, 0, 1e-5)) << "conv=" << conv;
    layer->unmerge();
    EXPECT_TRUE(peft_test::close(layer->base_weight(), W0, 0, 1e-6)) << "conv=" << conv;
    EXPECT_TRUE(peft_test::close(layer->lora_forward(x), adapted, 0, 1e-6));
  }
}

SEEDED_TEST(Dora, DropoutInTrainingRecomputesTheBaseOnTheDroppedInput) {
  torch::manual_seed(4);
  peft::Linear l(6, 4);
  l->update_layer("default", dora(2, 2, /*dropout=*/0.5));
  l->set_adapter({"default"});
  {
    torch::NoGradGuard g;
    l->lora_B("default")->weight.normal_(0, 0.5);
  }
  l->train();
  auto x = torch::randn({3, 6});
  torch::manual_seed(11);
  auto got = l(x);
  torch::manual_seed(11);
  auto xd = peft::lora_dropout(x, 0.5, true);  // the layer's dropout, same seed
  const auto& A = l->lora_A("default")->weight;
  const auto& B = l->lora_B("default")->weight;
  auto norm = peft::dora_weight_norm(l->weight, torch::matmul(B, A), 1.0, false);
  auto k = l->lora_magnitude("default") / norm;
  auto result = torch::linear(x, l->weight, l->bias);
  auto base = torch::matmul(xd, l->weight.t());
  auto want = result + (k - 1) * base + k * torch::matmul(torch::matmul(xd, A.t()), B.t());
  EXPECT_TRUE(peft_test::close(got, want, 0, 1e-5));
}

SEEDED_TEST(Dora, MagnitudeGetsTheGradientOfTheDetachedNormFormula) {
  torch::manual_seed(5);
  auto l = trained_linear(5, 3, 2, 4.0);
  l->weight.set_requires_grad(false);  // frozen, as LoraModel leaves it
  auto x = torch::randn({4, 5});
  l(x).pow(2).sum().backward();
  const auto& A = l->lora_A("default")->weight;
  const auto& B = l->lora_B("default")->weight;
  auto m = l->lora_magnitude("default").detach().clone().requires_grad_(true);
  auto want = reference_forward(x, l->weight.detach(), l->bias.detach(), A.detach(), B.detach(), m, 2.0);
  // The norm is a constant for autograd: differentiate the same formula with the norm detached.
  auto norm = torch::linalg_norm(l->weight.detach() + 2.0 * torch::matmul(B.detach(), A.detach()), c10::nullopt,
                                 c10::IntArrayRef{1}, false, c10::nullopt);
  auto y = (torch::matmul(x, l->weight.detach().t()) + 2.0 * torch::matmul(torch::matmul(x, A.detach().t()), B.detach().t())) *
               (m / norm) + l->bias.detach();
  y.pow(2).sum().backward();
  ASSERT_TRUE(l->lora_magnitude("default").grad().defined());
  EXPECT_TRUE(peft_test::close(l->lora_magnitude("default").grad(), m.grad(), 0, 1e-4));
  EXPECT_TRUE(l->lora_A("default")->weight.grad().defined());
  EXPECT_FALSE(l->weight.grad().defined());  // the base stays frozen
  EXPECT_TRUE(peft_test::close(want, y, 0, 1e-5));
}

SEEDED_TEST(Dora, CachedNormFollowsInPlaceUpdatesOfTheFactors) {
  torch::manual_seed(6);
  auto l = trained_linear(6, 4, 2, 2.0);
  l->eval();
  auto x = torch::randn({3, 6});
  auto first = l(x);
  EXPECT_TRUE(peft_test::equal(l(x), first));  // cached norm: identical
  {
    torch::NoGradGuard g;
    l->lora_B("default")->weight.add_(0.5);  // what an optimiser step does
  }
  auto want = reference_forward(x, l->weight, l->bias, l->lora_A("default")->weight, l->lora_B("default")->weight,
                                l->lora_magnitude("default"), 1.0);
  EXPECT_TRUE(peft_test::close(l(x), want, 0, 1e-5));
  EXPECT_GT(peft_test::max_abs_diff(l(x), first), 1e-3);
}

SEEDED_TEST(Dora, MixedBatchWithADoraAdapterIsRefused) {
  auto l = trained_linear(4, 3, 2, 2.0);
  l->eval();
  EXPECT_THROW(l->forward_mixed_batch(torch::randn({2, 4}), {"default", "__base__"}), peft::Error);
}

SEEDED_TEST(Dora, DeleteAndCloneHandleTheMagnitude) {
  torch::manual_seed(7);
  auto l = trained_linear(4, 3, 2, 2.0);
  auto copy = std::dynamic_pointer_cast<peft::LinearImpl>(l->clone());
  EXPECT_TRUE(peft_test::equal(copy->lora_magnitude("default"), l->lora_magnitude("default")));
  auto x = torch::randn({2, 4});
  l->eval();
  copy->eval();
  EXPECT_TRUE(peft_test::close(copy->forward(x), l(x)));
  l->delete_adapter("default");
  EXPECT_EQ(peft_test::param_names(*l), (std::vector<std::string>{"weight", "bias"}));
}

SEEDED_TEST(Dora, SavedAdapterUsesPeftsMagnitudeKeyAndLoadsBack) {
  torch::manual_seed(8);
  using Net = peft_test::OneLayerImpl<peft::Linear>;  // one layer named fc
  auto net = std::make_shared<Net>("fc", peft::Linear(6, 4));
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec(std::vector<std::string>{"fc"});
  c.r = 2;
  c.lora_alpha = 4;
  c.use_dora = true;
  auto pm = peft::get_peft_model(net, c);
  {
    torch::NoGradGuard g;
    net->layer->lora_B("default")->weight.normal_();
    net->layer->lora_magnitude("default").mul_(1.5);
  }
  const auto dir = peft_test::scratch_dir("dora_save");
  peft::save_pretrained(pm, dir);
  auto file = peft::load_safetensors(dir / peft::kAdapterWeightsFile);
  ASSERT_NE(file.find("base_model.model.fc.lora_magnitude_vector"), nullptr);
  EXPECT_EQ(file.find("base_model.model.fc.lora_magnitude_vector.weight"), nullptr);
  net->eval();
  auto x = torch::randn({3, 6});
  auto want = net->forward(x);
  pm.unload();
  auto fresh = std::make_shared<Net>("fc", peft::Linear(6, 4));
  {
    torch::NoGradGuard g;
    fresh->layer->weight.copy_(net->layer->weight);
    fresh->layer->bias.copy_(net->layer->bias);
  }
  auto loaded = peft::from_pretrained(fresh, dir);
  fresh->eval();
  EXPECT_TRUE(peft_test::close(fresh->forward(x), want, 1e-6, 1e-6));
}
