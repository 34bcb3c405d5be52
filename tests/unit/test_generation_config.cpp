// The pieces of generation that need no model: transformers' logits processors on small
// hand-checkable scores (expected values printed by transformers 4.47's processors, the oracle
// of ../shared/oracle), GenerationConfig reading and validation, and the UTF-8 streaming helpers.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <limits>

#include "peft/models/generation_config.hpp"
#include "peft/models/logits_process.hpp"
#include "peft/text/utf8_stream.hpp"
#include "peft/warnings.hpp"
#include "support/fixtures.hpp"

using namespace peft::models;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

torch::Tensor row(std::vector<float> v) { return torch::tensor(v).unsqueeze(0); }

/// Exact equality, -inf included (allclose treats equal infinities as close).
void expect_scores(const torch::Tensor& got, const torch::Tensor& want) {
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, 1e-6, 1e-6)) << "got " << got << "\nwant " << want;
}

torch::Tensor log_probs(std::vector<float> p) { return row(std::move(p)).log(); }

/// `scores` with the entries at `removed` set to -inf.
torch::Tensor without(torch::Tensor scores, std::vector<int64_t> removed) {
  scores = scores.clone();
  for (auto i : removed) scores[0][i] = -kInf;
  return scores;
}

}  // namespace

TEST(LogitsProcessors, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce) {
  // Token 1 occurs twice (penalised once), token 0 once; 2 and 3 are not in the sequence.
  const auto ids = torch::tensor({{0, 1, 1}}, torch::kLong);
  const auto s = row({2.0f, -2.0f, 0.5f, -1.0f});
  expect_scores(apply_repetition_penalty(ids, s, 2.0), row({1.0f, -4.0f, 0.5f, -1.0f}));
  expect_scores(apply_repetition_penalty(ids, s, 0.5), row({4.0f, -1.0f, 0.5f, -1.0f}));  // < 1 rewards
  expect_scores(apply_repetition_penalty(ids, s, 1.0), s);
  EXPECT_TRUE(torch::equal(s, row({2.0f, -2.0f, 0.5f, -1.0f})));  // input untouched
  // Per row: row 1 penalises only its own tokens.
  const auto two = torch::tensor({{1.0f, 1.0f, 1.0f}, {1.0f, 1.0f, -1.0f}});
  expect_scores(apply_repetition_penalty(torch::tensor({{0, 0}, {2, 1}}, torch::kLong), two, 4.0),
                torch::tensor({{0.25f, 1.0f, 1.0f}, {1.0f, 0.25f, -4.0f}}));
  EXPECT_THROW(apply_repetition_penalty(ids, s, 0.0), peft::ConfigError);
  EXPECT_THROW(apply_repetition_penalty(torch::tensor({{0}, {1}}, torch::kLong), s, 2.0), peft::Error);
}

TEST(LogitsProcessors, TemperatureDividesTheScores) {
  expect_scores(apply_temperature(row({1.0f, 2.0f, -4.0f}), 0.5), row({2.0f, 4.0f, -8.0f}));
  expect_scores(apply_temperature(row({1.0f, 2.0f, -4.0f}), 2.0), row({0.5f, 1.0f, -2.0f}));
  EXPECT_THROW(apply_temperature(row({1.0f}), 0.0), peft::ConfigError);
}

TEST(LogitsProcessors, TopKKeepsTiesWithTheKthAndHonoursMinKeep) {
  const auto s = row({1.0f, 3.0f, 3.0f, 2.0f, 0.0f});
  expect_scores(apply_top_k(s, 1), without(s, {0, 3, 4}));  // both 3s tie with the first
  expect_scores(apply_top_k(s, 2), without(s, {0, 3, 4}));
  expect_scores(apply_top_k(s, 3), without(s, {0, 4}));
  expect_scores(apply_top_k(s, 10), s);                     // k > vocab: nothing removed
  expect_scores(apply_top_k(s, 0), s);                      // 0 = off
  expect_scores(apply_top_k(s, 1, /*min_tokens_to_keep=*/3), without(s, {0, 4}));
  // Rows are independent.
  const auto two = torch::tensor({{0.0f, 1.0f, 2.0f}, {2.0f, 1.0f, 0.0f}});
  expect_scores(apply_top_k(two, 1), torch::tensor({{-kInf, -kInf, 2.0f}, {2.0f, -kInf, -kInf}}));
  EXPECT_THROW(apply_top_k(s, -1), peft::ConfigError);
}

TEST(LogitsProcessors, TopPKeepsTheSmallestSetReachingP) {
  // probs 0.5, 0.3, 0.15, 0.05: from the least probable up the cumulative sums are 0.05, 0.2,
  // 0.5, 1; tokens with cumulative <= 1 - top_p go.
  const auto s = log_probs({0.5f, 0.3f, 0.15f, 0.05f});
  expect_scores(apply_top_p(s, 0.8), without(s, {2, 3}));   // 0.5 + 0.3 reach 0.8 exactly: enough
  expect_scores(apply_top_p(s, 0.81), without(s, {3}));
  expect_scores(apply_top_p(s, 0.5), without(s, {1, 2, 3}));
  expect_scores(apply_top_p(s, 0.49), without(s, {1, 2, 3}));
  expect_scores(apply_top_p(s, 0.95), without(s, {3}));
  expect_scores(apply_top_p(s, 0.96), s);
  expect_scores(apply_top_p(s, 1.0), s);
  // top_p 0 keeps min_tokens_to_keep (1): the most probable.
  expect_scores(apply_top_p(s, 0.0), without(s, {1, 2, 3}));
  EXPECT_THROW(apply_top_p(s, 1.5), peft::ConfigError);
}

TEST(LogitsProcessors, TopPTiesFollowTheStableAscendingSortAsTransformers) {
  // Four equal probabilities: the stable ascending sort puts the lower index first, so the
  // lower indices go first.
  const auto q = log_probs({0.25f, 0.25f, 0.25f, 0.25f});
  expect_scores(apply_top_p(q, 0.5), without(q, {0, 1}));
  expect_scores(apply_top_p(q, 0.6), without(q, {0}));
  expect_scores(apply_top_p(q, 0.0), without(q, {0, 1, 2}));
  // Two tied maxima: min keep 1 keeps the later index only, min keep 2 keeps both.
  const auto t = log_probs({0.2f, 0.4f, 0.4f});
  expect_scores(apply_top_p(t, 0.0), without(t, {0, 1}));
  expect_scores(apply_top_p(t, 0.0, /*min_tokens_to_keep=*/2), without(t, {0}));
  const auto flat = row({1, 1, 1, 1, 1, 1});
  expect_scores(apply_top_p(flat, 0.3), without(flat, {0, 1, 2, 3}));
}

TEST(LogitsProcessors, ProcessLogitsRunsPenaltyThenTemperatureTopKTopP) {
  const auto ids = torch::tensor({{2}}, torch::kLong);
  const auto s = row({4.0f, 3.0f, 8.0f, -1.0f});
  GenerationConfig c;
  c.repetition_penalty = 2.0;  // greedy: only the penalty applies
  expect_scores(process_logits(c, ids, s), row({4.0f, 3.0f, 4.0f, -1.0f}));
  c.do_sample = true;
  c.temperature = 0.5;
  c.top_k = 3;
  c.top_p = 1.0;
  // penalty: [4, 3, 4, -1]; temperature: [8, 6, 8, -2]; top-3 keeps 8, 6, 8.
  expect_scores(process_logits(c, ids, s), row({8.0f, 6.0f, 8.0f, -kInf}));
  c.top_k = 0;
  c.top_p = 0.5;  // softmax of [8, 6, 8, -2]: the two 8s hold 0.94; the later one alone 0.47 < 0.5
  expect_scores(process_logits(c, ids, s), row({8.0f, -kInf, 8.0f, -kInf}));
  c.do_sample = false;  // warpers are for sampling only
  expect_scores(process_logits(c, ids, s), row({4.0f, 3.0f, 4.0f, -1.0f}));
}

TEST(GenerationConfigJson, ReadsTransformersFieldsAndKeepsTheBaseForAbsentOrNull) {
  const auto c = generation_config_from_json_text(
      R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.05,
          "eos_token_id": [128001, 128009], "pad_token_id": null, "bos_token_id": 128000,
          "max_new_tokens": 7, "transformers_version": "4.47.0"})");
  EXPECT_TRUE(c.do_sample);
  EXPECT_DOUBLE_EQ(c.temperature, 0.6);
  EXPECT_DOUBLE_EQ(c.top_p, 0.9);
  EXPECT_EQ(c.top_k, 20);
  EXPECT_DOUBLE_EQ(c.repetition_penalty, 1.05);
  EXPECT_EQ(c.eos_token_id, (std::vector<int64_t>{128001, 128009}));
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.max_new_tokens, 7);
  // Defaults as transformers: greedy, max_length 20, top_k 50.
  const GenerationConfig d;
  EXPECT_FALSE(d.do_sample);
  EXPECT_EQ(d.max_length, 20);
  EXPECT_EQ(d.top_k, 50);
  EXPECT_DOUBLE_EQ(d.top_p, 1.0);
  const auto single = generation_config_from_json_text(R"({"eos_token_id": 2, "top_k": 5.0})");
  EXPECT_EQ(single.eos_token_id, std::vector<int64_t>{2});
  EXPECT_EQ(single.top_k, 5);
}

TEST(GenerationConfigJson, WrongTypesAndInvalidValuesNameTheFieldAndFile) {
  try {
    generation_config_from_json_text(R"({"top_k": "many"})", {}, "dir/generation_config.json");
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "top_k");
    EXPECT_NE(std::string(e.what()).find("dir/generation_config.json: GenerationConfig.top_k = \"many\""), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(generation_config_from_json_text(R"({"eos_token_id": [1, "x"]})"), peft::ConfigError);
  EXPECT_THROW(generation_config_from_json_text("[1]"), peft::ConfigError);
  EXPECT_THROW(generation_config_from_json_text("{"), peft::SerializationError);
  GenerationConfig c;
  c.max_new_tokens = 0;
  EXPECT_THROW(c.validate(), peft::ConfigError);
  c.max_new_tokens = 3;
  c.repetition_penalty = -1;
  EXPECT_THROW(c.validate(), peft::ConfigError);
  c.repetition_penalty = 1;
  c.temperature = 0;
  c.validate();  // greedy ignores the temperature, as transformers
  c.do_sample = true;
  try {
    c.validate();
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.subject(), "GenerationConfig");
    EXPECT_EQ(e.field(), "temperature");
  }
  c.temperature = 1;
  c.top_p = 1.5;
  EXPECT_THROW(c.validate(), peft::ConfigError);
}

TEST(GenerationConfigJson, UnimplementedSettingsWarn) {
  peft::ScopedWarningCapture capture;
  generation_config_from_json_text(R"({"num_beams": 1, "typical_p": 1.0, "no_repeat_ngram_size": 0})");
  EXPECT_TRUE(capture.messages().empty());
  generation_config_from_json_text(R"({"num_beams": 4, "min_p": 0.05})");
  ASSERT_EQ(capture.messages().size(), 2u);
  EXPECT_NE(capture.messages()[0].find("num_beams = 4"), std::string::npos);
}

TEST(GenerationConfigJson, LoadsAModelDirectoryAndTheBuiltins) {
  const auto builtin = load_generation_config("builtin:tiny-gpt2");
  EXPECT_EQ(builtin.eos_token_id, std::vector<int64_t>{256});
  EXPECT_EQ(builtin.bos_token_id, 256);
  EXPECT_FALSE(builtin.pad_token_id.has_value());

  const auto dir = peft_test::scratch_dir("generation_config");
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; };
  EXPECT_EQ(load_generation_config(dir.string()).eos_token_id, std::vector<int64_t>{});  // no files: defaults
  // config.json alone: its generation fields and token ids (transformers 5 / composite models
  // keep the ids in text_config).
  write("config.json", R"({"model_type": "llama", "text_config": {"eos_token_id": 2, "pad_token_id": 0}, "max_length": 30})");
  auto c = load_generation_config(dir.string());
  EXPECT_EQ(c.eos_token_id, std::vector<int64_t>{2});
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.max_length, 30);
  // generation_config.json wins; ids it lacks still come from config.json; config.json's other
  // generation fields do not apply then (transformers reads generation_config.json alone).
  write("generation_config.json", R"({"do_sample": true, "top_p": 0.8, "eos_token_id": [7, 8]})");
  c = load_generation_config(dir.string());
  EXPECT_TRUE(c.do_sample);
  EXPECT_EQ(c.eos_token_id, (std::vector<int64_t>{7, 8}));
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.max_length, 20);
  write("generation_config.json", R"({"top_p": 2.0, "do_sample": true})");
  try {
    load_generation_config(dir.string());
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("generation_config.json: GenerationConfig.top_p"), std::string::npos) << e.what();
  }
}

TEST(Utf8Stream, HoldsBackIncompleteCharactersOnly) {
  using peft::text::utf8_complete_prefix;
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x82"), 1u);           // € missing its last byte
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x82\xAC"), 4u);
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98"), 0u);        // 4-byte emoji, 3 bytes so far
  EXPECT_EQ(utf8_complete_prefix("\x80\x80"), 2u);            // stray continuation bytes pass
  EXPECT_EQ(utf8_complete_prefix("x\xC3"), 1u);
  peft::text::Utf8Stream s;
  std::string out = s.push("h\xC3");
  EXPECT_EQ(out, "h");
  out += s.push("\xA9!\xF0\x9F");
  EXPECT_EQ(out, "h\xC3\xA9!");
  out += s.push("\x98\x80");
  EXPECT_EQ(out, "h\xC3\xA9!\xF0\x9F\x98\x80");
  EXPECT_EQ(s.push("\xE2"), "");
  EXPECT_EQ(s.finish(), "\xE2");
  EXPECT_EQ(peft::text::utf8_sanitize("ok\xE2\x82 \xFF\xC3\xA9"), "ok\xEF\xBF\xBD \xEF\xBF\xBD\xC3\xA9");
  EXPECT_EQ(peft::text::utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}
