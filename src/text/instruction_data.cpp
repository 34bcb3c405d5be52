// Records -> ids + labels -> batches (peft/text/instruction_data.hpp). The label masks follow
// TRL's SFTTrainer: completion_only_loss masks the prompt; assistant_only_loss keeps what the
// assistant turns render to, as transformers' {% generation %} spans do.

#include "peft/text/instruction_data.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "peft/error.hpp"
#include "peft/warnings.hpp"

namespace peft::text {
namespace {

void append(Example& e, const std::vector<int64_t>& ids, bool trained) {
  e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  for (int64_t id : ids) e.labels.push_back(trained ? id : kIgnoreLabel);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

[[noreturn]] void not_incremental(const std::string& where, std::size_t turn, const std::string& what) {
  throw ConfigError::about("chat_template", "messages[" + std::to_string(turn) + "]", where,
                           "the template does not render incrementally: " + what,
                           "assistant_only_loss needs a template whose rendering of messages[:i] with "
                           "add_generation_prompt is a prefix of messages[:i+1]; set data.assistant_only_loss: false");
}

}  // namespace

Example encode_prompt_completion(const Tokenizer& tokenizer, const std::string& prompt, const std::string& completion,
                                 bool completion_only_loss, const std::string& where) {
  const auto prompt_ids = tokenizer.encode(prompt, true);
  auto full = tokenizer.encode(prompt + completion, true);
  Example e;
  if (full.size() >= prompt_ids.size() && std::equal(prompt_ids.begin(), prompt_ids.end(), full.begin())) {
    append(e, prompt_ids, !completion_only_loss);
    append(e, std::vector<int64_t>(full.begin() + static_cast<std::ptrdiff_t>(prompt_ids.size()), full.end()), true);
  } else {
    // TRL warns and keeps the whole tokenization; encoding the parts apart keeps the mask exact.
    warn((where.empty() ? std::string() : where + ": ") +
         "the prompt's tokens are not a prefix of the prompt+completion tokens (a merge across the boundary); "
         "encoding prompt and completion separately");
    append(e, prompt_ids, !completion_only_loss);
    append(e, tokenizer.encode(completion, false), true);
  }
  const auto eos = tokenizer.eos_id();
  if (eos && (e.ids.empty() || e.ids.back() != *eos)) append(e, {*eos}, true);
  return e;
}

std::vector<std::pair<std::string, bool>> assistant_pieces(const ChatRenderer& render,
                                                           const std::vector<ChatMessage>& messages,
                                                           const std::string& where) {
  const std::string full = render(messages, false);
  std::vector<std::pair<std::string, bool>> pieces;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::vector<ChatMessage> head(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
    const std::vector<ChatMessage> with_turn(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i + 1));
    const std::string before = render(head, true), after = render(with_turn, false);
    if (!starts_with(after, before))
      not_incremental(where, i, "messages[:" + std::to_string(i) + "] with the generation prompt is not a prefix of messages[:" +
                                    std::to_string(i + 1) + "]");
    if (!starts_with(full, after) || before.size() < pos)
      not_incremental(where, i, "messages[:" + std::to_string(i + 1) + "] is not a prefix of the whole conversation");
    if (before.size() > pos) pieces.emplace_back(full.substr(pos, before.size() - pos), false);
    pieces.emplace_back(full.substr(before.size(), after.size() - before.size()), true);
    pos = after.size();
  }
  if (pos < full.size()) pieces.emplace_back(full.substr(pos), false);
  return pieces;
}

Example encode_messages(const Tokenizer& tokenizer, const ChatRenderer& render, const std::vector<ChatMessage>& messages,
                        bool assistant_only_loss, const std::string& where) {
  Example e;
  if (!assistant_only_loss) {
    append(e, tokenizer.encode(render(messages, false), false), true);
    return e;
  }
  bool any = false;
  for (const auto& [text, assistant] : assistant_pieces(render, messages, where)) {
    append(e, tokenizer.encode(text, false), assistant);
    any = any || (assistant && !text.empty());
  }
  if (!any)
    throw SerializationError(where + ": no assistant message: nothing to train on with assistant_only_loss "
                                     "(hint: set data.assistant_only_loss: false to train on the whole conversation)");
  return e;
}

void truncate(Example& example, int64_t max_length) {
  if (max_length < 1) throw Error("truncate: max_length = " + std::to_string(max_length) + " must be >= 1");
  if (static_cast<int64_t>(example.ids.size()) <= max_length) return;
  example.ids.resize(static_cast<std::size_t>(max_length));
  example.labels.resize(static_cast<std::size_t>(max_length));
}

bool has_targets(const Example& example) {
  return std::any_of(example.labels.begin() + std::min<std::ptrdiff_t>(1, static_cast<std::ptrdiff_t>(example.labels.size())),
                     example.labels.end(), [](int64_t l) { return l != kIgnoreLabel; });
}

int64_t pad_token_id(const Tokenizer& tokenizer) {
  const SpecialTokenIds s = tokenizer.special_token_ids();
  return s.pad ? *s.pad : s.eos ? *s.eos : 0;
}

torch::Tensor LabeledBatch::stacked() const { return torch::stack({input_ids, labels, attention_mask}, 1); }

LabeledBatch LabeledBatch::unstack(const torch::Tensor& stacked) {
  if (stacked.dim() != 3 || stacked.size(1) != 3) throw Error("LabeledBatch::unstack: expected a [B, 3, L] tensor");
  return {stacked.select(1, 0), stacked.select(1, 1), stacked.select(1, 2)};
}

LabeledBatch collate(const std::vector<const Example*>& examples, int64_t pad_id) {
  if (examples.empty()) throw Error("collate: no examples");
  std::size_t len = 0;
  for (const Example* e : examples) {
    if (e->ids.empty() || e->ids.size() != e->labels.size())
      throw Error("collate: an example is empty or its ids and labels differ in length");
    len = std::max(len, e->ids.size());
  }
  const auto B = static_cast<int64_t>(examples.size()), L = static_cast<int64_t>(len);
  LabeledBatch b{torch::full({B, L}, pad_id, torch::kInt64), torch::full({B, L}, kIgnoreLabel, torch::kInt64),
                 torch::zeros({B, L}, torch::kInt64)};
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto labels = b.labels.accessor<int64_t, 2>();
  auto mask = b.attention_mask.accessor<int64_t, 2>();
  for (int64_t r = 0; r < B; ++r) {
    const Example& e = *examples[static_cast<std::size_t>(r)];
    for (std::size_t t = 0; t < e.ids.size(); ++t) {
      const auto c = static_cast<int64_t>(t);
      ids[r][c] = e.ids[t];
      labels[r][c] = e.labels[t];
      mask[r][c] = 1;
    }
  }
  return b;
}

std::vector<Example> pack_examples(const std::vector<Example>& examples, int64_t block_len) {
  if (block_len < 2) throw Error("pack_examples: block_len = " + std::to_string(block_len) + " must be >= 2");
  std::vector<Example> blocks;
  Example cur;
  for (const Example& e : examples)
    for (std::size_t t = 0; t < e.ids.size(); ++t) {
      cur.ids.push_back(e.ids[t]);
      cur.labels.push_back(e.labels[t]);
      if (static_cast<int64_t>(cur.ids.size()) == block_len) {
        blocks.push_back(std::move(cur));
        cur = Example{};
      }
    }
  if (!cur.ids.empty()) blocks.push_back(std::move(cur));
  return blocks;
}

}  // namespace peft::text
