#pragma once
// The Jinja parser's token cursor and expression grammar (parser_expressions.cpp); the statement
// parser (parser.cpp) builds on them.

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "ast.hpp"
#include "errors.hpp"
#include "lexer.hpp"

namespace peft::text::detail {

/// A cursor over the tokens of one template, with the error helpers every parser part uses.
class TokenStream {
 public:
  TokenStream(std::vector<Token> tokens, const std::string& name) : toks_(std::move(tokens)), name_(name) {}

 protected:
  using Kind = Expr::Kind;
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(std::size_t n = 1) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  void next() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == Token::Type::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Token::Type::Name && cur().text == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::Data: return "template data";
      case Token::Type::VarBegin: return "'{{'";
      case Token::Type::VarEnd: return "'}}'";
      case Token::Type::BlockBegin: return "'{%'";
      case Token::Type::BlockEnd: return "'%}'";
      case Token::Type::String: return "string literal";
      case Token::Type::Eof: return "end of template";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void fail(const std::string& problem, const std::string& hint = "") const {
    throw_template_error(name_, cur().line, "syntax", describe(cur()), problem, hint);
  }
  [[noreturn]] void unsupported(const std::string& what, int line) const {
    throw_template_error(name_, line, "tag", what, "not supported by peft's chat-template interpreter",
                         "see docs/chat_templates.md for the supported Jinja subset");
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail(std::string("expected '") + op + "'");
  }
  void expect(Token::Type type, const char* what) {
    if (cur().type != type) fail(std::string("expected ") + what);
    next();
  }
  std::string expect_name() {
    if (cur().type != Token::Type::Name) fail("expected a name");
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() { expect(Token::Type::BlockEnd, "end of statement block '%}'"); }

  static std::shared_ptr<Expr> make(Kind kind, int line) {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // Bounds the parser's recursion (nested brackets, `not`, tags), so a hostile template is an
  // error, not a stack overflow. Python jinja2 hits its recursion limit at about the same depth.
  static constexpr int kMaxNesting = 100;
  struct Nesting {
    explicit Nesting(TokenStream& ts) : ts_(ts) {
      if (++ts_.depth_ > kMaxNesting) ts_.fail("nesting deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~Nesting() { --ts_.depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    TokenStream& ts_;
  };

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  const std::string& name_;
  int depth_ = 0;
};

/// jinja2.parser's expression grammar: condexpr < or < and < not < comparisons < + - < ~ < * / // %
/// < ** < unary - + < postfix (. [] ()) and filters/tests.
class ExpressionParser : public TokenStream {
 public:
  using TokenStream::TokenStream;

 protected:
  /// Comma-separated expressions: one expression, or a Tuple when there is a comma.
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens = false);
  ExprPtr parse_expression(bool with_condexpr);
  /// A name, `ns.attr` (with_namespace) or a tuple of names, optionally in parentheses.
  ExprPtr parse_assign_target(bool with_namespace);
  /// `| name(args)` applied to `subject` (null for a filter block).
  ExprPtr parse_filter(ExprPtr subject);

 private:
  bool at_tuple_end() const;
  ExprPtr parse_condexpr();
  ExprPtr binary_level(std::initializer_list<const char*> ops, ExprPtr (ExpressionParser::*operand)());
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_filtered_unary();
  ExprPtr literal(Value v, int line);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_subscript(ExprPtr obj, int line);
  void parse_call_args(Expr& e);
  ExprPtr parse_call(ExprPtr callee);
  ExprPtr parse_filter_expr(ExprPtr e);
  std::string dotted_name();
  ExprPtr parse_test(ExprPtr subject);
};

}  // namespace peft::text::detail
