// The phases of an instruction fine-tune (peft/train/phases.hpp): records -> InstructionSet with
// the run's settings, and the held-out answers printed before and after LoRA. Their lines are
// peft-finetune's output, which tests/finetune_cli.sh and README quote: keep them stable.

#include <iomanip>
#include <memory>
#include <sstream>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/train/phases.hpp"

namespace peft::train {

namespace {

// One line of display: quotes, newlines and control bytes escaped, long texts cut.
std::string shown(const std::string& s, std::size_t max = 40) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const char c = s[i];
    if (c == '\n') out += "\\n";
    else if (c == '"') out += "\\\"";
    else if (static_cast<unsigned char>(c) < 0x20) out += '?';
    else out += c;
  }
  return out + (s.size() > max ? "...\"" : "\"");
}

std::string percent(const AnswerCheck& a) {
  std::ostringstream s;
  s << a.correct << "/" << a.total << " (" << std::fixed << std::setprecision(1) << 100.0 * a.exact_match() << "%)";
  return s.str();
}

// data.chat_template (with the tokenizer's special tokens as variables), else the model's own.
text::ChatTemplate chat_template(const TrainingRun& run, const text::Tokenizer& tok) {
  const DataConfig& d = run.config.data;
  if (!d.chat_template.empty()) {
    text::ChatTemplate t(read_text_file(d.chat_template, 1u << 20), d.chat_template.string());
    const text::SpecialTokenIds ids = tok.special_token_ids();
    if (ids.bos) t.set_variable("bos_token", tok.decode({*ids.bos}));
    if (ids.eos) t.set_variable("eos_token", tok.decode({*ids.eos}));
    return t;
  }
  const bool builtin = run.config.base_model.rfind("builtin:", 0) == 0;
  if (!builtin)
    if (auto t = text::load_chat_template(run.config.base_model)) return std::move(*t);
  throw TrainConfigError(run.config_name, "data.chat_template", "",
                         "messages records need a chat template and " + run.config.base_model + " has none",
                         "data.chat_template: a Jinja file, e.g. data/instructions/chatml.jinja");
}

}  // namespace

TokenData prepare_instruction_data(const TrainingRun& run, const BaseModel& base, const std::vector<text::Record>& records) {
  const TrainConfig& cfg = run.config;
  const std::int64_t max_length = cfg.data.max_length > 0 ? cfg.data.max_length : cfg.training.seq_len;
  if (max_length > base.model->max_positions())
    throw TrainConfigError(run.config_name, "data.max_length", std::to_string(max_length),
                           "longer than the model's " + std::to_string(base.model->max_positions()) + " positions",
                           "at most " + std::to_string(base.model->max_positions()));
  const text::RecordFormat format = records.front().format;
  text::ChatRenderer render;
  if (format == text::RecordFormat::Messages) {
    const auto tpl = std::make_shared<const text::ChatTemplate>(chat_template(run, *base.tokenizer));
    render = [tpl](const std::vector<text::ChatMessage>& m, bool add_generation_prompt) {
      return tpl->apply_chat_template(m, add_generation_prompt);
    };
  }
  std::vector<text::Record> heldout;
  if (!cfg.data.heldout_file.empty()) heldout = text::load_records(cfg.data.heldout_file, format, cfg.data.jsonl_field);
  TokenData d;
  const std::uint64_t dropped_before = base.tokenizer->dropped_characters();
  d.instructions = make_instruction_set(records, heldout, cfg.data, base.tokenizer, max_length, render);
  check_nothing_dropped(*base.tokenizer, dropped_before, cfg.data.file);
  const InstructionSet& set = *d.instructions;
  if (base.tokenizer->vocab_size() > base.model->vocab_size())
    throw Error("the tokenizer has " + std::to_string(base.tokenizer->vocab_size()) + " ids but the model only " +
                std::to_string(base.model->vocab_size()) + " embeddings (hint: use the tokenizer that belongs to the model)");
  d.documents = records.size() + heldout.size();
  d.tokens = set.tokens;
  const bool masked = format == text::RecordFormat::PromptCompletion ? cfg.data.completion_only_loss
                                                                    : cfg.data.assistant_only_loss;
  if (run.out) {
    *run.out << "data: " << cfg.data.file.string() << " (" << d.documents << " " << text::record_format_name(format)
             << " records, " << d.tokens << " tokens, " << base.tokenizer->kind() << " tokenizer) -> "
             << set.train_records << " train / " << set.heldout.size() << " held-out records";
    if (cfg.data.packing) *run.out << ", packed into " << set.train.size() << " blocks of " << max_length;
    else *run.out << ", padded per batch";
    *run.out << "; loss on "
             << (masked ? format == text::RecordFormat::PromptCompletion ? "completions only" : "assistant turns only"
                        : "every token");
    if (set.truncated) *run.out << "; " << set.truncated << " truncated to " << max_length << " tokens";
    *run.out << "\n";
  }
  return d;
}

std::optional<AnswerCheck> check_heldout_answers(const TrainingRun& run, models::CausalLMImpl& model,
                                                 const TokenData& data) {
  if (!data.instructions || run.rank() != 0) return std::nullopt;  // rank 0 answers for a data-parallel run
  return check_answers(model, *data.instructions, run.config.training.batch_size);
}

void print_answers(const TrainingRun& run, const TokenData& data, const AnswerCheck& before, const AnswerCheck& after,
                   std::size_t shown_prompts) {
  if (!run.out || !data.instructions) return;
  std::ostream& os = *run.out;
  const auto& answers = data.instructions->answers;
  os << "answers: greedy answers to held-out prompts, before -> after LoRA\n";
  for (std::size_t i = 0; i < shown_prompts && i < answers.size() && i < after.answers.size(); ++i)
    os << "  " << shown(answers[i].prompt_text) << " (expected " << shown(answers[i].expected_text) << "): "
       << shown(before.answers[i]) << " -> " << shown(after.answers[i]) << "\n";
  os << "answers: exact match on " << after.total << " held-out prompts: " << percent(before) << " -> "
     << percent(after) << "\n";
}

std::filesystem::path write_answers(const TrainingRun& run, const TokenData& data, const AnswerCheck& before,
                                    const AnswerCheck& after) {
  const std::filesystem::path path = run.output_dir / "answers.jsonl";
  std::string lines;
  const auto& answers = data.instructions->answers;
  for (std::size_t i = 0; i < answers.size() && i < before.answers.size() && i < after.answers.size(); ++i) {
    JsonValue line = JsonValue::object();
    line.set("prompt", answers[i].prompt_text);
    line.set("expected", answers[i].expected_text);
    line.set("before", before.answers[i]);
    line.set("after", after.answers[i]);
    line.set("before_correct", static_cast<bool>(before.right[i]));
    line.set("after_correct", static_cast<bool>(after.right[i]));
    lines += line.dump() + "\n";
  }
  write_file_atomically(path, lines);
  return path;
}

}  // namespace peft::train
