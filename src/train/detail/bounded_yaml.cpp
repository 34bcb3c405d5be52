// Bounded YAML loading (detail/bounded_yaml.hpp): a first pass over yaml-cpp's parse events
// measures the document as an alias-expanding reader would see it, without building anything;
// only a document within the bounds is handed to YAML::Load.

#include "bounded_yaml.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "peft/error.hpp"

namespace peft::detail {
namespace {

/// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs,
/// surrogates or code points past U+10FFFF), or npos. yaml-cpp passes such bytes through, and
/// they would end up in module names and adapter_config.json.
std::size_t invalid_utf8_at(const std::string& s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return i;
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return i;
    }
    i += len;
  }
  return std::string::npos;
}

YAML::Mark mark_at(const std::string& text, std::size_t offset) {
  YAML::Mark m;
  m.pos = static_cast<int>(offset);
  m.line = static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
  const auto nl = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
  m.column = static_cast<int>(nl == std::string::npos ? offset : offset - nl - 1);
  return m;
}

/// Counts what the document expands to. Each open collection accumulates the size of its
/// subtree so that an anchor's size is known when its node closes; an alias then adds that size.
class Measure : public YAML::EventHandler {
 public:
  explicit Measure(std::string source) : source_(std::move(source)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, 0); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    leaf(mark, anchor, value.size());
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const auto it = closed_.find(anchor);
    if (it == closed_.end())
      // yaml-cpp resolved the name, so the anchor is open: the alias is inside its own node.
      fail(mark, "aliases", "*", "an alias refers to the node that contains it (a cycle)",
           "an alias may only repeat a node that is complete before it");
    add(mark, it->second);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Size {
    std::uint64_t nodes = 0, bytes = 0;
  };
  struct Frame {
    YAML::anchor_t anchor;
    Size size;
  };

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& field, const std::string& value,
                         const std::string& problem, const std::string& hint) const {
    throw ConfigError::about("YAML", field, value, problem, hint).located(yaml_where(source_, mark));
  }
  // Sizes never exceed the limits (checked at every addition), so sums cannot overflow.
  void add(const YAML::Mark& mark, const Size& s) {
    total_.nodes += s.nodes;
    total_.bytes += s.bytes;
    if (!stack_.empty()) {
      stack_.back().size.nodes += s.nodes;
      stack_.back().size.bytes += s.bytes;
    }
    if (total_.nodes > kMaxYamlNodes)
      fail(mark, "aliases", std::to_string(total_.nodes) + " nodes",
           "the document expands to more than " + std::to_string(kMaxYamlNodes) + " nodes once aliases are "
           "replaced by their anchors' nodes (an alias bomb?)",
           "write the values out, or use fewer nested aliases");
    if (total_.bytes > kMaxYamlScalarBytes)
      fail(mark, "aliases", std::to_string(total_.bytes) + " bytes",
           "the document expands to more than " + std::to_string(kMaxYamlScalarBytes) + " bytes of scalars once "
           "aliases are replaced by their anchors' nodes (an alias bomb?)",
           "write the values out, or use fewer aliases of long values");
  }
  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, std::size_t bytes) {
    const Size s{1, bytes};
    add(mark, s);
    if (anchor != YAML::NullAnchor) closed_[anchor] = s;
  }
  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (stack_.size() >= kMaxYamlDepth)
      fail(mark, "nesting", std::to_string(stack_.size() + 1) + " levels",
           "mappings and sequences are nested deeper than " + std::to_string(kMaxYamlDepth) + " levels",
           "a training config needs a handful of levels");
    add(mark, Size{1, 0});  // the collection itself (counted in its parent's frame)
    stack_.push_back({anchor, Size{1, 0}});
  }
  void close() {
    const Frame f = stack_.back();
    stack_.pop_back();
    // The children were added to the totals as they came; only the parent's frame still needs them.
    if (!stack_.empty()) {
      stack_.back().size.nodes += f.size.nodes - 1;
      stack_.back().size.bytes += f.size.bytes;
    }
    if (f.anchor != YAML::NullAnchor) closed_[f.anchor] = f.size;
  }

  std::string source_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Size> closed_;  // anchors whose node is complete
  Size total_;
};

}  // namespace

std::string yaml_where(const std::string& source, const YAML::Mark& m) {
  if (m.line < 0) return source;
  return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

YAML::Node load_bounded_yaml(const std::string& text, const std::string& source) {
  if (text.size() > kMaxYamlBytes)
    throw ConfigError::about("YAML", "size", std::to_string(text.size()) + " bytes",
                             "the document is larger than " + std::to_string(kMaxYamlBytes) + " bytes",
                             "a training config is a few kilobytes; keep data in data.file")
        .located(source);
  const std::size_t bad = invalid_utf8_at(text);
  if (bad != std::string::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw SerializationError(yaml_where(source, mark_at(text, bad)) + ": invalid UTF-8 (byte " + hex +
                             "); YAML text must be UTF-8");
  }
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    Measure measure(source);
    parser.HandleNextDocument(measure);  // YAML::Load reads the first document only
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw SerializationError(yaml_where(source, e.mark) + ": invalid YAML: " + e.msg);
  }
}

namespace {
std::size_t digits_from(const std::string& s, std::size_t i) {
  std::size_t j = i;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
  return j - i;
}
}  // namespace

bool is_yaml_int(const std::string& s) {
  const std::size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  const std::size_t n = digits_from(s, sign);
  return n > 0 && sign + n == s.size();
}

bool is_yaml_float(const std::string& s) {
  std::size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  const std::size_t whole = digits_from(s, i);
  i += whole;
  if (i < s.size() && s[i] == '.') {
    const std::size_t frac = digits_from(s, i + 1);
    if (whole == 0 && frac == 0) return false;
    i += 1 + frac;
  } else if (whole == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    const std::size_t exp = digits_from(s, i);
    if (exp == 0) return false;
    i += exp;
  }
  return i == s.size();
}

double yaml_float_value(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

}  // namespace peft::detail
