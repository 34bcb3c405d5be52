// The chunked next-token loss (models/causal_lm.hpp: chunked_causal_lm_loss; issue 18): the
// same loss and hidden-state gradient as cross entropy over the full logits for any chunk size
// and ignored labels, the model-level causal_lm_loss takes it exactly when the head is a plain
// frozen linear map, and its peak memory is a fraction of the full logits'.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "peft/models/causal_lm.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/tuner/lora_model.hpp"
#include "support/cpu_memory_counter.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_decoders.hpp"

using namespace peft::models;

namespace {

/// hidden [B, T, d] (trainable), W [V, d] frozen, labels with some -100.
struct Case {
  torch::Tensor hidden, W, labels;
};
Case make_case(std::int64_t B, std::int64_t T, std::int64_t d, std::int64_t V) {
  Case c;
  c.hidden = torch::randn({B, T, d}).requires_grad_(true);
  c.W = torch::randn({V, d});
  c.labels = torch::randint(V, {B, T}, torch::kInt64);
  c.labels.index_put_({0, 2}, -100);
  c.labels.index_put_({B - 1, T - 1}, -100);
  return c;
}

}  // namespace

SEEDED_TEST(ChunkedLoss, EqualsCrossEntropyOverTheFullLogitsForEveryChunkSize) {
  const Case c = make_case(2, 5, 3, 7);
  const auto want = causal_lm_loss(torch::linear(c.hidden, c.W), c.labels);
  const auto want_grad = torch::autograd::grad({want}, {c.hidden})[0];
  for (std::int64_t chunk : {1, 3, 8, 0}) {  // 0: the default (all 8 rows here)
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const auto got = chunked_causal_lm_loss(c.hidden, c.W, c.labels, chunk);
    EXPECT_TRUE(peft_test::close(got, want, 1e-6, 1e-6));
    const auto got_grad = torch::autograd::grad({got}, {c.hidden})[0];
    EXPECT_TRUE(peft_test::close(got_grad, want_grad, 1e-5, 1e-7));
  }
  // A scaled loss scales the gradient (the saved gradient is for d loss = 1).
  const auto scaled = torch::autograd::grad({chunked_causal_lm_loss(c.hidden, c.W, c.labels, 3) * 2.5}, {c.hidden})[0];
  EXPECT_TRUE(peft_test::close(scaled, want_grad * 2.5, 1e-5, 1e-7));
}

SEEDED_TEST(ChunkedLoss, AllLabelsIgnoredGivesNanLikePyTorchAndNoGradModeComputesOnlyTheLoss) {
  Case c = make_case(1, 4, 3, 5);
  c.labels.fill_(-100);
  EXPECT_TRUE(std::isnan(chunked_causal_lm_loss(c.hidden, c.W, c.labels).item<double>()));
  const Case d = make_case(2, 4, 3, 5);
  torch::NoGradGuard no_grad;
  const auto loss = chunked_causal_lm_loss(d.hidden, d.W, d.labels, 2);
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_TRUE(peft_test::close(loss, causal_lm_loss(torch::linear(d.hidden, d.W), d.labels), 1e-6, 1e-6));
}

SEEDED_TEST(ChunkedLoss, ModelLossTakesTheChunkedPathOnlyForAPlainFrozenHead) {
  // Tied GPT-2 and untied Llama: LoRA on the blocks, head frozen -> hidden states; same loss and
  // LoRA gradients as the logits path.
  std::vector<CausalLM> models = {std::make_shared<GPT2LMHeadModelImpl>(peft_test::small_gpt2(/*tied=*/true)),
                                  std::make_shared<LlamaForCausalLMImpl>(peft_test::small_llama(/*tied=*/false))};
  for (auto& model : models) {
    SCOPED_TRACE(model->model_type());
    peft::LoraConfig cfg;
    cfg.r = 2;
    cfg.target_modules = peft::ModuleSpec::list({model->model_type() == "gpt2" ? "c_attn" : "q_proj"});
    cfg.fan_in_fan_out = model->model_type() == "gpt2";
    auto pm = peft::get_peft_model(model, cfg);
    {
      torch::NoGradGuard g;
      for (auto& p : pm.trainable_parameters()) p.normal_();
    }
    const auto ids = peft_test::ids_for(model->vocab_size(), 2, 6, 3);
    ASSERT_TRUE(model->forward_hidden(ids, {}).has_value());
    const auto params = pm.trainable_parameters();
    const auto want = causal_lm_loss(model->forward(ids), ids);
    const auto want_grads = torch::autograd::grad({want}, params);
    const auto got = causal_lm_loss(*model, ids, ids);
    const auto got_grads = torch::autograd::grad({got}, params);
    EXPECT_TRUE(peft_test::close(got, want, 1e-6, 1e-6));
    for (std::size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(peft_test::close(got_grads[i], want_grads[i], 1e-4, 1e-6));
  }
  // An adapter on the head, or a trainable head weight: no hidden-state path (the logits one runs).
  auto llama = std::make_shared<LlamaForCausalLMImpl>(peft_test::small_llama(false));
  peft::LoraConfig head_cfg;
  head_cfg.r = 2;
  head_cfg.target_modules = peft::ModuleSpec::list({"lm_head"});
  auto pm = peft::get_peft_model(llama, head_cfg);
  const auto ids = peft_test::ids_for(llama->vocab_size(), 1, 5, 4);
  EXPECT_FALSE(llama->forward_hidden(ids, {}).has_value());
  EXPECT_TRUE(causal_lm_loss(*llama, ids, ids).requires_grad());
  auto full = std::make_shared<LlamaForCausalLMImpl>(peft_test::small_llama(false));  // every weight trains
  EXPECT_FALSE(full->forward_hidden(ids, {}).has_value());
}

SEEDED_TEST(ChunkedLoss, PeakMemoryIsAFractionOfTheFullLogits) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  ASSERT_NE(counter, nullptr);
  const Case c = make_case(2, 128, 32, 4096);  // full logits: 254 x 4096 fp32 = 4.2 MB each
  auto peak_of = [&](auto&& loss_fn) {
    c.hidden.mutable_grad() = torch::Tensor();
    counter->reset_peak();
    const auto before = counter->live_bytes();
    loss_fn().backward();
    return static_cast<double>(counter->peak_bytes() - before);
  };
  const double full = peak_of([&] { return causal_lm_loss(torch::linear(c.hidden, c.W), c.labels); });
  const double chunked = peak_of([&] { return chunked_causal_lm_loss(c.hidden, c.W, c.labels, 32); });
  const double logits_bytes = 254.0 * 4096 * 4;
  EXPECT_GE(full, 2 * logits_bytes);
  EXPECT_LE(chunked, 0.5 * logits_bytes) << "full " << full << " bytes, chunked " << chunked;
}
