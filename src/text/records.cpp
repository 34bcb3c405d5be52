// JSONL records in TRL's formats (peft/text/records.hpp). Every error names file:line and the
// field, because a data file with one bad line among thousands is the usual case.

#include "peft/text/records.hpp"

#include <limits>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/text/detail/jsonl.hpp"

namespace peft::text {
namespace {

// The format a record's keys say, or Auto when they name none.
RecordFormat detect(const JsonValue& v, const std::string& text_field) {
  if (v.find("messages")) return RecordFormat::Messages;
  if (v.find("prompt") || v.find("completion")) return RecordFormat::PromptCompletion;
  if (v.find(text_field)) return RecordFormat::Text;
  return RecordFormat::Auto;
}

std::string fields_of(const JsonValue& v) {
  std::string keys;
  for (const auto& kv : v.as_object()) keys += (keys.empty() ? "" : ", ") + kv.first;
  return keys.empty() ? "none" : keys;
}

const std::string& string_field(const JsonValue& v, const std::string& key, const std::string& where,
                                const std::string& format) {
  const JsonValue* f = v.find(key);
  if (!f)
    throw SerializationError(where + ": field \"" + key + "\" missing from a " + format + " record (fields: " +
                             fields_of(v) + ")");
  if (!f->is_string()) throw SerializationError(where + ": field \"" + key + "\" is not a string");
  return f->as_string();
}

std::vector<ChatMessage> messages_of(const JsonValue& v, const std::string& where) {
  const JsonValue* m = v.find("messages");
  if (!m->is_array() || m->as_array().empty())
    throw SerializationError(where + ": field \"messages\" must be a non-empty list of {\"role\", \"content\"} objects");
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < m->as_array().size(); ++i) {
    const JsonValue& msg = m->as_array()[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw SerializationError(where + ": " + name + " is not an object");
    ChatMessage c;
    for (const char* key : {"role", "content"}) {
      const JsonValue* f = msg.find(key);
      if (!f || !f->is_string())
        throw SerializationError(where + ": " + name + "." + key + (f ? " is not a string" : " missing"));
      (std::string(key) == "role" ? c.role : c.content) = f->as_string();
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

std::string record_format_name(RecordFormat format) {
  switch (format) {
    case RecordFormat::Auto: return "auto";
    case RecordFormat::Text: return "text";
    case RecordFormat::PromptCompletion: return "prompt_completion";
    case RecordFormat::Messages: return "messages";
  }
  return "auto";
}

std::optional<RecordFormat> parse_record_format(const std::string& name) {
  for (auto f : {RecordFormat::Auto, RecordFormat::Text, RecordFormat::PromptCompletion, RecordFormat::Messages})
    if (record_format_name(f) == name) return f;
  return std::nullopt;
}

std::vector<Record> load_records(const std::filesystem::path& file, RecordFormat format, const std::string& text_field) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw SerializationError(file.string() + ": is a directory, expected a .jsonl file");
  const std::string text = read_text_file(file, std::numeric_limits<std::size_t>::max());
  std::vector<Record> records;
  std::string first_where;  // where the file's format was decided (auto)
  detail::for_each_jsonl_object(text, file.string(), [&](const JsonValue& v, const std::string& where) {
    const RecordFormat found = detect(v, text_field);
    if (format == RecordFormat::Auto) {
      if (found == RecordFormat::Auto)
        throw SerializationError(where + ": cannot tell the record's format from its fields (" + fields_of(v) +
                                 "); expected \"" + text_field + "\", \"prompt\" + \"completion\" or \"messages\"");
      format = found;
      first_where = where;
    } else if (found != format && found != RecordFormat::Auto) {
      throw SerializationError(where + ": a " + record_format_name(found) + " record in a " +
                               record_format_name(format) + " file (" +
                               (first_where.empty() ? "data.format" : "first record " + first_where) +
                               "); one format per file");
    }
    Record r;
    r.format = format;
    r.where = where;
    const std::string name = record_format_name(format);
    if (format == RecordFormat::Text) {
      r.text = string_field(v, text_field, where, name);
    } else if (format == RecordFormat::PromptCompletion) {
      r.prompt = string_field(v, "prompt", where, name);
      r.completion = string_field(v, "completion", where, name);
      if (r.completion.empty())
        throw SerializationError(where + ": field \"completion\" is empty: the record has nothing to train on");
    } else {
      if (!v.find("messages"))
        throw SerializationError(where + ": field \"messages\" missing from a messages record (fields: " + fields_of(v) + ")");
      r.messages = messages_of(v, where);
    }
    records.push_back(std::move(r));
  });
  if (records.empty()) throw SerializationError(file.string() + ": no records (an empty file?)");
  return records;
}

}  // namespace peft::text
