// Recursive-descent parser following jinja2.parser's grammar and precedence: condexpr < or < and
// < not < comparisons < + - < ~ < * / // % < ** < unary - + < postfix (. [] ()) and filters/tests.
// Filters and tests bind tighter than arithmetic (`a + b | length` is `a + (b | length)`).

#include <algorithm>
#include <cstdlib>
#include <set>

#include "ast.hpp"
#include "errors.hpp"
#include "lexer.hpp"

namespace peft::text::detail {
namespace {

using Kind = Expr::Kind;

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name) : toks_(std::move(tokens)), name_(name) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
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

  // ---- statements ----
  // Parses until one of `ends` (a block tag name) and leaves the stream after that name.
  Body parse_body(const std::set<std::string>& ends, std::string& found_end) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Token::Type::Eof) {
        if (!ends.empty()) fail("unexpected end of template, expected '" + *ends.begin() + "'");
        return body;
      }
      if (t.type == Token::Type::Data) {
        auto s = std::make_shared<Stmt>();
        s->kind = Stmt::Kind::Data;
        s->line = t.line;
        s->text = t.text;
        body.push_back(s);
        next();
      } else if (t.type == Token::Type::VarBegin) {
        auto s = std::make_shared<Stmt>();
        s->kind = Stmt::Kind::Output;
        s->line = t.line;
        next();
        s->expr = parse_tuple(true);
        expect(Token::Type::VarEnd, "end of print statement '}}'");
        body.push_back(s);
      } else if (t.type == Token::Type::BlockBegin) {
        next();
        if (cur().type != Token::Type::Name) fail("expected a tag name");
        const std::string tag = cur().text;
        if (ends.count(tag)) {
          found_end = tag;
          next();
          return body;
        }
        body.push_back(parse_statement());
      } else {
        fail("unexpected token");
      }
    }
  }

  Body parse_block_until(const std::string& end) {
    std::string found;
    Body b = parse_body({end}, found);
    expect_block_end();
    return b;
  }

  StmtPtr parse_statement() {
    const std::string tag = cur().text;
    const int line = cur().line;
    next();
    auto s = std::make_shared<Stmt>();
    s->line = line;
    if (tag == "if") {
      s->kind = Stmt::Kind::If;
      ExprPtr cond = parse_tuple(false);
      while (true) {
        expect_block_end();
        std::string end;
        Body b = parse_body({"elif", "else", "endif"}, end);
        s->branches.emplace_back(cond, std::move(b));
        if (end == "elif") {
          cond = parse_tuple(false);
          continue;
        }
        if (end == "else") {
          expect_block_end();
          s->branches.emplace_back(nullptr, parse_block_until("endif"));
        } else {
          expect_block_end();
        }
        break;
      }
    } else if (tag == "for") {
      s->kind = Stmt::Kind::For;
      s->target = parse_assign_target(false);
      if (!skip_name("in")) fail("expected 'in'");
      s->expr = parse_tuple(false, false);
      if (skip_name("if")) s->cond = parse_expression(true);
      if (is_name("recursive")) unsupported("recursive for loop", line);
      expect_block_end();
      std::string end;
      s->body = parse_body({"endfor", "else"}, end);
      expect_block_end();
      if (end == "else") s->else_body = parse_block_until("endfor");
    } else if (tag == "set") {
      s->target = parse_assign_target(true);
      if (skip_op("=")) {
        s->kind = Stmt::Kind::Set;
        s->expr = parse_tuple(true);
        expect_block_end();
      } else {
        if (s->target->kind != Kind::Name) fail("a block set assigns a single name");
        if (is_op("|")) unsupported("filtered block set", line);
        s->kind = Stmt::Kind::SetBlock;
        expect_block_end();
        s->body = parse_block_until("endset");
      }
    } else if (tag == "macro") {
      s->kind = Stmt::Kind::Macro;
      s->text = expect_name();
      parse_signature(*s);
      expect_block_end();
      s->body = parse_block_until("endmacro");
    } else if (tag == "call") {
      s->kind = Stmt::Kind::CallBlock;
      if (is_op("(")) parse_signature(*s);
      s->expr = parse_expression(true);
      if (s->expr->kind != Kind::Call) fail("expected a macro call");
      expect_block_end();
      s->body = parse_block_until("endcall");
    } else if (tag == "break" || tag == "continue") {
      s->kind = tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
      expect_block_end();
    } else if (tag == "generation") {
      s->kind = Stmt::Kind::Generation;
      expect_block_end();
      s->body = parse_block_until("endgeneration");
    } else if (tag == "filter") {
      s->kind = Stmt::Kind::FilterBlock;
      s->expr = parse_filter(nullptr);
      while (is_op("|")) s->expr = parse_filter(s->expr);
      expect_block_end();
      s->body = parse_block_until("endfilter");
    } else if (tag == "with") {
      s->kind = Stmt::Kind::With;
      while (cur().type != Token::Type::BlockEnd) {
        if (!s->targets.empty()) expect_op(",");
        s->targets.push_back(parse_assign_target(false));
        expect_op("=");
        s->values.push_back(parse_expression(true));
      }
      expect_block_end();
      s->body = parse_block_until("endwith");
    } else if (tag == "elif" || tag == "else" || tag.rfind("end", 0) == 0) {
      pos_ -= 1;
      fail("unexpected '" + tag + "' tag", "check the nesting of the block tags");
    } else {
      unsupported("{% " + tag + " %}", line);
    }
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (is_op(")")) break;
      s.params.push_back(expect_name());
      s.defaults.push_back(skip_op("=") ? parse_expression(true) : nullptr);
    }
    expect_op(")");
  }

  // A name, `ns.attr` (with_namespace) or a tuple of names, optionally in parentheses.
  ExprPtr parse_assign_target(bool with_namespace) {
    const int line = cur().line;
    if (with_namespace && cur().type == Token::Type::Name && peek().type == Token::Type::Op && peek().text == ".") {
      auto ns = make(Kind::Name, line);
      ns->name = expect_name();
      next();
      auto e = make(Kind::GetAttr, line);
      e->args.push_back(ns);
      e->name = expect_name();
      return e;
    }
    const bool parens = skip_op("(");
    std::vector<ExprPtr> names;
    bool comma = false;
    while (true) {
      auto n = make(Kind::Name, cur().line);
      n->name = expect_name();
      names.push_back(n);
      if (!skip_op(",")) break;
      comma = true;
      if (is_op(")") || is_name("in") || is_op("=")) break;
    }
    if (parens) expect_op(")");
    if (names.size() == 1 && !comma) return names[0];
    auto t = make(Kind::Tuple, line);
    t->args = std::move(names);
    return t;
  }

  // ---- expressions ----
  bool at_tuple_end() const {
    return cur().type == Token::Type::VarEnd || cur().type == Token::Type::BlockEnd || is_op(")") ||
           cur().type == Token::Type::Eof;
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens = false) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
      }
      if (at_tuple_end()) break;
      items.push_back(parse_expression(with_condexpr));
    }
    if (!is_tuple) {
      if (items.empty()) {
        if (!explicit_parens) fail("expected an expression");
      } else {
        return items[0];
      }
    }
    auto t = make(Kind::Tuple, line);
    t->args = std::move(items);
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const int line = cur().line;
      next();
      auto c = make(Kind::CondExpr, line);
      c->args.push_back(e);
      c->args.push_back(parse_or());
      c->args.push_back(skip_name("else") ? parse_condexpr() : nullptr);
      e = c;
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r, int line) {
    auto b = make(Kind::Binary, line);
    b->name = op;
    b->args = {std::move(l), std::move(r)};
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const int line = cur().line;
      next();
      e = binary("or", e, parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const int line = cur().line;
      next();
      e = binary("and", e, parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = make(Kind::Unary, cur().line);
      next();
      u->name = "not";
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    auto c = make(Kind::Compare, line);
    c->args.push_back(first);
    while (true) {
      static const std::set<std::string> ops = {"==", "!=", "<", "<=", ">", ">="};
      if (cur().type == Token::Type::Op && ops.count(cur().text)) {
        c->ops.push_back(cur().text);
        next();
      } else if (is_name("in")) {
        c->ops.push_back("in");
        next();
      } else if (is_name("not") && peek().type == Token::Type::Name && peek().text == "in") {
        c->ops.push_back("notin");
        next();
        next();
      } else {
        break;
      }
      c->args.push_back(parse_math1());
    }
    return c->ops.empty() ? first : c;
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().text;
      const int line = cur().line;
      next();
      e = binary(op, e, parse_concat(), line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = cur().line;
      next();
      e = binary("~", e, parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().text;
      const int line = cur().line;
      next();
      e = binary(op, e, parse_pow(), line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      next();
      e = binary("**", e, parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = make(Kind::Unary, cur().line);
      u->name = cur().text;
      next();
      u->args.push_back(parse_unary(false));
      e = u;
    } else {
      e = parse_primary();
    }
    e = parse_postfix(e);
    if (with_filter) e = parse_filter_expr(e);
    return e;
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(Kind::Literal, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case Token::Type::Name: {
        next();
        if (t.text == "true" || t.text == "True") return literal(Value::boolean(true), t.line);
        if (t.text == "false" || t.text == "False") return literal(Value::boolean(false), t.line);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), t.line);
        auto n = make(Kind::Name, t.line);
        n->name = t.text;
        return n;
      }
      case Token::Type::String: {
        std::string s;
        while (cur().type == Token::Type::String) {  // adjacent literals concatenate
          s += cur().text;
          next();
        }
        return literal(Value::string(s), t.line);
      }
      case Token::Type::Int: next(); return literal(Value::integer(std::strtoll(t.text.c_str(), nullptr, 10)), t.line);
      case Token::Type::Float: next(); return literal(Value::floating(std::strtod(t.text.c_str(), nullptr)), t.line);
      case Token::Type::Op:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          next();
          auto l = make(Kind::List, t.line);
          while (!is_op("]")) {
            if (!l->args.empty()) expect_op(",");
            if (is_op("]")) break;
            l->args.push_back(parse_expression(true));
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") {
          next();
          auto d = make(Kind::Dict, t.line);
          while (!is_op("}")) {
            if (!d->args.empty()) expect_op(",");
            if (is_op("}")) break;
            d->args.push_back(parse_expression(true));
            expect_op(":");
            d->args.push_back(parse_expression(true));
          }
          expect_op("}");
          return d;
        }
        break;
      default: break;
    }
    fail("unexpected token in an expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const int line = cur().line;
      if (is_op(".")) {
        next();
        if (cur().type == Token::Type::Int) {
          auto g = make(Kind::GetItem, line);
          g->args = {e, literal(Value::integer(std::strtoll(cur().text.c_str(), nullptr, 10)), line)};
          next();
          e = g;
        } else {
          auto g = make(Kind::GetAttr, line);
          g->args.push_back(e);
          g->name = expect_name();
          e = g;
        }
      } else if (is_op("[")) {
        next();
        e = parse_subscript(e, line);
      } else if (is_op("(")) {
        e = parse_call(e);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr start, stop, step;
    if (!is_op(":")) start = parse_expression(true);
    if (!is_op(":")) {
      expect_op("]");
      auto g = make(Kind::GetItem, line);
      g->args = {obj, start};
      return g;
    }
    next();
    if (!is_op("]") && !is_op(":")) stop = parse_expression(true);
    if (skip_op(":") && !is_op("]")) step = parse_expression(true);
    expect_op("]");
    auto s = make(Kind::Slice, line);
    s->args = {obj, start, stop, step};
    return s;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) unsupported("*args / **kwargs in a call", cur().line);
      if (cur().type == Token::Type::Name && peek().type == Token::Type::Op && peek().text == "=") {
        std::string key = expect_name();
        next();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument follows keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = make(Kind::Call, cur().line);
    c->args.push_back(std::move(callee));
    parse_call_args(*c);
    return c;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) e = parse_filter(e);
      else if (is_name("is")) e = parse_test(e);
      else if (is_op("(")) e = parse_call(e);
      else return e;
    }
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().type == Token::Type::Name) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  ExprPtr parse_filter(ExprPtr subject) {
    if (subject) expect_op("|");
    auto f = make(Kind::Filter, cur().line);
    f->args.push_back(std::move(subject));
    f->name = dotted_name();
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_test(ExprPtr subject) {
    auto t = make(Kind::Test, cur().line);
    next();  // 'is'
    t->negated = skip_name("not");
    t->args.push_back(std::move(subject));
    t->name = dotted_name();
    if (is_op("(")) {
      parse_call_args(*t);
    } else if ((cur().type == Token::Type::Name || cur().type == Token::Type::String || cur().type == Token::Type::Int ||
                cur().type == Token::Type::Float || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("You cannot chain multiple tests with is");
      t->args.push_back(parse_postfix(parse_primary()));
    }
    return t;
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  const std::string& name_;
};

}  // namespace

std::shared_ptr<const Template> parse_template(const std::string& source, const std::string& name) {
  auto t = std::make_shared<Template>();
  t->name = name;
  t->body = Parser(tokenize(source, name), name).parse_all();
  return t;
}

}  // namespace peft::text::detail
