// LoraLayer's two seams (layers/base_layer.hpp, variants/lora_variant.hpp) and ModulesToSave,
// with test-only implementations: a variant that subtracts its branch, a fake-quantised Linear
// (dense weight != stored weight) and an Embedding-like geometry with bare-parameter factors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "peft/layers/linear.hpp"
#include "peft/layers/lora_layer.hpp"
#include "peft/layers/modules_to_save.hpp"
#include "peft/variants/lora_variant.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/test_helpers.hpp"

namespace {

using peft_test::param_names;

using peft_test::adapter_settings;


// ---- a test-only variant: result -= g ⊙ s·B(A(x)), with a trainable gate g [out] ----

struct GateImpl : torch::nn::Cloneable<GateImpl> {
  explicit GateImpl(torch::Tensor g = torch::empty({0})) { weight = register_parameter("weight", std::move(g)); }
  void reset() override { weight = register_parameter("weight", torch::empty({0})); }
  torch::Tensor weight;
};

class SubtractingVariant : public peft::LoraVariant {
 public:
  const char* name() const override { return "Subtracting"; }
  void init(const peft::AdapterView& a) override {
    gate_ = std::make_shared<GateImpl>(torch::full({a.base.out_features()}, 0.5));
  }
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules() const override {
    return {{"lora_test_gate", gate_}};
  }
  std::vector<std::pair<std::string, torch::Tensor>> extra_parameters() const override {
    return {{"lora_test_gate", gate_->weight}};
  }
  void forward(const peft::AdapterView& a, torch::Tensor& result, const torch::Tensor& x) override {
    result = result - a.base.lora_branch(x, a.factors, a.dropout) * a.settings.scaling * gate_->weight;
  }
  std::pair<torch::Tensor, torch::Tensor> merged_weight(const peft::AdapterView&, const torch::Tensor& W,
                                                        const torch::Tensor& delta) const override {
    return {W - gate_->weight.view({-1, 1}) * delta, torch::ones({1})};
  }
  void merge(const peft::AdapterView& a, torch::Tensor& W, const torch::Tensor& delta) override {
    auto [w, state] = merged_weight(a, W, delta);
    W.copy_(w);
    merged(state);
  }
  void merged(torch::Tensor state) override { state_ = std::move(state); }
  void unmerge(const peft::AdapterView&, torch::Tensor& W, const torch::Tensor& delta) override {
    ASSERT_TRUE(state_.defined());
    W.add_(gate_->weight.view({-1, 1}) * delta);
    state_ = torch::Tensor();
  }
  std::unique_ptr<peft::LoraVariant> clone(const torch::optional<torch::Device>& device) const override {
    auto copy = std::make_unique<SubtractingVariant>();
    copy->gate_ = std::dynamic_pointer_cast<GateImpl>(gate_->clone(device));
    return copy;
  }

 private:
  std::shared_ptr<GateImpl> gate_;
  torch::Tensor state_;
};

/// A peft::Linear whose adapters get the subtracting variant.
struct SubtractingLinearImpl : peft::LinearImpl {
  using peft::LinearImpl::LinearImpl;
  std::unique_ptr<peft::LoraVariant> resolve_lora_variant(const peft::AdapterSettings&) const override {
    return std::make_unique<SubtractingVariant>();
  }
};

std::shared_ptr<SubtractingLinearImpl> subtracting_layer() {
  torch::manual_seed(1);
  auto l = std::make_shared<SubtractingLinearImpl>(5, 3);
  l->update_layer("default", adapter_settings(2, 4));
  l->set_adapter({"default"});
  torch::NoGradGuard g;
  l->lora_B("default")->weight.normal_();
  return l;
}

// ---- a test-only base layer: int8 codes times a scale, dequantised for merging and DoRA ----

class FakeQuantLinearImpl : public peft::LoraLayer {
 public:
  FakeQuantLinearImpl(torch::Tensor dense, double scale_) : scale(scale_) {
    codes = register_buffer("codes", quantise(dense));
    bias = register_parameter("bias", torch::zeros({dense.size(0)}));
  }
  torch::Tensor quantise(const torch::Tensor& w) const {
    return torch::round(w / scale).clamp(-127, 127).to(torch::kChar);
  }
  torch::Tensor base_forward(const torch::Tensor& x) override { return torch::linear(x, dense_weight(), bias); }
  torch::Tensor& base_weight() override { return codes; }
  torch::Tensor& base_bias() override { return bias; }
  bool fan_in_fan_out() const override { return false; }
  std::int64_t in_features() const override { return codes.size(1); }
  std::int64_t out_features() const override { return codes.size(0); }
  torch::Tensor dense_weight() override { return codes.to(torch::kFloat32) * scale; }
  void write_dense_weight(const torch::Tensor& w) override {
    ++writes;
    codes.copy_(quantise(w));
  }
  std::shared_ptr<peft::LoraLayer> plain_copy() const override {
    return std::make_shared<FakeQuantLinearImpl>(codes.to(torch::kFloat32) * scale, scale);
  }
  torch::Tensor forward(const torch::Tensor& x) { return lora_forward(x); }

  double scale;
  int writes = 0;
  torch::Tensor codes, bias;
};

// ---- a test-only geometry: an Embedding with bare-parameter factors ----

class TinyEmbeddingImpl : public peft::LoraLayer {
 public:
  TinyEmbeddingImpl(std::int64_t num, std::int64_t dim) {
    weight = register_parameter("weight", torch::randn({num, dim}));
  }
  torch::Tensor base_forward(const torch::Tensor& ids) override { return torch::embedding(weight, ids); }
  torch::Tensor& base_weight() override { return weight; }
  torch::Tensor& base_bias() override { return no_bias; }
  bool fan_in_fan_out() const override { return true; }  // W is [in = num, out = dim]
  std::int64_t in_features() const override { return weight.size(0); }
  std::int64_t out_features() const override { return weight.size(1); }
  peft::LoraFactorNames lora_factor_names() const override { return {"lora_embedding_A", "lora_embedding_B"}; }
  peft::LoraFactorEntries create_lora_factors(std::int64_t r, bool) const override {
    return {{nullptr, torch::randn({r, in_features()})}, {nullptr, torch::randn({out_features(), r})}};
  }
  void reset_lora_parameters(const peft::AdapterSettings&, const peft::LoraFactors& f,
                             std::optional<peft::CordaEigens>&) override {
    torch::NoGradGuard g;
    f.A.zero_();
    f.B.normal_();
  }
  torch::Tensor lora_input(const torch::Tensor& ids, const peft::LoraFactors&) const override { return ids; }
  torch::Tensor lora_branch(const torch::Tensor& ids, const peft::LoraFactors& f,
                            const peft::AdapterDropout&) const override {
    return torch::matmul(torch::embedding(f.A.t(), ids), f.B.t());
  }
  void add_lora_branch(torch::Tensor& result, const torch::Tensor& ids, const peft::LoraFactors& f,
                       const peft::AdapterDropout& d, double s) const override {
    result = result + lora_branch(ids, f, d) * s;
  }
  torch::Tensor lora_delta(const peft::LoraFactors& f, double s) const override {
    return torch::matmul(f.B, f.A).t() * s;
  }
  std::shared_ptr<peft::LoraLayer> plain_copy() const override {
    auto c = std::make_shared<TinyEmbeddingImpl>(weight.size(0), weight.size(1));
    torch::NoGradGuard g;
    c->weight.copy_(weight);
    return c;
  }
  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override {
    auto c = std::dynamic_pointer_cast<TinyEmbeddingImpl>(plain_copy());
    clone_adapters_into(*c, device);
    return c;
  }
  torch::Tensor forward(const torch::Tensor& ids) { return lora_forward(ids); }

  torch::Tensor weight, no_bias;
};

}  // namespace

SEEDED_TEST(LoraVariantSeam, TheLayerDispatchesForwardToTheAdaptersVariant) {
  auto l = subtracting_layer();
  auto x = torch::randn({4, 5});
  const auto& A = l->lora_A("default")->weight;
  const auto& B = l->lora_B("default")->weight;
  auto want = l->base_forward(x) - torch::matmul(torch::matmul(x, A.t()), B.t()) * 2.0 * 0.5;
  EXPECT_TRUE(peft_test::close(l->forward(x), want, 0, 1e-5));
  EXPECT_STREQ(l->variant("default").name(), "Subtracting");
}

SEEDED_TEST(LoraVariantSeam, VariantModulesAreRegisteredAfterTheFactorsTrainedClonedAndRemoved) {
  auto l = subtracting_layer();
  l->update_layer("other", adapter_settings(2, 2));
  EXPECT_EQ(param_names(*l),
            (std::vector<std::string>{"weight", "bias", "lora_A.default.weight", "lora_A.other.weight",
                                      "lora_B.default.weight", "lora_B.other.weight", "lora_test_gate.default.weight",
                                      "lora_test_gate.other.weight"}));
  auto gate = [&](const std::string& n) { return l->named_parameters()["lora_test_gate." + n + ".weight"]; };
  EXPECT_TRUE(gate("default").requires_grad());
  EXPECT_FALSE(gate("other").requires_grad());
  l->set_adapter({"other"});
  EXPECT_FALSE(gate("default").requires_grad());
  EXPECT_TRUE(gate("other").requires_grad());

  auto copy = std::dynamic_pointer_cast<peft::LinearImpl>(l->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(param_names(*copy), param_names(*l));
  EXPECT_STREQ(copy->variant("other").name(), "Subtracting");
  auto x = torch::randn({2, 5});
  EXPECT_TRUE(peft_test::equal(copy->forward(x), l->forward(x)));
  EXPECT_FALSE(copy->named_parameters()["lora_test_gate.other.weight"].is_same(gate("other")));

  peft::ScopedWarningCapture quiet;
  l->delete_adapter("default");
  l->delete_adapter("other");
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight", "bias"}));
}

SEEDED_TEST(LoraVariantSeam, MergeAndUnmergeGoThroughTheVariant) {
  auto l = subtracting_layer();
  auto x = torch::randn({3, 5});
  const auto before = l->forward(x);
  const auto W0 = l->weight.clone();
  const auto delta = l->delta_weight("default");
  l->merge();
  EXPECT_TRUE(peft_test::close(l->weight, W0 - 0.5 * delta, 0, 1e-6));
  EXPECT_TRUE(peft_test::close(l->forward(x), before, 0, 1e-5));
  l->unmerge();
  EXPECT_TRUE(peft_test::close(l->weight, W0, 0, 1e-6));
  l->merge(/*safe_merge=*/true);  // the checked path: merged_weight, then merged(state)
  EXPECT_TRUE(peft_test::close(l->weight, W0 - 0.5 * delta, 0, 1e-6));
  l->unmerge();
  EXPECT_TRUE(peft_test::close(l->weight, W0, 0, 1e-6));
}

SEEDED_TEST(LoraVariantSeam, MixedBatchesRefuseAVariantThatDoesNotSupportThem) {
  auto l = subtracting_layer();
  l->eval();
  try {
    l->forward_mixed_batch(torch::randn({2, 5}), {"default", "__base__"});
    FAIL() << "expected an Error";
  } catch (const peft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Subtracting"), std::string::npos) << e.what();
  }
  EXPECT_THROW(l->lora_magnitude("default"), peft::Error);  // not DoRA
}

SEEDED_TEST(BaseLayerSeam, AQuantisedBaseKeepsFp32AdaptersAndMergesThroughItsDenseWeight) {
  torch::manual_seed(2);
  auto dense = torch::round(torch::randn({3, 4}) * 4) / 4;  // exactly representable with scale 0.25
  auto l = std::make_shared<FakeQuantLinearImpl>(dense, 0.25);
  l->update_layer("default", adapter_settings(1, 1));
  l->set_adapter({"default"});
  EXPECT_EQ(l->lora_A("default")->weight.scalar_type(), torch::kFloat32);  // the int8 storage is not a dtype to follow
  {
    torch::NoGradGuard g;
    l->lora_A("default")->weight.copy_(torch::tensor({{1.f, 0.f, -1.f, 0.5f}}));
    l->lora_B("default")->weight.copy_(torch::tensor({{0.5f}, {0.f}, {-1.f}}));
  }
  auto x = torch::randn({2, 4});
  const auto adapted = l->forward(x);
  const auto delta = l->delta_weight("default");  // multiples of 0.25: requantised exactly
  l->merge();
  EXPECT_EQ(l->writes, 1);
  EXPECT_TRUE(peft_test::equal(l->dense_weight(), dense + delta));
  EXPECT_TRUE(peft_test::close(l->forward(x), adapted, 0, 1e-5));
  l->unmerge();
  EXPECT_EQ(l->writes, 2);
  EXPECT_TRUE(peft_test::equal(l->dense_weight(), dense));
}

SEEDED_TEST(BaseLayerSeam, DoraOnAQuantisedBaseUsesTheDenseWeight) {
  torch::manual_seed(3);
  auto dense = torch::round(torch::randn({3, 4}) * 8) / 8;
  auto l = std::make_shared<FakeQuantLinearImpl>(dense, 0.125);
  auto s = adapter_settings(2, 2);
  s.use_dora = true;
  l->update_layer("default", s);
  l->set_adapter({"default"});
  const auto row_norms = torch::linalg_norm(dense, c10::nullopt, c10::IntArrayRef{1}, false, c10::nullopt);
  EXPECT_TRUE(peft_test::close(l->lora_magnitude("default"), row_norms, 0, 1e-6));  // B = 0: m = ‖W‖_row of the dense W
  {
    torch::NoGradGuard g;
    l->lora_B("default")->weight.normal_(0, 0.3);
  }
  l->eval();
  auto x = torch::randn({2, 4});
  const auto& A = l->lora_A("default")->weight;
  const auto& B = l->lora_B("default")->weight;
  auto k = l->lora_magnitude("default") /
           torch::linalg_norm(dense + torch::matmul(B, A), c10::nullopt, c10::IntArrayRef{1}, false, c10::nullopt);
  auto want = (torch::matmul(x, dense.t()) + torch::matmul(torch::matmul(x, A.t()), B.t())) * k;
  EXPECT_TRUE(peft_test::close(l->forward(x), want, 0, 1e-5));
  l->merge();
  EXPECT_EQ(l->writes, 1);
  EXPECT_TRUE(peft_test::close(l->dense_weight(), (dense + torch::matmul(B, A)) * k.view({-1, 1}), 0, 0.0625 + 1e-6));
}

SEEDED_TEST(BaseLayerSeam, AnEmbeddingGeometryUsesBareParametersAndItsOwnBranchAndDelta) {
  torch::manual_seed(4);
  auto l = std::make_shared<TinyEmbeddingImpl>(6, 3);
  l->update_layer("default", adapter_settings(2, 4));
  l->set_adapter({"default"});
  EXPECT_EQ(param_names(*l),
            (std::vector<std::string>{"weight", "lora_embedding_A.default", "lora_embedding_B.default"}));
  EXPECT_THROW(l->lora_A("default"), peft::Error);  // no Linear factors here
  const auto ids = torch::tensor({0, 5, 2, 2}, torch::kLong);
  EXPECT_TRUE(peft_test::equal(l->forward(ids), l->base_forward(ids)));  // A = 0 at init
  const auto& f = l->lora_factors("default");
  {
    torch::NoGradGuard g;
    f.A.normal_();
  }
  auto want = torch::embedding(l->weight, ids) + torch::matmul(torch::embedding(f.A.t(), ids), f.B.t()) * 2.0;
  EXPECT_TRUE(peft_test::close(l->forward(ids), want, 0, 1e-5));

  const auto W0 = l->weight.clone();
  l->merge();
  EXPECT_TRUE(peft_test::close(l->weight, W0 + torch::matmul(f.B, f.A).t() * 2.0, 0, 1e-5));
  EXPECT_TRUE(peft_test::close(l->forward(ids), want, 0, 1e-5));
  l->unmerge();

  auto copy = std::dynamic_pointer_cast<TinyEmbeddingImpl>(l->clone());
  EXPECT_EQ(param_names(*copy), param_names(*l));
  EXPECT_TRUE(peft_test::equal(copy->forward(ids), l->forward(ids)));
  EXPECT_FALSE(copy->lora_factors("default").A.is_same(f.A));

  l->to(torch::kBFloat16);  // the factor handles follow Module::to
  EXPECT_EQ(l->lora_factors("default").B.scalar_type(), torch::kBFloat16);
  l->upcast_adapter("default");
  EXPECT_EQ(l->lora_factors("default").A.scalar_type(), torch::kFloat32);
  EXPECT_EQ(l->named_parameters()["lora_embedding_B.default"].scalar_type(), torch::kFloat32);

  l->delete_adapter("default");
  EXPECT_EQ(param_names(*l), (std::vector<std::string>{"weight"}));
}

SEEDED_TEST(ModulesToSave, CopiesAreRegisteredSelectedByActivationAndRemoved) {
  torch::nn::Module owner;
  peft::ModulesToSave copies;
  copies.add(owner, "a", peft::Linear(2, 2).ptr());
  copies.add(owner, "b", peft::Linear(2, 2).ptr());
  EXPECT_EQ(param_names(owner), (std::vector<std::string>{"modules_to_save.a.weight", "modules_to_save.a.bias",
                                                          "modules_to_save.b.weight", "modules_to_save.b.bias"}));
  for (const auto& p : owner.parameters()) EXPECT_FALSE(p.requires_grad());
  EXPECT_EQ(copies.active_copy({"x", "b", "a"}), &copies.get("b"));
  EXPECT_EQ(copies.active_copy({"x"}), nullptr);
  copies.set_trainable({"a"}, true);
  EXPECT_TRUE(copies.get("a").parameters()[0].requires_grad());
  EXPECT_FALSE(copies.get("b").parameters()[0].requires_grad());
  EXPECT_THROW(copies.get("x"), peft::Error);
  copies.remove(owner, "a");
  copies.remove(owner, "b");
  EXPECT_TRUE(copies.empty());
  EXPECT_TRUE(param_names(owner).empty());
}
