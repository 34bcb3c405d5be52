// The normalizers of HF tokenizers (tokenizers/src/normalizers/) on plain strings.

#include "normalizers.hpp"

#include <vector>

#include "pattern.hpp"
#include "unicode.hpp"

namespace peft::text::detail {
namespace {

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(std::string form) : form_(std::move(form)) {}
  void normalize(std::string& text, bool&) const override { text = unicode_normalize(text, form_); }

 private:
  std::string form_;
};

class Lowercase : public Normalizer {
 public:
  void normalize(std::string& text, bool&) const override { text = unicode_lowercase(text); }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text, bool& at_start) const override {
    std::size_t b = 0, e = text.size();
    if (left_) {
      while (b < e) {
        std::size_t len = 1;
        if (!is_whitespace(utf8_decode(text, b, len))) break;
        b += len;
      }
    }
    if (right_) {
      while (e > b) {
        std::size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
        std::size_t len = 1;
        if (!is_whitespace(utf8_decode(text, k, len)) || k + len != e) break;
        e = k;
      }
    }
    if (b > 0) at_start = false;
    text = text.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  // HF prepends to any non-empty string (so to each segment between added tokens too).
  void normalize(std::string& text, bool&) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(const PatternSpec& pattern, std::string content, const JsonPlace& at)
      : pattern_(pattern, at.child("pattern")), content_(std::move(content)) {}
  void normalize(std::string& text, bool& at_start) const override {
    std::pair<std::size_t, std::size_t> first;
    text = pattern_.replace_all(text, content_, &first);
    // Removing the first characters moves the start away from offset 0 of the input.
    if (content_.empty() && first.first == 0 && first.second > 0) at_start = false;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  void normalize(std::string& text, bool& at_start) const override {
    for (const auto& n : items_) n->normalize(text, at_start);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const JsonValue& v, const JsonPlace& at) {
  if (v.is_null()) return nullptr;
  const std::string type = get_type(v, at);
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<UnicodeForm>(type);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(get_bool(v, "strip_left", at, true), get_bool(v, "strip_right", at, true));
  if (type == "Prepend") return std::make_unique<Prepend>(get_string(v, "prepend", at, ""));
  if (type == "Replace") return std::make_unique<Replace>(get_pattern(v, at), get_string(v, "content", at, ""), at);
  if (type == "Sequence") return std::make_unique<Sequence>(parse_list<Normalizer>(v, "normalizers", at, parse_normalizer));
  unsupported(at.child("type"), type, "this normalizer is not implemented",
              "supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace, Sequence");
}

}  // namespace peft::text::detail
