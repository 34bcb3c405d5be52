// The Llama-family and GPT-2 reference models against transformers' own checkpoints and outputs
// (tests/fixtures/hf_models, written by transformers 4.47 + PEFT 0.20; $PEFT_HF_MODELS points at
// another set of the same shape): base, adapted and merged logits, greedy tokens (full forward
// and with the KV cache), peft-merge's merged checkpoint, and left-padded batches.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/io/adapters.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace peft::models;

namespace {

std::vector<fs::path> family_cases() {
  std::vector<fs::path> out;
  const auto root = peft_test::hf_models_dir();
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "case.json")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

torch::Tensor expected(const fs::path& dir, const std::string& key) {
  static std::map<std::string, peft::SafetensorsFile> cache;
  auto& f = cache[dir.string()];
  if (f.tensors.empty()) f = peft::load_safetensors(dir / "expected.safetensors");
  const torch::Tensor* t = f.find(key);
  if (!t) throw std::runtime_error(dir.string() + ": expected.safetensors has no " + key);
  return *t;
}

/// Greedy continuation of `prompt` [B, T] for `steps` tokens, a full forward per step (as the
/// fixtures were made). Also returns, per step, whether the top two logits were within 1e-5 (a
/// tie transformers may break the other way).
std::pair<torch::Tensor, std::vector<bool>> greedy_full(CausalLMImpl& m, torch::Tensor ids, std::int64_t steps) {
  std::vector<bool> ties;
  for (std::int64_t s = 0; s < steps; ++s) {
    auto last = m.forward(ids).select(1, ids.size(1) - 1);
    auto top2 = std::get<0>(last.topk(2, -1));
    ties.push_back((top2.select(1, 0) - top2.select(1, 1)).min().item<double>() < 1e-5);
    ids = torch::cat({ids, last.argmax(-1, /*keepdim=*/true)}, 1);
  }
  return {ids, ties};
}

/// The same with the KV cache: the prompt once, then one token per call.
torch::Tensor greedy_cached(CausalLMImpl& m, torch::Tensor ids, std::int64_t steps) {
  KVCache cache;
  ForwardArgs args;
  args.cache = &cache;
  auto logits = m.forward(ids, args);
  for (std::int64_t s = 0; s < steps; ++s) {
    auto next = logits.select(1, logits.size(1) - 1).argmax(-1, /*keepdim=*/true);
    ids = torch::cat({ids, next}, 1);
    logits = m.forward(next, args);
  }
  EXPECT_EQ(cache.length(), ids.size(1));  // the last token was fed too
  return ids;
}

/// Tokens equal up to the first step whose top two logits tied in our run.
void expect_same_tokens(const torch::Tensor& got, const torch::Tensor& want, const std::vector<bool>& ties,
                        std::int64_t prompt, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  for (std::int64_t s = 0; s < static_cast<std::int64_t>(ties.size()); ++s) {
    const auto col = prompt + s;
    if (!torch::equal(got.select(1, col), want.select(1, col))) {
      EXPECT_TRUE(ties[static_cast<std::size_t>(s)]) << what << ": greedy token " << s << " differs";
      return;
    }
  }
}

class HfFamilies : public ::testing::TestWithParam<fs::path> {};

}  // namespace

TEST(HfFamiliesSet, HasCases) {
  EXPECT_FALSE(family_cases().empty()) << "no cases under " << peft_test::hf_models_dir();
}

TEST_P(HfFamilies, BaseAdaptedAndMergedLogitsAndGreedyTokensMatchTransformers) {
  const fs::path dir = GetParam();
  const std::string name = dir.filename().string();
  auto model = load_causal_lm((dir / "base").string());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto ids = expected(dir, "input_ids");
  const auto T = ids.size(1);

  EXPECT_TRUE(peft_test::close(model->forward(ids), expected(dir, "logits_base"), 0, 1e-4)) << name << " base";
  const auto want_base = expected(dir, "greedy_base");
  const auto steps = want_base.size(1) - T;
  auto [base_tokens, base_ties] = greedy_full(*model, ids, steps);
  expect_same_tokens(base_tokens, want_base, base_ties, T, name + " greedy_base");
  EXPECT_TRUE(torch::equal(greedy_cached(*model, ids, steps), base_tokens)) << name << ": KV cache changes greedy tokens";

  auto pm = peft::from_pretrained(model, dir / "adapter");
  EXPECT_TRUE(peft_test::close(model->forward(ids), expected(dir, "logits_adapter"), 0, 1e-4)) << name << " adapter";
  auto [lora_tokens, lora_ties] = greedy_full(*model, ids, steps);
  expect_same_tokens(lora_tokens, expected(dir, "greedy_adapter"), lora_ties, T, name + " greedy_adapter");
  EXPECT_TRUE(torch::equal(greedy_cached(*model, ids, steps), lora_tokens)) << name << ": KV cache with LoRA";

  peft::ScopedWarningCapture quiet;  // tied-embedding merge warnings
  pm.merge_and_unload();
  EXPECT_TRUE(peft_test::close(model->forward(ids), expected(dir, "logits_merged"), 0, 1e-4)) << name << " merged";
}

TEST_P(HfFamilies, PeftMergeWritesACheckpointWithTheMergedLogits) {
  const fs::path dir = GetParam();
  const fs::path out = peft_test::scratch_dir("hf_family_merge_" + dir.filename().string());
  peft::ScopedWarningCapture quiet;
  peft::merge_checkpoint(dir / "base", {{dir / "adapter", 1.0}}, out / "merged");
  auto merged = load_causal_lm((out / "merged").string());
  merged->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(peft_test::close(merged->forward(expected(dir, "input_ids")), expected(dir, "logits_merged"), 0, 1e-4));
}

TEST_P(HfFamilies, LeftPaddedBatchGivesEachPromptsOwnLogits) {
  const fs::path dir = GetParam();
  auto model = load_causal_lm((dir / "base").string());
  model->eval();
  torch::NoGradGuard no_grad;
  const auto ids = expected(dir, "input_ids");
  const auto B = ids.size(0), T = ids.size(1);
  ASSERT_GE(T, 3);
  // The last row keeps its last T - pad tokens behind pad positions (token 0, masked).
  const std::int64_t pad = T / 3, last = B - 1;
  auto short_row = ids.select(0, last).slice(0, pad).unsqueeze(0);
  auto padded = ids.clone();
  padded.select(0, last).slice(0, 0, pad).fill_(0);
  padded.select(0, last).slice(0, pad).copy_(short_row.squeeze(0));
  auto mask = torch::ones({B, T}, torch::kInt64);
  mask.select(0, last).slice(0, 0, pad).zero_();
  ForwardArgs args;
  args.attention_mask = mask;
  const auto batched = model->forward(padded, args);
  EXPECT_TRUE(torch::isfinite(batched).all().item<bool>()) << "padding rows must stay finite";
  EXPECT_TRUE(peft_test::close(batched.select(0, 0), model->forward(ids.slice(0, 0, 1)).squeeze(0), 0, 1e-4));
  // LongRoPE picks its factors from the longest position of the whole call (transformers does
  // the same), so a shorter row alone may use the other factors: compare it only without LongRoPE.
  const bool batch_dependent_rope =
      peft_test::read_json(dir / "base" / "config.json").dump().find("longrope") != std::string::npos;
  if (!batch_dependent_rope) {
    EXPECT_TRUE(peft_test::close(batched.select(0, last).slice(0, pad), model->forward(short_row).squeeze(0), 0, 1e-4));
  }

  // Then one cached step with the mask grown by one column.
  KVCache cache;
  args.cache = &cache;
  model->forward(padded, args);
  auto next = (torch::arange(B, torch::kInt64) + 3).remainder(model->vocab_size()).unsqueeze(1);
  args.attention_mask = torch::cat({mask, torch::ones({B, 1}, torch::kInt64)}, 1);
  const auto step = model->forward(next, args).squeeze(1);
  auto full0 = model->forward(torch::cat({ids.slice(0, 0, 1), next.slice(0, 0, 1)}, 1));
  auto full_last = model->forward(torch::cat({short_row, next.slice(0, last, last + 1)}, 1));
  EXPECT_TRUE(peft_test::close(step.select(0, 0), full0.select(1, T).squeeze(0), 0, 1e-4));
  if (!batch_dependent_rope) {
    EXPECT_TRUE(peft_test::close(step.select(0, last), full_last.select(1, T - pad).squeeze(0), 0, 1e-4));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFamilies, ::testing::ValuesIn(family_cases()),
                         [](const ::testing::TestParamInfo<fs::path>& param_info) {
                           std::string n = param_info.param.filename().string();
                           for (auto& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });
