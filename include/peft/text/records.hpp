#pragma once
/// Training records of a JSONL file in TRL's dataset formats (torch-free):
///   text               {"text": "..."}                      (the field is data.jsonl_field)
///   prompt_completion  {"prompt": "...", "completion": "..."}
///   messages           {"messages": [{"role": "user", "content": "..."}, ...]}
/// A file holds one format: the first record's keys decide it (messages > prompt+completion >
/// the text field) unless the caller forces one; other keys of a record are ignored.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "peft/text/chat_template.hpp"

namespace peft::text {

enum class RecordFormat { Auto, Text, PromptCompletion, Messages };

/// "auto", "text", "prompt_completion", "messages".
std::string record_format_name(RecordFormat format);
/// The inverse of record_format_name; nullopt for any other string.
std::optional<RecordFormat> parse_record_format(const std::string& name);

/// One record; only the members of its format are filled.
struct Record {
  RecordFormat format = RecordFormat::Text;
  std::string text;
  std::string prompt, completion;
  std::vector<ChatMessage> messages;
  std::string where;  ///< "file:line", for errors about the record later on
};

/// The records of a .jsonl / .ndjson file (blank lines skipped), all of one format: `format`, or
/// with RecordFormat::Auto the first record's. Throws peft::SerializationError naming `file:line`
/// and the field for: malformed JSON, a record of another format than the file's, a missing or
/// non-string field, an empty completion, messages that are not a non-empty list of
/// {"role": string, "content": string} objects (naming messages[i].role / .content), and a
/// file with no record. Empty texts are kept (the caller decides).
std::vector<Record> load_records(const std::filesystem::path& file, RecordFormat format = RecordFormat::Auto,
                                 const std::string& text_field = "text");

}  // namespace peft::text
