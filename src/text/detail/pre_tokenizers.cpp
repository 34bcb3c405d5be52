// The pre-tokenizers of HF tokenizers (tokenizers/src/pre_tokenizers/) on Piece lists.

#include "pre_tokenizers.hpp"

#include <stdexcept>

#include "pattern.hpp"
#include "peft/text/pretokenizer.hpp"
#include "unicode.hpp"

namespace peft::text::detail {

void PreTokenizer::pre_tokenize(std::vector<Piece>& pieces) const {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    if (p.id >= 0) out.push_back(std::move(p));
    else split(p, out);
  }
  pieces = std::move(out);
}

SplitBehavior parse_split_behavior(const JsonValue& obj, const JsonPlace& at, SplitBehavior def) {
  const JsonValue* b = obj.find("behavior");
  if (!b || b->is_null()) return def;
  if (!b->is_string()) bad_field(at.child("behavior"), "a string", b);
  const std::string& s = b->as_string();
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  unsupported(at.child("behavior"), s, "unknown split behavior",
              "use Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

namespace {

void regex_spans(const Pcre2Regex& re, const std::string& text, std::vector<Span>& spans) {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  re.find_all(text, matches);
  spans_from_matches(text.size(), matches, spans);
}

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Pcre2Regex>(kGpt2Pattern);
    const auto& table = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) {
      alphabet_[b].clear();
      utf8_append(alphabet_[b], table[b]);
    }
  }

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    Piece p = piece;
    if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
    const std::size_t first = out.size();
    if (regex_) {
      std::vector<Span> spans;
      regex_spans(*regex_, p.text, spans);
      split_piece(p, spans, SplitBehavior::Isolated, false, out);
    } else if (!p.text.empty()) {
      out.push_back(std::move(p));
    }
    // Every byte becomes its byte-level character (GPT-2's bytes_to_unicode).
    for (std::size_t i = first; i < out.size(); ++i) {
      std::string mapped;
      mapped.reserve(out[i].text.size() * 2);
      for (unsigned char c : out[i].text) mapped += alphabet_[c];
      out[i].text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Pcre2Regex> regex_;
  std::string alphabet_[256];
};

class Split : public PreTokenizer {
 public:
  Split(const PatternSpec& pattern, SplitBehavior behavior, bool invert, const JsonPlace& at)
      : pattern_(pattern, at.child("pattern")), behavior_(behavior), invert_(invert) {}

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    pattern_.find_all(piece.text, matches);
    std::vector<Span> spans;
    spans_from_matches(piece.text.size(), matches, spans);
    split_piece(piece, spans, behavior_, invert_, out);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    Piece p;
    p.at_start = piece.at_start;
    p.text.reserve(piece.text.size() + 8);
    for (char c : piece.text) {
      if (c == ' ') p.text += replacement_;
      else p.text += c;
    }
    const bool starts = p.text.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && p.at_start)))
      p.text.insert(0, replacement_);
    if (!split_) {
      if (!p.text.empty()) out.push_back(std::move(p));
      return;
    }
    // Each replacement character is a match of its own (HF splits on the char), merged with the next.
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    Pattern(replacement_).find_all(p.text, matches);
    std::vector<Span> spans;
    spans_from_matches(p.text.size(), matches, spans);
    split_piece(p, spans, SplitBehavior::MergedWithNext, false, out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

template <class Pred>
class CharSplit : public PreTokenizer {
 public:
  CharSplit(Pred pred, SplitBehavior behavior) : pred_(pred), behavior_(behavior) {}

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    std::vector<Span> spans;
    spans_from_chars(piece.text, pred_, spans);
    split_piece(piece, spans, behavior_, false, out);
  }

 private:
  Pred pred_;
  SplitBehavior behavior_;
};

template <class Pred>
std::unique_ptr<PreTokenizer> char_split(Pred pred, SplitBehavior behavior) {
  return std::make_unique<CharSplit<Pred>>(pred, behavior);
}

class Whitespace : public PreTokenizer {
 public:
  Whitespace() : regex_(R"(\w+|[^\w\s]+)") {}

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    std::vector<Span> spans;
    regex_spans(regex_, piece.text, spans);
    split_piece(piece, spans, SplitBehavior::Removed, true, out);
  }

 private:
  Pcre2Regex regex_;
};

}  // namespace

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}

 protected:
  void split(const Piece& piece, std::vector<Piece>& out) const override {
    std::vector<Piece> cur{piece};
    for (const auto& item : items_) item->pre_tokenize(cur);
    for (auto& p : cur) out.push_back(std::move(p));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonValue& v, const JsonPlace& at) {
  if (v.is_null()) return nullptr;
  const std::string type = get_type(v, at);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(get_bool(v, "add_prefix_space", at, true), get_bool(v, "use_regex", at, true));
  if (type == "Split") {
    return std::make_unique<Split>(get_pattern(v, at), parse_split_behavior(v, at, SplitBehavior::Isolated),
                                   get_bool(v, "invert", at, false), at);
  }
  if (type == "Metaspace") {
    const std::string rep = get_string(v, "replacement", at, "\xE2\x96\x81");
    std::size_t len = 0;
    if (rep.empty() || (utf8_decode(rep, 0, len), len != rep.size()))
      unsupported(at.child("replacement"), rep, "the replacement must be one character", "use \"\\u2581\"");
    Metaspace::Prepend prepend = get_bool(v, "add_prefix_space", at, true) ? Metaspace::Prepend::Always
                                                                           : Metaspace::Prepend::Never;
    if (v.find("prepend_scheme")) {
      const std::string s = get_string(v, "prepend_scheme", at, "always");
      if (s == "always") prepend = Metaspace::Prepend::Always;
      else if (s == "first") prepend = Metaspace::Prepend::First;
      else if (s == "never") prepend = Metaspace::Prepend::Never;
      else unsupported(at.child("prepend_scheme"), s, "unknown prepend scheme", "use always, first or never");
    }
    return std::make_unique<Metaspace>(rep, prepend, get_bool(v, "split", at, true));
  }
  if (type == "Digits") {
    const bool individual = get_bool(v, "individual_digits", at, false);
    return char_split([](uint32_t cp) { return is_numeric(cp); },
                      individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
  }
  if (type == "Punctuation")
    return char_split([](uint32_t cp) { return is_punctuation(cp); },
                      parse_split_behavior(v, at, SplitBehavior::Isolated));
  if (type == "WhitespaceSplit") return char_split([](uint32_t cp) { return is_whitespace(cp); }, SplitBehavior::Removed);
  if (type == "Whitespace") return std::make_unique<Whitespace>();
  if (type == "CharDelimiterSplit") {
    const std::string d = get_string(v, "delimiter", at, "");
    std::size_t len = 0;
    const uint32_t cp = d.empty() ? kInvalidCodePoint : utf8_decode(d, 0, len);
    if (d.empty() || len != d.size()) unsupported(at.child("delimiter"), d, "the delimiter must be one character", "fix the file");
    return char_split([cp](uint32_t c) { return c == cp; }, SplitBehavior::Removed);
  }
  if (type == "Sequence")
    return std::make_unique<SequencePreTokenizer>(parse_list<PreTokenizer>(v, "pretokenizers", at, parse_pre_tokenizer));
  unsupported(at.child("type"), type, "this pre-tokenizer is not implemented",
              "supported: ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, "
              "CharDelimiterSplit, Sequence");
}

}  // namespace peft::text::detail
