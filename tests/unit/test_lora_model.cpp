// get_peft_model / LoraModel: the injection contract and the adapter lifecycle
// (docs/matching.md#target-matching-and-per-module-settings, docs/layer.md#bias-modes-and-trainability,
// docs/lifecycle.md#adapter-lifecycle).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

namespace {

/// PEFT's test MLP: lin0 (10 -> 20) -> relu -> lin1 (20 -> 2) -> log_softmax, peft::Linear layers.
struct Mlp : peft_test::Mlp {
  Mlp() : peft_test::Mlp(peft_test::MlpOptions({10, 20, 2}).log_softmax(true)) {}
};

/// The same with stock torch::nn::Linear members: cannot be adapted (members would go stale).
struct StockMlpImpl : torch::nn::Module {
  StockMlpImpl() : lin0(register_module("lin0", torch::nn::Linear(10, 20))) {}
  torch::Tensor forward(const torch::Tensor& x) { return lin0(x); }
  torch::nn::Linear lin0;
};
TORCH_MODULE(StockMlp);

peft::LoraConfig targets(peft::ModuleSpec t, std::int64_t r = 8, double alpha = 8) {
  peft::LoraConfig c;
  c.target_modules = std::move(t);
  c.r = r;
  c.lora_alpha = static_cast<long long>(alpha);
  return c;
}

using peft_test::param_names;
using peft_test::randomise_lora_B;

}  // namespace

SEEDED_TEST(GetPeftModel, AttachesInPlaceToPeftLinearMembers) {
  Mlp mlp;
  auto x = torch::randn({6, 10});
  auto before = mlp(x);
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  EXPECT_TRUE(peft_test::close(mlp(x), before));  // B = 0 at init
  randomise_lora_B(pm);
  EXPECT_TRUE(peft_test::not_close(mlp(x), before));  // the member mlp->lin0 sees the adapter
  EXPECT_EQ(pm.targeted_module_names(), (std::vector<std::string>{"lin0"}));
  EXPECT_EQ(param_names(*mlp), (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin0.lora_A.default.weight",
                                                   "lin0.lora_B.default.weight", "lin1.weight", "lin1.bias"}));
}

SEEDED_TEST(GetPeftModel, PrintsPeftsTrainableParametersLine) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  EXPECT_EQ(pm.trainable_parameters_summary(), "trainable params: 240 || all params: 502 || trainable%: 47.8088");
  std::ostringstream os;
  pm.print_trainable_parameters(os);
  EXPECT_EQ(os.str(), pm.trainable_parameters_summary() + "\n");
  EXPECT_EQ(pm.trainable_parameters().size(), 2u);
}

SEEDED_TEST(GetPeftModel, FreezesEverythingButTheActiveAdapter) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  for (const auto& p : mlp->named_parameters())
    EXPECT_EQ(p.value().requires_grad(), p.key().find("lora_") != std::string::npos) << p.key();
}

SEEDED_TEST(GetPeftModel, BiasModesMakeBiasesTrainable) {
  {
    Mlp mlp;
    auto c = targets({"lin0"});
    c.bias = peft::Bias::all;
    peft::get_peft_model(mlp, c);
    EXPECT_TRUE(mlp->lin0->bias.requires_grad());
    EXPECT_TRUE(mlp->lin1->bias.requires_grad());
    EXPECT_FALSE(mlp->lin1->weight.requires_grad());
  }
  {
    Mlp mlp;
    auto c = targets({"lin0"});
    c.bias = peft::Bias::lora_only;
    peft::get_peft_model(mlp, c);
    EXPECT_TRUE(mlp->lin0->bias.requires_grad());
    EXPECT_FALSE(mlp->lin1->bias.requires_grad());
  }
}

SEEDED_TEST(GetPeftModel, StockLinearsInContainersAreSwappedInPlace) {
  torch::nn::Sequential seq(torch::nn::Linear(4, 4), torch::nn::ReLU(), torch::nn::Linear(4, 2));
  auto x = torch::randn({3, 4});
  auto before = seq->forward(x);
  auto w0 = seq[0]->as<torch::nn::LinearImpl>()->weight;
  auto pm = peft::get_peft_model(seq.ptr(), targets({"0", "2"}, 2, 2));
  EXPECT_EQ(pm.targeted_module_names(), (std::vector<std::string>{"0", "2"}));
  auto* swapped = seq[0]->as<peft::LinearImpl>();
  ASSERT_NE(swapped, nullptr);
  EXPECT_TRUE(swapped->weight.is_same(w0));  // shares the original tensors
  EXPECT_TRUE(peft_test::close(seq->forward(x), before));
  randomise_lora_B(pm);
  EXPECT_TRUE(peft_test::not_close(seq->forward(x), before));  // Sequential's forward reaches LoRA

  torch::nn::ModuleList list(torch::nn::Linear(4, 4));
  auto pl = peft::get_peft_model(list.ptr(), targets({"0"}, 2, 2));
  EXPECT_NE(list[0]->as<peft::LinearImpl>(), nullptr);
  EXPECT_NE(list->named_children()["0"]->as<peft::LinearImpl>(), nullptr);

  torch::nn::ModuleDict dict;
  dict->update({{"proj", torch::nn::Linear(4, 4).ptr()}});
  auto pd = peft::get_peft_model(dict.ptr(), targets({"proj"}, 2, 2));
  EXPECT_NE(dict["proj"]->as<peft::LinearImpl>(), nullptr);
}

SEEDED_TEST(GetPeftModel, AStockLinearHeldByAMemberIsRefusedAndNothingChanges) {
  StockMlp m;
  const auto before = param_names(*m);
  try {
    peft::get_peft_model(m, targets({"lin0"}));
    FAIL() << "accepted a stale member";
  } catch (const peft::UnsupportedModuleError& e) {
    EXPECT_NE(std::string(e.what()).find("peft::Linear"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("lin0"), std::string::npos);
  }
  EXPECT_EQ(param_names(*m), before);
  EXPECT_NE(m->named_children()["lin0"]->as<torch::nn::LinearImpl>(), nullptr);
}

SEEDED_TEST(GetPeftModel, AFailedInjectionLeavesTheModelUntouched) {
  Mlp mlp;
  const auto before = param_names(*mlp);
  EXPECT_THROW(peft::get_peft_model(mlp, targets({"nope"})), peft::TargetNotFoundError);
  EXPECT_THROW(peft::get_peft_model(mlp, targets({"lin0", "relu"})), peft::UnsupportedModuleError);
  auto c = targets({"lin0", "lin1"});
  c.rank_pattern.set("lin1", 0);
  EXPECT_THROW(peft::get_peft_model(mlp, c), peft::ConfigError);
  auto pissa = targets({"lin0", "lin1"});
  pissa.init_lora_weights = "pissa";
  EXPECT_THROW(peft::get_peft_model(mlp, pissa), peft::ConfigError);
  auto dora = targets({"lin0", "lin1"});
  dora.use_dora = true;
  dora.lora_bias = true;  // PEFT: lora_bias is not supported with DoRA
  EXPECT_THROW(peft::get_peft_model(mlp, dora), peft::ConfigError);
  EXPECT_EQ(param_names(*mlp), before);
}

SEEDED_TEST(LoraModelLifecycle, AddedAdaptersAreInactiveUntilSet) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  pm.add_adapter("other", targets({"lin0", "lin1"}, 4, 8));
  EXPECT_EQ(pm.active_adapters(), (std::vector<std::string>{"default"}));
  EXPECT_FALSE(mlp->lin1->lora_A("other")->weight.requires_grad());
  EXPECT_THROW(pm.add_adapter("other", targets({"lin0"})), peft::ConfigError);
  pm.set_adapter("other");
  EXPECT_TRUE(mlp->lin1->lora_A("other")->weight.requires_grad());
  EXPECT_FALSE(mlp->lin0->lora_A("default")->weight.requires_grad());
  EXPECT_THROW(pm.set_adapter("missing"), peft::Error);
}

SEEDED_TEST(LoraModelLifecycle, SeveralActiveAdaptersSum) {
  Mlp mlp;
  mlp->train(false);
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  pm.add_adapter("other", targets({"lin0"}, 4, 8));
  randomise_lora_B(pm);
  auto x = torch::randn({2, 10});
  auto base = mlp->lin0->base_forward(x);
  pm.set_adapter("default");
  auto d1 = mlp->lin0(x) - base;
  pm.set_adapter("other");
  auto d2 = mlp->lin0(x) - base;
  pm.set_adapter(std::vector<std::string>{"default", "other"});
  EXPECT_TRUE(peft_test::close(mlp->lin0(x) - base, d1 + d2, 1e-5, 1e-5));
}

SEEDED_TEST(LoraModelLifecycle, DisableAdapterIsScoped) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0", "lin1"}));
  randomise_lora_B(pm);
  auto x = torch::randn({2, 10});
  auto with = mlp(x);
  {
    auto off = pm.disable_adapter();
    EXPECT_TRUE(peft_test::close(mlp(x), torch::log_softmax(mlp->lin1->base_forward(torch::relu(mlp->lin0->base_forward(x))), -1)));
    EXPECT_FALSE(mlp->lin0->lora_A("default")->weight.requires_grad());
  }
  EXPECT_TRUE(peft_test::close(mlp(x), with));
  EXPECT_TRUE(mlp->lin0->lora_A("default")->weight.requires_grad());
}

SEEDED_TEST(LoraModelLifecycle, MergeAndUnloadGivesAPlainModelWithTheSameOutput) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0", "lin1"}, 4, 8));
  randomise_lora_B(pm);
  auto x = torch::randn({5, 10});
  auto with = mlp(x);
  auto model = pm.merge_and_unload();
  EXPECT_EQ(model.get(), mlp.ptr().get());
  EXPECT_EQ(param_names(*mlp), (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin1.weight", "lin1.bias"}));
  EXPECT_TRUE(peft_test::close(mlp(x), with, 1e-5, 1e-5));
  EXPECT_TRUE(pm.adapter_names().empty());
}

SEEDED_TEST(LoraModelLifecycle, UnloadDropsAdaptersWithoutMerging) {
  Mlp mlp;
  auto x = torch::randn({5, 10});
  auto base = mlp(x);
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  randomise_lora_B(pm);
  pm.unload();
  EXPECT_TRUE(peft_test::equal(mlp(x), base));
}

SEEDED_TEST(LoraModelLifecycle, SafeMergeFailureLeavesEveryLayerUnmerged) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0", "lin1"}));
  randomise_lora_B(pm);
  {
    torch::NoGradGuard g;
    mlp->lin1->lora_B("default")->weight.fill_(std::nanf(""));
  }
  auto w0 = mlp->lin0->weight.clone();
  EXPECT_THROW(pm.merge_and_unload(/*safe_merge=*/true), peft::Error);
  EXPECT_TRUE(peft_test::equal(mlp->lin0->weight, w0));
  EXPECT_FALSE(mlp->lin0->merged());
  EXPECT_EQ(pm.adapter_names(), (std::vector<std::string>{"default"}));
}

SEEDED_TEST(LoraModelLifecycle, DeleteAdapterFallsBackToAnotherOne) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  pm.add_adapter("b", targets({"lin0"}));
  peft::ScopedWarningCapture w;
  pm.delete_adapter("default");
  EXPECT_EQ(pm.active_adapters(), (std::vector<std::string>{"b"}));
  EXPECT_FALSE(mlp->lin0->has_adapter("default"));
  pm.merge_adapter();
  EXPECT_THROW(pm.delete_adapter("b"), peft::Error);
  pm.unmerge_adapter();
  pm.delete_adapter("b");
  EXPECT_EQ(param_names(*mlp), (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin1.weight", "lin1.bias"}));
}

SEEDED_TEST(LoraModelLifecycle, OnlyOneAdapterMayTrainBiases) {
  Mlp mlp;
  auto c = targets({"lin0"});
  c.bias = peft::Bias::all;
  auto pm = peft::get_peft_model(mlp, c);
  EXPECT_THROW(pm.add_adapter("b", c), peft::ConfigError);
}

SEEDED_TEST(LoraModelLifecycle, InferenceModeConfigsAreFrozen) {
  Mlp mlp;
  auto c = targets({"lin0"});
  c.inference_mode = true;
  auto pm = peft::get_peft_model(mlp, c);
  EXPECT_EQ(pm.get_nb_trainable_parameters().first, 0);
}

SEEDED_TEST(LoraModelLifecycle, Bf16ModelKeepsFp32Adapters) {
  Mlp mlp;
  mlp->to(torch::kBFloat16);
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  EXPECT_EQ(mlp->lin0->lora_A("default")->weight.scalar_type(), torch::kFloat32);
  auto y = mlp(torch::randn({2, 10}).to(torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
}

SEEDED_TEST(ModulesToSave, KeepsATrainableCopyThatReplacesTheLayerWhileActive) {
  Mlp mlp;
  auto x = torch::randn({3, 10});
  auto c = targets({"lin0"});
  c.modules_to_save = std::vector<std::string>{"lin1"};
  auto pm = peft::get_peft_model(mlp, c);
  auto& copy = mlp->lin1->trainable_copy("default");
  EXPECT_TRUE(copy.base_weight().requires_grad());
  EXPECT_FALSE(mlp->lin1->weight.requires_grad());
  auto p = mlp->named_parameters();
  EXPECT_NE(p.find("lin1.modules_to_save.default.weight"), nullptr);
  EXPECT_NE(p.find("lin1.modules_to_save.default.bias"), nullptr);
  // PEFT counts the original and the copy: 240 (LoRA) + 42 (copy) of 502 + 42.
  EXPECT_EQ(pm.trainable_parameters_summary(), "trainable params: 282 || all params: 544 || trainable%: 51.8382");
  {
    torch::NoGradGuard g;
    copy.base_weight()[0].add_(1.0);  // one row: log_softmax ignores a common shift
  }
  auto trained = mlp(x);
  {
    auto off = pm.disable_adapter();
    EXPECT_TRUE(peft_test::not_close(mlp(x), trained));  // the original layer again
  }
  pm.merge_and_unload();  // the trained copy becomes lin1
  EXPECT_TRUE(peft_test::close(mlp(x), trained, 1e-6, 1e-6));
  EXPECT_EQ(param_names(*mlp), (std::vector<std::string>{"lin0.weight", "lin0.bias", "lin1.weight", "lin1.bias"}));
}

SEEDED_TEST(ModulesToSave, AdaptedLayersCannotBeSavedWholeAndNothingChangesOtherwise) {
  // Any module type can be saved whole now (a parameterless ReLU too, as in PEFT); a layer that
  // already carries adapters cannot.
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  const auto before = param_names(*mlp);
  auto c = targets({"lin1"});
  c.modules_to_save = std::vector<std::string>{"lin0"};
  EXPECT_THROW(pm.add_adapter("other", c), peft::UnsupportedModuleError);
  EXPECT_EQ(param_names(*mlp), before);
}

SEEDED_TEST(MixedBatch, EachRowUsesItsOwnAdapter) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0", "lin1"}));
  pm.add_adapter("other", targets({"lin0"}, 4, 8));
  randomise_lora_B(pm);
  mlp->eval();
  auto x = torch::randn({3, 10});
  pm.set_adapter("default");
  auto with_default = mlp(x);
  pm.set_adapter("other");
  auto with_other = mlp(x);
  torch::Tensor base;
  {
    auto off = pm.disable_adapter();
    base = mlp(x);
  }
  torch::Tensor mixed;
  {
    auto scope = pm.mixed_batch({"other", "__base__", "default"});
    mixed = mlp(x);
  }
  EXPECT_TRUE(peft_test::close(mixed[0], with_other[0], 1e-6, 1e-6));
  EXPECT_TRUE(peft_test::close(mixed[1], base[1], 1e-6, 1e-6));
  EXPECT_TRUE(peft_test::close(mixed[2], with_default[2], 1e-6, 1e-6));
  EXPECT_TRUE(peft_test::close(mlp(x), with_other));  // scope ended
}

SEEDED_TEST(MixedBatch, RejectsTrainingModeUnknownNamesAndWrongBatchSize) {
  Mlp mlp;
  auto pm = peft::get_peft_model(mlp, targets({"lin0"}));
  mlp->train();
  EXPECT_THROW(pm.mixed_batch({"default"}), peft::Error);
  mlp->eval();
  EXPECT_THROW(pm.mixed_batch({"nope"}), peft::Error);
  auto scope = pm.mixed_batch({"default", "default"});
  EXPECT_THROW(mlp(torch::randn({3, 10})), peft::Error);
}
