// ByteTokenizer, the tokenizer file readers (tokenizer.json, vocab.json + merges.txt) and
// load_tokenizer's fallback order.

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/warnings.hpp"
#include "peft/text/bpe_tokenizer.hpp"
#include "peft/text/tokenizer.hpp"

namespace peft::text {
namespace {

constexpr std::string_view kEndOfTextText = "<|endoftext|>";

JsonValue parse_json_file(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  try {
    return JsonValue::parse(text);
  } catch (const Error& e) {
    throw SerializationError(file.string() + ": malformed JSON: " + e.what());
  }
}

std::string type_name(const JsonValue& v) {
  switch (v.type()) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "a boolean";
    case JsonValue::Type::Int: return "an integer";
    case JsonValue::Type::Float: return "a number";
    case JsonValue::Type::String: return "a string";
    case JsonValue::Type::Array: return "an array";
    default: return "an object";
  }
}

[[noreturn]] void bad_field(const std::filesystem::path& file, const std::string& field, const std::string& expected,
                            const JsonValue* got) {
  throw SerializationError(file.string() + ": field '" + field + "' must be " + expected +
                           (got ? ", got " + type_name(*got) : std::string(", but it is missing")));
}

// A ConfigError about the tokenizer (subject "tokenizer") whose message names the tokenizer file
// and its field: `dir/tokenizer.json: pre_tokenizer.type = Metaspace: ... (hint: ...)`.
class TokenizerConfigError : public ConfigError {
 public:
  TokenizerConfigError(const std::string& file, const std::string& field, const std::string& value,
                       const std::string& problem, const std::string& hint)
      : ConfigError(Message{file + ": " + field + " = " + value + ": " + problem + " (hint: " + hint + ")"},
                    "tokenizer", field, value, Kind::InvalidValue) {}
};

// A tokenizer.json this library cannot reproduce exactly: ConfigError naming file, field, value.
[[noreturn]] void unsupported(const std::filesystem::path& file, const std::string& field, const std::string& value,
                              const std::string& problem, const std::string& hint) {
  throw TokenizerConfigError(file.string(), field, value, problem, hint);
}

std::unordered_map<std::string, int64_t> read_vocab(const std::filesystem::path& file, const JsonValue& v,
                                                    const std::string& field) {
  if (!v.is_object()) bad_field(file, field, "an object {token: id}", &v);
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(v.as_object().size());
  for (const auto& [token, id] : v.as_object()) {
    if (!id.is_int() || id.as_int() < 0)
      throw SerializationError(file.string() + ": " + field + "[\"" + token + "\"] must be a non-negative integer id");
    vocab[token] = id.as_int();
  }
  return vocab;
}

std::pair<std::string, std::string> split_merge_line(const std::string& line, const std::string& where) {
  const auto sp = line.find(' ');
  if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string::npos)
    throw SerializationError(where + ": merge \"" + line + "\" is not two tokens separated by one space");
  return {line.substr(0, sp), line.substr(sp + 1)};
}

// Builds the tokenizer; a merge naming an unknown token is a malformed file.
std::unique_ptr<ByteLevelBPETokenizer> build(const std::filesystem::path& file,
                                             const std::unordered_map<std::string, int64_t>& vocab,
                                             const std::vector<std::pair<std::string, std::string>>& merges,
                                             const std::vector<ByteLevelBPETokenizer::AddedToken>& added,
                                             ByteLevelBPETokenizer::Options options) {
  std::unique_ptr<ByteLevelBPETokenizer> tok;
  try {
    tok = std::make_unique<ByteLevelBPETokenizer>(vocab, merges, added, options);
  } catch (const SerializationError& e) {
    throw SerializationError(file.string() + ": " + e.what());
  }
  if (const int missing = tok->missing_byte_tokens(); missing > 0 && !options.unk_id)
    warn(file.string() + ": the vocab lacks " + std::to_string(missing) +
         " of the 256 byte tokens; encode drops those bytes (as HF tokenizers does without an unk_token)");
  return tok;
}

}  // namespace

std::vector<int64_t> ByteTokenizer::encode(std::string_view text, bool /*add_special_tokens*/) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '<' && text.compare(i, kEndOfTextText.size(), kEndOfTextText) == 0) {
      ids.push_back(kEndOfText);
      i += kEndOfTextText.size();
      continue;
    }
    ids.push_back(static_cast<unsigned char>(text[i]));
    ++i;
  }
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id >= 0 && id < 256) out += static_cast<char>(static_cast<unsigned char>(id));
    else if (id == kEndOfText) {
      if (!skip_special_tokens) out += kEndOfTextText;
    }
    else throw Error("ByteTokenizer::decode: id " + std::to_string(id) + " is outside [0, 257)");
  }
  return out;
}

std::unique_ptr<ByteLevelBPETokenizer> ByteLevelBPETokenizer::from_tokenizer_json(const std::filesystem::path& file) {
  const JsonValue root = parse_json_file(file);
  if (!root.is_object()) throw SerializationError(file.string() + ": the top level must be a JSON object");
  const JsonValue* model = root.find("model");
  if (!model || !model->is_object()) bad_field(file, "model", "an object", model);
  const JsonValue* type = model->find("type");
  // tokenizers writes "type": "BPE"; very old files omit it for BPE (detected by "merges").
  const std::string model_type = type && type->is_string() ? type->as_string() : (model->find("merges") ? "BPE" : "");
  if (model_type != "BPE")
    unsupported(file, "model.type", model_type.empty() ? "(missing)" : model_type,
                "only byte-level BPE tokenizers are supported",
                "use a GPT-2-style tokenizer (BPE + ByteLevel), or remove tokenizer.json to fall back to "
                "vocab.json/merges.txt or the byte tokenizer");

  ByteLevelBPETokenizer::Options options;
  auto flag = [&](const JsonValue& obj, const char* key, const std::string& prefix) {
    const JsonValue* f = obj.find(key);
    if (!f || f->is_null()) return false;
    if (!f->is_bool()) bad_field(file, prefix + key, "a boolean", f);
    return f->as_bool();
  };
  if (flag(*model, "byte_fallback", "model."))
    unsupported(file, "model.byte_fallback", "true", "byte_fallback BPE (SentencePiece style) is not supported",
                "use a byte-level BPE tokenizer (GPT-2 style)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const JsonValue* f = model->find(key);
    if (f && !f->is_null() && !(f->is_string() && f->as_string().empty()))
      unsupported(file, std::string("model.") + key, f->is_string() ? f->as_string() : type_name(*f),
                  "subword prefixes/suffixes are not part of byte-level BPE", "use a GPT-2-style tokenizer");
  }
  if (const JsonValue* d = model->find("dropout"); d && !d->is_null() && d->is_number() && d->as_double() > 0)
    unsupported(file, "model.dropout", std::to_string(d->as_double()), "BPE dropout is a training-time option",
                "set model.dropout to null");
  options.ignore_merges = flag(*model, "ignore_merges", "model.");

  const JsonValue* vocab_v = model->find("vocab");
  if (!vocab_v) bad_field(file, "model.vocab", "an object {token: id}", nullptr);
  auto vocab = read_vocab(file, *vocab_v, "model.vocab");

  const JsonValue* merges_v = model->find("merges");
  if (!merges_v || !merges_v->is_array()) bad_field(file, "model.merges", "an array", merges_v);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_v->as_array().size());
  for (std::size_t i = 0; i < merges_v->as_array().size(); ++i) {
    const JsonValue& m = merges_v->as_array()[i];
    const std::string where = file.string() + ": model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {
      merges.push_back(split_merge_line(m.as_string(), where));
    } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() && m.as_array()[1].is_string()) {
      merges.emplace_back(m.as_array()[0].as_string(), m.as_array()[1].as_string());
    } else {
      throw SerializationError(where + ": must be \"a b\" or [\"a\", \"b\"], got " + type_name(m));
    }
  }
  if (const JsonValue* unk = model->find("unk_token"); unk && unk->is_string()) {
    auto it = vocab.find(unk->as_string());
    if (it != vocab.end()) options.unk_id = it->second;
  }

  if (const JsonValue* norm = root.find("normalizer"); norm && !norm->is_null()) {
    const JsonValue* t = norm->find("type");
    unsupported(file, "normalizer.type", t && t->is_string() ? t->as_string() : type_name(*norm),
                "normalizers are not implemented", "use a tokenizer.json with \"normalizer\": null (GPT-2 style)");
  }
  const JsonValue* pre = root.find("pre_tokenizer");
  if (pre && !pre->is_null()) {
    const JsonValue* t = pre->find("type");
    const std::string pt = t && t->is_string() ? t->as_string() : type_name(*pre);
    if (pt != "ByteLevel")
      unsupported(file, "pre_tokenizer.type", pt, "only the ByteLevel pre-tokenizer (GPT-2's regex) is implemented",
                  "use a GPT-2-style tokenizer.json; Sequence/Split/Metaspace pre-tokenizers are not supported");
    if (const JsonValue* ur = pre->find("use_regex"); ur && ur->is_bool() && !ur->as_bool())
      unsupported(file, "pre_tokenizer.use_regex", "false", "ByteLevel without GPT-2's regex is not supported",
                  "set use_regex to true");
    options.add_prefix_space = flag(*pre, "add_prefix_space", "pre_tokenizer.");
  }

  std::vector<ByteLevelBPETokenizer::AddedToken> added;
  if (const JsonValue* at = root.find("added_tokens"); at && !at->is_null()) {
    if (!at->is_array()) bad_field(file, "added_tokens", "an array", at);
    for (std::size_t i = 0; i < at->as_array().size(); ++i) {
      const JsonValue& a = at->as_array()[i];
      const std::string f = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) bad_field(file, f, "an object", &a);
      const JsonValue* id = a.find("id");
      const JsonValue* content = a.find("content");
      if (!id || !id->is_int() || id->as_int() < 0) bad_field(file, f + ".id", "a non-negative integer", id);
      if (!content || !content->is_string() || content->as_string().empty())
        bad_field(file, f + ".content", "a non-empty string", content);
      ByteLevelBPETokenizer::AddedToken tok;
      tok.id = id->as_int();
      tok.content = content->as_string();
      tok.special = flag(a, "special", f + ".");
      tok.lstrip = flag(a, "lstrip", f + ".");
      tok.rstrip = flag(a, "rstrip", f + ".");
      tok.single_word = flag(a, "single_word", f + ".");
      added.push_back(std::move(tok));
    }
  }
  return build(file, vocab, merges, added, options);
}

std::unique_ptr<ByteLevelBPETokenizer> ByteLevelBPETokenizer::from_vocab_merges(const std::filesystem::path& vocab_json,
                                                                                const std::filesystem::path& merges_txt) {
  const JsonValue v = parse_json_file(vocab_json);
  auto vocab = read_vocab(vocab_json, v, "(top level)");
  const std::string text = read_text_file(merges_txt);
  std::vector<std::pair<std::string, std::string>> merges;
  std::size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    merges.push_back(split_merge_line(line, merges_txt.string() + ":" + std::to_string(line_no)));
  }
  std::vector<ByteLevelBPETokenizer::AddedToken> added;
  if (auto it = vocab.find(std::string(kEndOfTextText)); it != vocab.end()) {
    ByteLevelBPETokenizer::AddedToken eot;
    eot.content = std::string(kEndOfTextText);
    eot.id = it->second;
    added.push_back(eot);
  }
  return build(merges_txt, vocab, merges, added, {});
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // A tokenizer.json path itself is accepted too.
  if (!dir.empty() && fs::is_regular_file(dir, ec) && dir.extension() == ".json")
    return ByteLevelBPETokenizer::from_tokenizer_json(dir);
  if (!dir.empty() && fs::is_directory(dir, ec)) {
    if (fs::is_regular_file(dir / "tokenizer.json", ec))
      return ByteLevelBPETokenizer::from_tokenizer_json(dir / "tokenizer.json");
    const bool has_vocab = fs::is_regular_file(dir / "vocab.json", ec);
    const bool has_merges = fs::is_regular_file(dir / "merges.txt", ec);
    if (has_vocab && has_merges)
      return ByteLevelBPETokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
    if (has_vocab != has_merges)
      throw SerializationError((dir / (has_vocab ? "merges.txt" : "vocab.json")).string() +
                               ": missing (vocab.json and merges.txt come as a pair)");
  }
  return std::make_unique<ByteTokenizer>();
}

}  // namespace peft::text
