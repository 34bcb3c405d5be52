// Instruction records (text/records.hpp) and their tokens, labels and batches
// (text/instruction_data.hpp), on the ByteTokenizer: ids are bytes (a=97, b=98, ...) and 256 is
// <|endoftext|> (EOS), so every expected id and label below is worked out by hand.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "peft/error.hpp"
#include "peft/text/instruction_data.hpp"
#include "peft/warnings.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace peft::text;

namespace {

constexpr int64_t X = kIgnoreLabel;
constexpr int64_t kEos = ByteTokenizer::kEndOfText;

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = peft_test::scratch_dir("instruction_data") / name;
  std::ofstream(p) << text;
  return p;
}

/// The message of load_records' error for a file holding `text`, or "" when it loads.
std::string load_error(const std::string& text, RecordFormat format = RecordFormat::Auto) {
  const fs::path p = write_file("bad.jsonl", text);
  try {
    load_records(p, format);
  } catch (const peft::SerializationError& e) {
    return e.what();
  }
  return "";
}

/// A tiny chat template written by hand: each message is "<first letter of role>:content\n", the
/// generation prompt "a:". It renders incrementally.
std::string tiny_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string s;
  for (const auto& m : messages) s += m.role.substr(0, 1) + ":" + m.content + "\n";
  return add_generation_prompt ? s + "a:" : s;
}

const std::vector<ChatMessage> kTwoTurns = {{"user", "hi"}, {"assistant", "yo"}, {"user", "ok?"}, {"assistant", "no"}};

std::vector<int64_t> bytes(const std::string& s) { return std::vector<int64_t>(s.begin(), s.end()); }

std::vector<int64_t> masked(std::size_t n) { return std::vector<int64_t>(n, X); }

std::vector<int64_t> cat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<int64_t> row(const torch::Tensor& t, int64_t r) {
  const auto c = t[r].contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(InstructionRecords, FormatIsDetectedFromTheFirstRecordsKeys) {
  const auto pc = load_records(write_file("pc.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\", \"id\": 1}\n\n"
                                                      "{\"prompt\": \"c\", \"completion\": \"d\"}\n"));
  ASSERT_EQ(pc.size(), 2u);
  EXPECT_EQ(pc[0].format, RecordFormat::PromptCompletion);
  EXPECT_EQ(pc[1].prompt, "c");
  EXPECT_EQ(pc[1].completion, "d");
  EXPECT_EQ(pc[1].where, (peft_test::scratch_dir("instruction_data") / "pc.jsonl").string() + ":3");

  const auto msg = load_records(write_file("m.jsonl", R"({"messages": [{"role": "user", "content": "hi"}]})"));
  EXPECT_EQ(msg[0].format, RecordFormat::Messages);
  ASSERT_EQ(msg[0].messages.size(), 1u);
  EXPECT_EQ(msg[0].messages[0].role, "user");
  EXPECT_EQ(msg[0].messages[0].content, "hi");

  const auto text = load_records(write_file("t.jsonl", R"({"body": "x"})"), RecordFormat::Auto, "body");
  EXPECT_EQ(text[0].format, RecordFormat::Text);
  EXPECT_EQ(text[0].text, "x");
}

TEST(InstructionRecords, MalformedRecordsNameFileLineAndField) {
  const std::string first = "{\"prompt\": \"a\", \"completion\": \"b\"}\n";
  EXPECT_NE(load_error(first + "{\"prompt\": \"a\"}\n").find("bad.jsonl:2: field \"completion\" missing"), std::string::npos);
  EXPECT_NE(load_error(first + "{\"prompt\": 3, \"completion\": \"b\"}\n").find("bad.jsonl:2: field \"prompt\" is not a string"),
            std::string::npos);
  EXPECT_NE(load_error(first + "{\"text\": \"x\"}\n").find("bad.jsonl:2: a text record in a prompt_completion file (first record"),
            std::string::npos);
  EXPECT_NE(load_error(first + "{\"prompt\": \"a\", \"completion\": \"\"}\n").find("bad.jsonl:2: field \"completion\" is empty"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"messages": [{"role": "user"}]})").find("bad.jsonl:1: messages[0].content missing"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"messages": [{"role": 1, "content": "x"}]})").find("bad.jsonl:1: messages[0].role is not a string"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"messages": []})").find("bad.jsonl:1: field \"messages\" must be a non-empty list"),
            std::string::npos);
  EXPECT_NE(load_error("{\"question\": \"x\"}").find("bad.jsonl:1: cannot tell the record's format"), std::string::npos);
  EXPECT_NE(load_error(first, RecordFormat::Messages).find("bad.jsonl:1: a prompt_completion record in a messages file"),
            std::string::npos);
  EXPECT_NE(load_error("{\"prompt\": \"a\",").find("bad.jsonl:1: malformed JSON"), std::string::npos);
  EXPECT_EQ(load_error(first), "");
}

TEST(InstructionData, PromptCompletionMasksThePromptAndEndsWithEos) {
  const ByteTokenizer tok;
  const Example e = encode_prompt_completion(tok, "ab", "c", true);
  EXPECT_EQ(e.ids, (std::vector<int64_t>{97, 98, 99, kEos}));
  EXPECT_EQ(e.labels, (std::vector<int64_t>{X, X, 99, kEos}));
  const Example all = encode_prompt_completion(tok, "ab", "c", false);
  EXPECT_EQ(all.labels, all.ids);
  // A completion that already ends with EOS gets no second one.
  EXPECT_EQ(encode_prompt_completion(tok, "a", "b<|endoftext|>", true).ids, (std::vector<int64_t>{97, 98, kEos}));
}

TEST(InstructionData, PromptWhoseTokensAreNotAPrefixIsEncodedApartWithAWarning) {
  // "<|endoftext" + "|>" is one token (256) as a whole, eleven bytes as the prompt alone.
  const ByteTokenizer tok;
  peft::ScopedWarningCapture warnings;
  const Example e = encode_prompt_completion(tok, "<|endoftext", "|>", true, "f.jsonl:4");
  EXPECT_EQ(e.ids, cat({bytes("<|endoftext|>"), {kEos}}));
  EXPECT_EQ(e.labels, cat({masked(11), bytes("|>"), {kEos}}));
  ASSERT_EQ(warnings.messages().size(), 1u);
  EXPECT_NE(warnings.messages()[0].find("f.jsonl:4: the prompt's tokens are not a prefix"), std::string::npos);
}

TEST(InstructionData, AssistantOnlyLossKeepsTheAssistantTurnsOfATwoTurnConversation) {
  const ByteTokenizer tok;
  // "u:hi\na:" "yo\n" "u:ok?\na:" "no\n": the assistant pieces are content + the template's "\n".
  const auto pieces = assistant_pieces(tiny_template, kTwoTurns);
  ASSERT_EQ(pieces.size(), 4u);
  EXPECT_EQ(pieces[0], (std::pair<std::string, bool>{"u:hi\na:", false}));
  EXPECT_EQ(pieces[1], (std::pair<std::string, bool>{"yo\n", true}));
  EXPECT_EQ(pieces[2], (std::pair<std::string, bool>{"u:ok?\na:", false}));
  EXPECT_EQ(pieces[3], (std::pair<std::string, bool>{"no\n", true}));
  const Example e = encode_messages(tok, tiny_template, kTwoTurns, true);
  EXPECT_EQ(e.ids, bytes("u:hi\na:yo\nu:ok?\na:no\n"));
  EXPECT_EQ(e.labels, cat({masked(7), bytes("yo\n"), masked(8), bytes("no\n")}));
  const Example all = encode_messages(tok, tiny_template, kTwoTurns, false);
  EXPECT_EQ(all.ids, e.ids);
  EXPECT_EQ(all.labels, all.ids);
}

TEST(InstructionData, TemplateThatDoesNotRenderIncrementallyIsAnError) {
  // Writes the number of messages at the end: messages[:1] is no prefix of messages[:2].
  const ChatRenderer counting = [](const std::vector<ChatMessage>& m, bool gen) {
    return tiny_template(m, gen) + std::to_string(m.size());
  };
  try {
    encode_messages(ByteTokenizer(), counting, kTwoTurns, true, "chat.jsonl:3");
    FAIL() << "no error";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("chat.jsonl:3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not render incrementally"), std::string::npos) << e.what();
  }
  // Training on every token needs no spans.
  EXPECT_NO_THROW(encode_messages(ByteTokenizer(), counting, kTwoTurns, false));
}

TEST(InstructionData, ConversationWithoutAssistantTurnHasNothingToTrainOn) {
  const std::vector<ChatMessage> user_only = {{"user", "hi"}};
  try {
    encode_messages(ByteTokenizer(), tiny_template, user_only, true, "chat.jsonl:9");
    FAIL() << "no error";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("chat.jsonl:9: no assistant message"), std::string::npos) << e.what();
  }
}

TEST(InstructionData, TruncationKeepsTheFirstTokensAndHasTargetsIgnoresPositionZero) {
  Example e = encode_prompt_completion(ByteTokenizer(), "abc", "d", true);
  truncate(e, 3);
  EXPECT_EQ(e.ids, bytes("abc"));
  EXPECT_EQ(e.labels, masked(3));
  EXPECT_FALSE(has_targets(e));
  EXPECT_FALSE(has_targets(Example{{5}, {5}}));  // nothing predicts the first token
  EXPECT_TRUE(has_targets(Example{{5, 6}, {X, 6}}));
}

TEST(InstructionData, CollateRightPadsWithIgnoredLabelsAndAZeroMask) {
  const Example a{{1, 2, 3}, {X, 2, 3}}, b{{4}, {4}};
  const LabeledBatch batch = collate({&a, &b}, 9);
  EXPECT_EQ(batch.input_ids.sizes(), (torch::IntArrayRef{2, 3}));
  EXPECT_EQ(row(batch.input_ids, 0), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(row(batch.input_ids, 1), (std::vector<int64_t>{4, 9, 9}));
  EXPECT_EQ(row(batch.labels, 1), (std::vector<int64_t>{4, X, X}));
  EXPECT_EQ(row(batch.attention_mask, 0), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(row(batch.attention_mask, 1), (std::vector<int64_t>{1, 0, 0}));
  const LabeledBatch back = LabeledBatch::unstack(batch.stacked());
  EXPECT_TRUE(torch::equal(back.labels, batch.labels));
  EXPECT_TRUE(torch::equal(back.attention_mask, batch.attention_mask));
  EXPECT_THROW(collate({}, 0), peft::Error);
}

TEST(InstructionData, PadIdIsThePadTokenElseEosElseZero) {
  EXPECT_EQ(pad_token_id(ByteTokenizer()), kEos);
}

TEST(InstructionData, PackingConcatenatesExamplesWithTheirLabelsIntoBlocks) {
  const std::vector<Example> ex = {{{1, 2, 3}, {X, 2, 3}}, {{4, 5}, {X, 5}}};
  const auto blocks = pack_examples(ex, 2);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(blocks[0].labels, (std::vector<int64_t>{X, 2}));
  EXPECT_EQ(blocks[1].ids, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(blocks[1].labels, (std::vector<int64_t>{3, X}));
  EXPECT_EQ(blocks[2].ids, (std::vector<int64_t>{5}));
  EXPECT_EQ(blocks[2].labels, (std::vector<int64_t>{5}));
  EXPECT_THROW(pack_examples(ex, 1), peft::Error);
}

TEST(InstructionData, ChatMlTemplateMarksContentAndEndOfTurnOfEachAssistantTurn) {
  const ChatTemplate chatml(
      "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}");
  const ChatRenderer render = [&](const std::vector<ChatMessage>& m, bool gen) { return chatml.apply_chat_template(m, gen); };
  const std::string user1 = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
  const std::string user2 = "<|im_start|>user\nok?<|im_end|>\n<|im_start|>assistant\n";
  const Example e = encode_messages(ByteTokenizer(), render, kTwoTurns, true);
  EXPECT_EQ(e.ids, bytes(user1 + "yo<|im_end|>\n" + user2 + "no<|im_end|>\n"));
  EXPECT_EQ(e.labels, cat({masked(user1.size()), bytes("yo<|im_end|>\n"), masked(user2.size()), bytes("no<|im_end|>\n")}));
}
