// Instruction data of a run (peft/train/instructions.hpp): records -> examples, the padded-batch
// loss, and the held-out exact-match answers that show what the fine-tune changed.

#include "peft/train/instructions.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "peft/error.hpp"
#include "peft/models/generate.hpp"

namespace peft::train {

namespace {

text::Example encode_record(const text::Record& r, const text::Tokenizer& tok, const text::ChatRenderer& render,
                            bool mask_prompt) {
  if (r.format == text::RecordFormat::PromptCompletion)
    return text::encode_prompt_completion(tok, r.prompt, r.completion, mask_prompt, r.where);
  if (!render) throw Error(r.where + ": messages records need a chat template (hint: set data.chat_template)");
  return text::encode_messages(tok, render, r.messages, mask_prompt, r.where);
}

// The prompt a correct model answers and that answer's tokens, encoded exactly as in training.
AnswerPrompt answer_prompt(const text::Record& r, const text::Tokenizer& tok, const text::ChatRenderer& render) {
  AnswerPrompt a;
  if (r.format == text::RecordFormat::PromptCompletion) {
    const text::Example e = text::encode_prompt_completion(tok, r.prompt, r.completion, true, r.where);
    const auto first = std::find_if(e.labels.begin(), e.labels.end(), [](int64_t l) { return l != text::kIgnoreLabel; });
    const auto k = first - e.labels.begin();
    a.prompt.assign(e.ids.begin(), e.ids.begin() + k);
    a.expected.assign(e.ids.begin() + k, e.ids.end());
    a.prompt_text = r.prompt;
    a.expected_text = r.completion;
    return a;
  }
  const auto pieces = text::assistant_pieces(render, r.messages, r.where);
  std::size_t last = pieces.size();
  for (std::size_t i = 0; i < pieces.size(); ++i)
    if (pieces[i].second) last = i;
  if (last == pieces.size()) throw SerializationError(r.where + ": no assistant message to check the answer against");
  for (std::size_t i = 0; i < last; ++i) {
    const auto ids = tok.encode(pieces[i].first, false);
    a.prompt.insert(a.prompt.end(), ids.begin(), ids.end());
  }
  a.expected = tok.encode(pieces[last].first, false);
  for (const auto& m : r.messages) {
    if (m.role == "assistant") a.expected_text = m.content;
    else if (a.expected_text.empty() || m.role == "user") a.prompt_text = m.content;
  }
  return a;
}

}  // namespace

InstructionSet make_instruction_set(const std::vector<text::Record>& records,
                                    const std::vector<text::Record>& heldout_records, const DataConfig& data,
                                    std::shared_ptr<const text::Tokenizer> tokenizer, std::int64_t max_length,
                                    const text::ChatRenderer& render) {
  InstructionSet set;
  if (records.empty()) throw Error("make_instruction_set: no records");
  set.format = records.front().format;
  set.tokenizer = std::move(tokenizer);
  set.pad_id = text::pad_token_id(*set.tokenizer);
  const text::Tokenizer& tok = *set.tokenizer;
  // The held-out records: data.heldout_file's, else the file's tail (as make_blocks does for text).
  const auto n = static_cast<std::int64_t>(records.size());
  const std::int64_t n_held = heldout_records.empty()
                                  ? std::max<std::int64_t>(1, std::llround(static_cast<double>(n) * data.heldout_fraction))
                                  : 0;
  if (n - n_held < 1)
    throw Error(std::to_string(n) + " record(s) leave no training record after " + std::to_string(n_held) +
                " held-out (hint: more records, a smaller data.heldout_fraction or a data.heldout_file)");
  const bool mask = set.format == text::RecordFormat::PromptCompletion ? data.completion_only_loss : data.assistant_only_loss;
  auto encode = [&](const text::Record& r) {
    text::Example e = encode_record(r, tok, render, mask);
    if (static_cast<std::int64_t>(e.ids.size()) > max_length) {
      ++set.truncated;
      text::truncate(e, max_length);
    }
    if (!text::has_targets(e))
      throw SerializationError(r.where + ": nothing to train on in the first " + std::to_string(max_length) +
                               " tokens (hint: raise data.max_length or shorten the prompt)");
    set.tokens += static_cast<std::int64_t>(e.ids.size());
    return e;
  };
  std::vector<text::Example> train;
  for (std::int64_t i = 0; i < n - n_held; ++i) train.push_back(encode(records[static_cast<std::size_t>(i)]));
  set.train_records = train.size();
  std::vector<const text::Record*> held;
  for (std::int64_t i = n - n_held; i < n; ++i) held.push_back(&records[static_cast<std::size_t>(i)]);
  for (const auto& r : heldout_records) held.push_back(&r);
  for (const text::Record* r : held) {
    if (r->format != set.format)
      throw SerializationError(r->where + ": a " + text::record_format_name(r->format) + " record, but data.file holds " +
                               text::record_format_name(set.format) + " records");
    set.heldout.push_back(encode(*r));
    set.answers.push_back(answer_prompt(*r, tok, render));
  }
  set.train = data.packing ? text::pack_examples(train, max_length) : std::move(train);
  return set;
}

torch::Tensor labeled_batch_loss(models::CausalLMImpl& model, const torch::Tensor& stacked) {
  const text::LabeledBatch b = text::LabeledBatch::unstack(stacked);
  models::ForwardArgs args;
  args.attention_mask = b.attention_mask;
  return models::causal_lm_loss(model, b.input_ids, b.labels, args);
}

double instruction_heldout_loss(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                                std::int64_t max_examples, torch::Device device) {
  return instruction_heldout_loss_sum(model, set, batch, max_examples, device, Shard{}).mean();
}

LossSum instruction_heldout_loss_sum(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                                     std::int64_t max_examples, torch::Device device, const Shard& shard) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  auto n = static_cast<std::int64_t>(set.heldout.size());
  if (max_examples > 0) n = std::min(n, max_examples);
  // Chunks hold different numbers of targets: weight each chunk's mean by its target count.
  LossSum sum;
  for (std::int64_t i = 0, chunk = 0; i < n; i += batch, ++chunk) {
    if (!shard.owns(chunk)) continue;
    std::vector<const text::Example*> rows;
    for (std::int64_t j = i; j < std::min(n, i + batch); ++j) rows.push_back(&set.heldout[static_cast<std::size_t>(j)]);
    const text::LabeledBatch b = text::collate(rows, set.pad_id);
    const std::int64_t count = b.labels.slice(1, 1).ne(text::kIgnoreLabel).sum().item<std::int64_t>();
    sum.total += labeled_batch_loss(model, b.stacked().to(device)).item<double>() * static_cast<double>(count);
    sum.weight += static_cast<double>(count);
  }
  if (was_training) model.train();
  return sum;
}

AnswerCheck check_answers(models::CausalLMImpl& model, const InstructionSet& set, std::int64_t batch,
                          std::int64_t max_prompts) {
  const bool was_training = model.is_training();
  model.eval();
  const text::Tokenizer& tok = *set.tokenizer;
  const auto eos = tok.eos_id();
  AnswerCheck check;
  auto n = static_cast<std::int64_t>(set.answers.size());
  if (max_prompts > 0) n = std::min(n, max_prompts);
  for (std::int64_t i = 0; i < n; i += batch) {
    const std::int64_t rows = std::min(n, i + batch) - i;
    std::size_t len = 0, new_tokens = 1;
    for (std::int64_t r = 0; r < rows; ++r) {
      const AnswerPrompt& a = set.answers[static_cast<std::size_t>(i + r)];
      len = std::max(len, a.prompt.size());
      new_tokens = std::max(new_tokens, a.expected.size());
    }
    // Left padding: generation continues every row from its last column.
    const auto L = static_cast<std::int64_t>(len);
    auto ids = torch::full({rows, L}, set.pad_id, torch::kInt64);
    auto mask = torch::zeros({rows, L}, torch::kInt64);
    for (std::int64_t r = 0; r < rows; ++r) {
      const auto& p = set.answers[static_cast<std::size_t>(i + r)].prompt;
      const auto off = L - static_cast<std::int64_t>(p.size());
      if (!p.empty()) ids.slice(1, off, L)[r].copy_(torch::tensor(p, torch::kInt64));
      mask.slice(1, off, L)[r].fill_(1);
    }
    models::GenerationConfig g;
    g.max_new_tokens = static_cast<std::int64_t>(new_tokens);
    if (eos) g.eos_token_id = {*eos};
    g.pad_token_id = set.pad_id;
    const torch::Tensor out = models::generate(model, ids, g, mask).cpu();
    for (std::int64_t r = 0; r < rows; ++r) {
      const AnswerPrompt& a = set.answers[static_cast<std::size_t>(i + r)];
      std::vector<int64_t> gen;
      for (std::int64_t t = L; t < out.size(1) && gen.size() < a.expected.size(); ++t) gen.push_back(out[r][t].item<int64_t>());
      check.right.push_back(gen == a.expected ? 1 : 0);
      check.correct += check.right.back();
      if (eos) gen.erase(std::find(gen.begin(), gen.end(), *eos), gen.end());
      std::string text = tok.decode(gen, true);
      // Show the answer without the end-of-turn text a chat template writes after the content.
      const std::string expected = tok.decode(a.expected, true);
      if (expected.size() > a.expected_text.size() && expected.compare(0, a.expected_text.size(), a.expected_text) == 0) {
        std::string marker = expected.substr(a.expected_text.size());
        while (!marker.empty() && std::isspace(static_cast<unsigned char>(marker.back()))) marker.pop_back();
        const std::size_t cut = marker.empty() ? std::string::npos : text.find(marker);
        if (cut != std::string::npos) text.resize(cut);
      }
      check.answers.push_back(std::move(text));
    }
  }
  check.total = n;
  if (was_training) model.train();
  return check;
}

}  // namespace peft::train
