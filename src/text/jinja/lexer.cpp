// The lexer reproduces jinja2.lexer with trim_blocks=True and lstrip_blocks=True:
//  - newlines are normalised to "\n" and one trailing newline of the source is dropped
//    (keep_trailing_newline=False);
//  - `{%- ` / `{{-` / `{#-` strip all whitespace before the tag, ` -%}` etc. all whitespace after;
//  - lstrip_blocks removes the spaces/tabs between the start of a line and a block or comment tag
//    (not `{{`, not `{%+`), trim_blocks one newline right after `%}` or `#}` (not after `+%}`);
//  - `}}` / `%}` end a tag only outside brackets, as jinja2's balancing stack does.

#include "lexer.hpp"

#include <cstring>

#include "errors.hpp"
#include "str_ops.hpp"
#include "value.hpp"

namespace peft::text::detail {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Byte length of the whitespace character (Python's `\s`, Unicode included) at s[p]; 0 if none.
std::size_t space_at(const std::string& s, std::size_t p) {
  const auto c = static_cast<unsigned char>(s[p]);
  const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
  if (p + n > s.size()) return 0;
  const auto cps = to_code_points(s.substr(p, n));
  return cps.size() == 1 && is_py_space(cps[0]) ? n : 0;
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

std::string normalize_newlines(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int count_newlines(const std::string& s, std::size_t from, std::size_t to) {
  int n = 0;
  for (std::size_t i = from; i < to && i < s.size(); ++i) n += s[i] == '\n';
  return n;
}

class Lexer {
 public:
  Lexer(const std::string& source, const std::string& name) : src_(normalize_newlines(source)), name_(name) {}

  std::vector<Token> run() {
    std::size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const std::size_t tag = next_tag(pos);
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      if (tag == std::string::npos) {
        emit(Token::Type::Data, text);
        break;
      }
      const char kind = src_[tag + 1];
      const char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
      text = strip_before_tag(text, sign, kind != '{', line_starting);
      if (!text.empty()) emit(Token::Type::Data, text);
      line_ += count_newlines(src_, pos, tag);
      pos = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        pos = skip_comment(pos, line_starting);
      } else if (kind == '%' && is_raw(pos)) {
        pos = lex_raw(pos, line_starting);
      } else {
        emit(kind == '%' ? Token::Type::BlockBegin : Token::Type::VarBegin, "");
        pos = lex_tag(pos, kind == '%', line_starting);
      }
    }
    emit(Token::Type::Eof, "");
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& what, const std::string& value) const {
    throw_template_error(name_, line_, "syntax", value, what, "");
  }

  void emit(Token::Type type, std::string text) { tokens_.push_back(Token{type, std::move(text), line_}); }

  std::size_t next_tag(std::size_t pos) const {
    for (std::size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // `-` rstrips the text; otherwise lstrip_blocks drops the whitespace that alone precedes a
  // block/comment tag on its line.
  static std::string strip_before_tag(std::string text, char sign, bool block_or_comment, bool line_starting) {
    if (sign == '-') {
      return py_strip(text, std::nullopt, false, true);
    }
    if (sign == '+' || !block_or_comment) return text;
    const std::size_t nl = text.rfind('\n');
    const std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting) return text;
    if (l_pos < text.size() && py_strip(text.substr(l_pos), std::nullopt, true, true).empty()) text.resize(l_pos);
    return text;
  }

  // After `%}` / `#}`: `-` eats all whitespace, `+` nothing, plain one "\n" (trim_blocks).
  std::size_t after_block_end(std::size_t end_pos, char sign, bool& line_starting) {
    std::size_t p = end_pos;
    if (sign == '-') {
      p = skip_spaces(p);
    } else if (sign != '+' && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    line_ += count_newlines(src_, end_pos, p);
    line_starting = p > 0 && src_[p - 1] == '\n';
    return p;
  }

  std::size_t skip_comment(std::size_t pos, bool& line_starting) {
    for (std::size_t i = pos; i + 1 < src_.size(); ++i) {
      char sign = 0;
      if ((src_[i] == '-' || src_[i] == '+') && src_.compare(i + 1, 2, "#}") == 0) sign = src_[i];
      else if (src_.compare(i, 2, "#}") != 0) continue;
      line_ += count_newlines(src_, pos, i);
      return after_block_end(i + (sign ? 3 : 2), sign, line_starting);
    }
    fail("missing end of comment tag", "{#");
  }

  // `{% raw %}` (jinja2 allows no `+%}` and no trim_blocks newline after it).
  bool is_raw(std::size_t pos) const {
    std::size_t p = pos;
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  std::size_t lex_raw(std::size_t pos, bool& line_starting) {
    std::size_t p = src_.find("%}", pos);
    const bool strip_after = src_[p - 1] == '-';
    line_ += count_newlines(src_, pos, p + 2);
    p += 2;
    if (strip_after) {
      const std::size_t e = skip_spaces(p);
      line_ += count_newlines(src_, p, e);
      p = e;
    }
    // The first `{%[-+]? endraw [-+]?%}` ends it.
    for (std::size_t i = src_.find("{%", p); i != std::string::npos; i = src_.find("{%", i + 1)) {
      std::size_t q = i + 2;
      const char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < src_.size() && is_space(src_[q])) ++q;
      char end_sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) end_sign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) continue;
      std::string text = strip_before_tag(src_.substr(p, i - p), sign, true, line_starting_at(p));
      if (!text.empty()) emit(Token::Type::Data, text);
      line_ += count_newlines(src_, p, q);
      return after_block_end(q + 2, end_sign, line_starting);
    }
    fail("missing end of raw directive", "{% raw %}");
  }

  std::size_t skip_spaces(std::size_t p) const {
    for (std::size_t n = 0; p < src_.size() && (n = space_at(src_, p)) > 0;) p += n;
    return p;
  }

  bool line_starting_at(std::size_t p) const { return p == 0 || src_[p - 1] == '\n'; }

  std::size_t lex_tag(std::size_t pos, bool block, bool& line_starting) {
    const char closer = block ? '%' : '}';
    std::vector<char> balancing;
    std::size_t p = pos;
    while (true) {
      if (p >= src_.size()) fail(block ? "missing end of block tag" : "missing end of variable tag", block ? "{%" : "{{");
      const char c = src_[p];
      if (balancing.empty()) {
        const std::string end{closer, '}'};
        char sign = 0;
        std::size_t q = p;
        if ((c == '-' || (c == '+' && block)) && src_.compare(p + 1, 2, end) == 0) {
          sign = c;
          q = p + 1;
        }
        if (src_.compare(q, 2, end) == 0) {
          emit(block ? Token::Type::BlockEnd : Token::Type::VarEnd, "");
          if (block) return after_block_end(q + 2, sign, line_starting);
          std::size_t e = q + 2;
          if (sign == '-') {
            const std::size_t after = skip_spaces(e);
            line_ += count_newlines(src_, e, after);
            e = after;
          }
          line_starting = src_[e - 1] == '\n';
          return e;
        }
      }
      if (is_space(c)) {
        line_ += c == '\n';
        ++p;
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        std::size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        emit(Token::Type::Name, src_.substr(p, e - p));
        p = e;
      } else {
        p = lex_operator(p, balancing);
      }
    }
  }

  std::size_t lex_operator(std::size_t p, std::vector<char>& balancing) {
    static const char* const two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : two)
      if (src_.compare(p, 2, op) == 0) {
        emit(Token::Type::Op, op);
        return p + 2;
      }
    const char c = src_[p];
    if (!std::strchr("+-/*%~[](){}><=.:|,;", c)) fail("unexpected char", std::string("'") + c + "'");
    if (c == '(' || c == '[' || c == '{') balancing.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    if (c == ')' || c == ']' || c == '}') {
      if (balancing.empty() || balancing.back() != c) fail("unexpected '" + std::string(1, c) + "'", std::string(1, c));
      balancing.pop_back();
    }
    emit(Token::Type::Op, std::string(1, c));
    return p + 1;
  }

  std::size_t lex_number(std::size_t p) {
    auto digits = [&](std::size_t q) {
      while (q < src_.size() && (is_digit(src_[q]) || (src_[q] == '_' && q + 1 < src_.size() && is_digit(src_[q + 1])))) ++q;
      return q;
    };
    std::size_t e = digits(p);
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1])) {
      e = digits(e + 1);
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      std::size_t q = e + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && is_digit(src_[q])) {
        e = digits(q);
        is_float = true;
      }
    }
    std::string text;
    for (std::size_t i = p; i < e; ++i)
      if (src_[i] != '_') text += src_[i];
    emit(is_float ? Token::Type::Float : Token::Type::Int, text);
    return e;
  }

  // Python's "unicode-escape" decoding of the literal's body, as jinja2 does.
  std::size_t lex_string(std::size_t p) {
    const char quote = src_[p];
    std::string out;
    const int start_line = line_;
    std::size_t i = p + 1;
    for (; i < src_.size() && src_[i] != quote; ++i) {
      const char c = src_[i];
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++i >= src_.size()) break;
      const char e = src_[i];
      auto hex = [&](int n) {
        char32_t cp = 0;
        for (int k = 0; k < n; ++k) {
          const char h = i + 1 < src_.size() ? src_[++i] : 'x';
          const int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
          if (d < 0) fail("truncated \\x/\\u escape in a string literal", std::string(1, e));
          cp = cp * 16 + static_cast<char32_t>(d);
        }
        append_utf8(out, cp);
      };
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x': hex(2); break;
        case 'u': hex(4); break;
        case 'U': hex(8); break;
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i + 1 < src_.size() && src_[i + 1] >= '0' && src_[i + 1] <= '7'; ++k)
              cp = cp * 8 + static_cast<char32_t>(src_[++i] - '0');
            append_utf8(out, cp);
          } else {
            out += '\\';  // unknown escapes stay as written
            out += e;
          }
      }
    }
    if (i >= src_.size()) {
      line_ = start_line;
      fail("unterminated string literal", std::string(1, quote));
    }
    tokens_.push_back(Token{Token::Type::String, out, start_line});
    return i + 1;
  }

  std::string src_;
  const std::string& name_;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const std::string& template_name) {
  return Lexer(source, template_name).run();
}

}  // namespace peft::text::detail
