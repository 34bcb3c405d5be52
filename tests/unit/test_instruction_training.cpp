// The instruction fine-tune's training side: the labels-aware loss against a hand computation,
// right-padded batches through both builtin decoders, the index sampler's epochs and resume, the
// held-out split / truncation / packing of make_instruction_set, and its YAML keys.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "peft/models/causal_lm.hpp"
#include "peft/text/dataset.hpp"
#include "peft/train/instructions.hpp"
#include "peft/train/train_config.hpp"

using namespace peft;
using text::kIgnoreLabel;

namespace {

text::Record pc(const std::string& prompt, const std::string& completion, int line) {
  text::Record r;
  r.format = text::RecordFormat::PromptCompletion;
  r.prompt = prompt;
  r.completion = completion;
  r.where = "d.jsonl:" + std::to_string(line);
  return r;
}

std::string yaml_error(const std::string& yaml) {
  try {
    train::train_config_from_yaml(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(InstructionLoss, CausalLossIsTheMeanOverTargetsThatAreNotIgnored) {
  // V = 2. Position t predicts label t + 1; labels[0] is never a target, -100 is skipped.
  const auto logits = torch::tensor({0.0, 0.0, 1.0, 3.0, 2.0, 0.0}, torch::kFloat32).reshape({1, 3, 2});
  const auto labels = torch::tensor(std::vector<int64_t>{7, kIgnoreLabel, 0}).reshape({1, 3});
  // Only position 1 counts: logits (1, 3) against class 0: -log(e^1 / (e^1 + e^3)) = log(1 + e^2).
  EXPECT_NEAR(models::causal_lm_loss(logits, labels).item<double>(), std::log1p(std::exp(2.0)), 1e-6);
  const auto both = torch::tensor(std::vector<int64_t>{7, 1, 0}).reshape({1, 3});
  // Position 0: (0, 0) against 1 -> log 2; position 1 as above; the mean of the two.
  EXPECT_NEAR(models::causal_lm_loss(logits, both).item<double>(), (std::log(2.0) + std::log1p(std::exp(2.0))) / 2, 1e-6);
}

TEST(InstructionLoss, RightPaddingChangesNeitherLogitsNorLossOfRealTokens) {
  for (const std::string name : {"builtin:tiny-gpt2", "builtin:tiny-llama"}) {
    auto model = models::load_causal_lm(name);
    model->eval();
    torch::NoGradGuard no_grad;
    const text::Example a{{10, 20, 30, 40, 50}, {kIgnoreLabel, kIgnoreLabel, 30, 40, 50}}, b{{60, 70, 80}, {60, 70, 80}};
    const text::LabeledBatch batch = text::collate({&a, &b}, 256);
    const auto alone_b = model->forward(torch::tensor(b.ids).unsqueeze(0));
    models::ForwardArgs args;
    args.attention_mask = batch.attention_mask;
    const auto padded = model->forward(batch.input_ids, args);
    EXPECT_TRUE(torch::allclose(padded[1].slice(0, 0, 3), alone_b[0], 1e-5, 1e-5)) << name;
    // The batch loss is the target-weighted mean of the two examples' losses (3 + 2 targets).
    auto loss_of = [&](const text::Example& e) {
      return models::causal_lm_loss(model->forward(torch::tensor(e.ids).unsqueeze(0)), torch::tensor(e.labels).unsqueeze(0))
          .item<double>();
    };
    const double expected = (3 * loss_of(a) + 2 * loss_of(b)) / 5;
    EXPECT_NEAR(train::labeled_batch_loss(*model, batch.stacked()).item<double>(), expected, 1e-5) << name;
  }
}

TEST(InstructionSampler, EveryEpochVisitsEachRowOnceAndRestoreContinues) {
  text::BatchSampler s(5, 2, 11);
  std::vector<int64_t> seen;
  for (int i = 0; i < 5; ++i)
    for (int64_t r : s.next_indices()) seen.push_back(r);  // 10 rows = two epochs of 5
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.begin() + 5).size(), 5u);
  EXPECT_EQ(std::set<int64_t>(seen.begin() + 5, seen.end()).size(), 5u);
  EXPECT_NE(std::vector<int64_t>(seen.begin(), seen.begin() + 5), std::vector<int64_t>(seen.begin() + 5, seen.end()));
  EXPECT_DOUBLE_EQ(s.epoch(), 2.0);
  text::BatchSampler again(5, 2, 11), resumed(5, 2, 11);
  again.next_indices();
  resumed.restore(2);
  EXPECT_EQ(again.next_indices(), resumed.next_indices());
  EXPECT_THROW(s.next(), Error);  // no blocks to index
  EXPECT_THROW(text::BatchSampler(0, 2, 1), Error);
}

TEST(InstructionSet, HeldOutIsTheTailAndPackingKeepsHeldOutExamplesWhole) {
  const std::vector<text::Record> recs = {pc("ab", "c", 1), pc("de", "f", 2), pc("gh", "i", 3), pc("jk", "l", 4)};
  train::DataConfig data;
  data.heldout_fraction = 0.25;
  auto tok = std::make_shared<text::ByteTokenizer>();
  const auto set = train::make_instruction_set(recs, {}, data, tok, 64, {});
  ASSERT_EQ(set.train.size(), 3u);
  ASSERT_EQ(set.heldout.size(), 1u);
  EXPECT_EQ(set.heldout[0].ids, (std::vector<int64_t>{'j', 'k', 'l', 256}));
  EXPECT_EQ(set.answers[0].prompt, (std::vector<int64_t>{'j', 'k'}));
  EXPECT_EQ(set.answers[0].expected, (std::vector<int64_t>{'l', 256}));
  EXPECT_EQ(set.tokens, 16);
  data.packing = true;
  const auto packed = train::make_instruction_set(recs, {}, data, tok, 5, {});
  ASSERT_EQ(packed.train.size(), 3u);  // 12 train tokens in blocks of 5: 5 + 5 + 2
  // "abc<eos>" "def<eos>" "ghi<eos>" -> "abc<eos>d" "ef<eos>gh" "i<eos>", prompts masked.
  EXPECT_EQ(packed.train[1].ids, (std::vector<int64_t>{'e', 'f', 256, 'g', 'h'}));
  EXPECT_EQ(packed.train[1].labels, (std::vector<int64_t>{kIgnoreLabel, 'f', 256, kIgnoreLabel, kIgnoreLabel}));
  EXPECT_EQ(packed.train[2].labels, (std::vector<int64_t>{'i', 256}));
  EXPECT_EQ(packed.heldout[0].ids.size(), 4u);
}

TEST(InstructionSet, RecordLeftWithoutTargetsByTruncationIsNamed) {
  train::DataConfig data;
  const std::vector<text::Record> recs = {pc("a", "b", 1), pc("long prompt", "x", 2), pc("c", "d", 3)};
  try {
    train::make_instruction_set(recs, {}, data, std::make_shared<text::ByteTokenizer>(), 4, {});
    FAIL() << "no error";
  } catch (const SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("d.jsonl:2: nothing to train on in the first 4 tokens"), std::string::npos)
        << e.what();
  }
}

TEST(InstructionConfig, NewKeysParseAndTyposGetSuggestions) {
  const auto c = train::train_config_from_yaml(
      "data: {format: prompt_completion, completion_only_loss: false, assistant_only_loss: false, packing: true, "
      "max_length: 32}\ntraining: {num_train_epochs: 2.5}\n",
      "t.yaml");
  EXPECT_EQ(c.data.format, "prompt_completion");
  EXPECT_FALSE(c.data.completion_only_loss);
  EXPECT_FALSE(c.data.assistant_only_loss);
  EXPECT_TRUE(c.data.packing);
  EXPECT_EQ(c.data.max_length, 32);
  EXPECT_DOUBLE_EQ(c.training.num_train_epochs, 2.5);
  EXPECT_NE(yaml_error("data:\n  packng: true\n").find("t.yaml:2:3: data.packng: unknown key in `data:` (hint: did you mean `packing`?)"),
            std::string::npos);
  EXPECT_NE(yaml_error("data:\n  format: prompt_completon\n").find("did you mean `prompt_completion`?"), std::string::npos);
  EXPECT_NE(yaml_error("training:\n  num_train_epochs: 0\n").find("training.num_train_epochs = 0: must be > 0"),
            std::string::npos);
  EXPECT_NE(yaml_error("data:\n  packing: yes please\n").find("data.packing"), std::string::npos);
}
