// ByteTokenizer, the tokenizer file readers (tokenizer.json, vocab.json + merges.txt) and
// load_tokenizer's fallback order.

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/warnings.hpp"
#include "detail/json_fields.hpp"
#include "peft/text/bpe_tokenizer.hpp"
#include "peft/text/hf_tokenizer.hpp"
#include "peft/text/tokenizer.hpp"

namespace peft::text {
namespace {

constexpr std::string_view kEndOfTextText = "<|endoftext|>";

std::unordered_map<std::string, int64_t> read_vocab(const std::filesystem::path& file, const JsonValue& v,
                                                    const std::string& field) {
  if (!v.is_object()) detail::bad_field({file.string(), field}, "an object {token: id}", &v);
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

// Warns when the vocab lacks byte tokens (HF drops such bytes without an unk_token).
void warn_missing_bytes(const std::filesystem::path& file, const ByteLevelBPETokenizer& tok) {
  if (const int missing = tok.missing_byte_tokens(); missing > 0 && !tok.special_token_ids().unk)
    warn(file.string() + ": the vocab lacks " + std::to_string(missing) +
         " of the 256 byte tokens; encode drops those bytes (as HF tokenizers does without an unk_token)");
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
  const JsonValue root = detail::parse_json_file(file);
  if (!root.is_object()) throw SerializationError(file.string() + ": the top level must be a JSON object");
  const detail::JsonPlace top{file.string(), ""};
  // Only GPT-2's shape: the general pipeline (HfTokenizer) reads everything else.
  const JsonValue* model = root.find("model");
  if (model && model->is_object()) {
    const std::string type = detail::get_string(*model, "type", top.child("model"), "BPE");
    if (type != "BPE")
      detail::unsupported(top.child("model.type"), type, "only byte-level BPE tokenizers are supported here",
                          "use load_tokenizer / HfTokenizer for other tokenizer.json files");
    if (detail::get_bool(*model, "byte_fallback", top.child("model"), false))
      detail::unsupported(top.child("model.byte_fallback"), "true", "byte_fallback BPE is not GPT-2's byte-level BPE",
                          "use load_tokenizer / HfTokenizer");
  }
  if (const JsonValue* norm = root.find("normalizer"); norm && !norm->is_null())
    detail::unsupported(top.child("normalizer.type"), detail::get_string(*norm, "type", top.child("normalizer"), "?"),
                        "GPT-2's byte-level BPE has no normalizer", "use load_tokenizer / HfTokenizer");
  const JsonValue* pre = root.find("pre_tokenizer");
  const std::string pt = pre && pre->is_object() ? detail::get_string(*pre, "type", top.child("pre_tokenizer"), "?")
                                                 : "(null)";
  if (pt != "ByteLevel")
    detail::unsupported(top.child("pre_tokenizer.type"), pt, "only the ByteLevel pre-tokenizer (GPT-2's regex) is GPT-2's",
                        "use load_tokenizer / HfTokenizer for Sequence/Split/Metaspace pre-tokenizers");
  auto tok = std::unique_ptr<ByteLevelBPETokenizer>(
      new ByteLevelBPETokenizer(HfTokenizer::from_json(root, nullptr, file.string())));
  warn_missing_bytes(file, *tok);
  return tok;
}

std::unique_ptr<ByteLevelBPETokenizer> ByteLevelBPETokenizer::from_vocab_merges(const std::filesystem::path& vocab_json,
                                                                                const std::filesystem::path& merges_txt) {
  const JsonValue v = detail::parse_json_file(vocab_json);
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
  std::unique_ptr<ByteLevelBPETokenizer> tok;
  try {
    tok = std::make_unique<ByteLevelBPETokenizer>(vocab, merges, added);
  } catch (const SerializationError& e) {
    throw SerializationError(merges_txt.string() + ": " + e.what());
  }
  warn_missing_bytes(merges_txt, *tok);
  return tok;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // A tokenizer.json path itself is accepted too.
  if (!dir.empty() && fs::is_regular_file(dir, ec) && dir.extension() == ".json")
    return HfTokenizer::from_file(dir);
  if (!dir.empty() && fs::is_directory(dir, ec)) {
    if (fs::is_regular_file(dir / "tokenizer.json", ec))
      return HfTokenizer::from_file(dir / "tokenizer.json");
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
