// HF tokenizers' decoders (tokenizers/src/decoders/).

#include "decoders.hpp"

#include <cctype>

#include "pattern.hpp"
#include "peft/text/pretokenizer.hpp"
#include "unicode.hpp"

namespace peft::text::detail {
namespace {

std::vector<uint32_t> chars_of(const std::string& s) {
  std::vector<uint32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 1;
    out.push_back(utf8_decode(s, i, len));
    i += len;
  }
  return out;
}

uint32_t one_char(const std::string& s, const JsonPlace& at) {
  std::size_t len = 0;
  const uint32_t cp = s.empty() ? kInvalidCodePoint : utf8_decode(s, 0, len);
  if (s.empty() || len != s.size()) unsupported(at, s, "must be one character", "fix the file");
  return cp;
}

// All tokens to bytes through the byte-level alphabet (a token with a character outside it is
// taken as its UTF-8 bytes), fused into one string. Decision: the bytes are returned as they are,
// where HF applies from_utf8_lossy; they differ only when the ids end inside a UTF-8 character,
// and raw bytes let streaming callers finish the character with the next token.
class ByteLevel : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string out;
    std::string bytes;
    for (const auto& t : tokens) {
      if (byte_level_to_bytes(t, bytes)) out += bytes;
      else out += t;
    }
    tokens.assign(1, std::move(out));
  }
};

class Metaspace : public Decoder {
 public:
  Metaspace(std::string replacement, bool prepend) : replacement_(std::move(replacement)), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t p = 0; p < t.size();) {
        if (t.compare(p, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && prepend_)) out += ' ';  // HF: every replacement in the first token is dropped
          p += replacement_.size();
        } else {
          out += t[p++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool prepend_;
};

class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    std::size_t pending_n = 0;
    auto flush = [&] {
      if (!pending_n) return;
      if (is_valid_utf8(pending)) out.push_back(pending);
      else
        for (std::size_t k = 0; k < pending_n; ++k) out.emplace_back("\xEF\xBF\xBD");  // one U+FFFD per byte
      pending.clear();
      pending_n = 0;
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        const std::string hex = t.substr(3, 2);
        if (std::isxdigit(static_cast<unsigned char>(hex[0])) && std::isxdigit(static_cast<unsigned char>(hex[1])))
          byte = std::stoi(hex, nullptr, 16);
      }
      if (byte >= 0) {
        pending += static_cast<char>(byte);
        ++pending_n;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string out;
    for (const auto& t : tokens) out += t;
    tokens.assign(1, std::move(out));
  }
};

class Strip : public Decoder {
 public:
  Strip(uint32_t content, std::size_t start, std::size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      const auto chars = chars_of(t);
      std::size_t b = 0, e = chars.size();
      for (std::size_t i = 0; i < start_ && i < chars.size() && chars[i] == content_; ++i) b = i + 1;
      for (std::size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const std::size_t idx = chars.size() - i - 1;
        if (chars[idx] != content_) break;
        e = idx;
      }
      std::string out;
      for (std::size_t i = b; i < e; ++i) utf8_append(out, chars[i]);
      t = std::move(out);
    }
  }

 private:
  uint32_t content_;
  std::size_t start_, stop_;
};

class Replace : public Decoder {
 public:
  Replace(const PatternSpec& p, std::string content, const JsonPlace& at)
      : pattern_(p, at.child("pattern")), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = pattern_.replace_all(t, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// WordPiece: "##" continuations glued on, others get a space; cleanup as HF's cleanup().
class WordPiece : public Decoder {
 public:
  WordPiece(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) t.erase(0, prefix_.size());
        else t.insert(0, " ");
      }
      if (cleanup_) t = clean(t);
    }
  }

 private:
  static std::string clean(std::string s) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      const std::string f = from, r = to;
      for (auto p = s.find(f); p != std::string::npos; p = s.find(f, p + r.size())) s.replace(p, f.size(), r);
    }
    return s;
  }
  std::string prefix_;
  bool cleanup_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> items) : items_(std::move(items)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : items_) d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

}  // namespace

std::unique_ptr<Decoder> parse_decoder(const JsonValue& v, const JsonPlace& at) {
  if (v.is_null()) return nullptr;
  const std::string type = get_type(v, at);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") {
    const std::string rep = get_string(v, "replacement", at, "\xE2\x96\x81");
    one_char(rep, at.child("replacement"));
    bool prepend = get_bool(v, "add_prefix_space", at, true);
    if (v.find("prepend_scheme")) prepend = get_string(v, "prepend_scheme", at, "always") != "never";
    return std::make_unique<Metaspace>(rep, prepend);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    const std::string c = get_string(v, "content", at, " ");
    return std::make_unique<Strip>(one_char(c, at.child("content")),
                                   static_cast<std::size_t>(get_int(v, "start", at, 0)),
                                   static_cast<std::size_t>(get_int(v, "stop", at, 0)));
  }
  if (type == "Replace") return std::make_unique<Replace>(get_pattern(v, at), get_string(v, "content", at, ""), at);
  if (type == "WordPiece")
    return std::make_unique<WordPiece>(get_string(v, "prefix", at, "##"), get_bool(v, "cleanup", at, true));
  if (type == "Sequence") return std::make_unique<Sequence>(parse_list<Decoder>(v, "decoders", at, parse_decoder));
  unsupported(at.child("type"), type, "this decoder is not implemented",
              "supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, WordPiece, Sequence");
}

}  // namespace peft::text::detail
