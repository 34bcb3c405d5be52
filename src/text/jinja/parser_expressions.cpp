// jinja2.parser's expression grammar and precedence. Filters and tests bind tighter than
// arithmetic (`a + b | length` is `a + (b | length)`), `~` tighter than `+`.

#include <cerrno>
#include <cstdlib>
#include <set>

#include "parser.hpp"

namespace peft::text::detail {

ExprPtr ExpressionParser::parse_assign_target(bool with_namespace) {
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

bool ExpressionParser::at_tuple_end() const {
  return cur().type == Token::Type::VarEnd || cur().type == Token::Type::BlockEnd || is_op(")") ||
         cur().type == Token::Type::Eof;
}

ExprPtr ExpressionParser::parse_tuple(bool with_condexpr, bool explicit_parens) {
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

ExprPtr ExpressionParser::parse_expression(bool with_condexpr) {
  return with_condexpr ? parse_condexpr() : parse_or();
}

ExprPtr ExpressionParser::parse_condexpr() {
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

// One left-associative level of binary operators, `operand (op operand)*`; an op is a keyword
// ("or", "and") or an operator token.
ExprPtr ExpressionParser::binary_level(std::initializer_list<const char*> ops, ExprPtr (ExpressionParser::*operand)()) {
  ExprPtr e = (this->*operand)();
  while (true) {
    const char* op = nullptr;
    for (const char* o : ops)
      if (is_op(o) || is_name(o)) op = o;
    if (!op) return e;
    auto b = make(Kind::Binary, cur().line);
    next();
    b->name = op;
    b->args = {e, (this->*operand)()};
    e = b;
  }
}

ExprPtr ExpressionParser::parse_or() { return binary_level({"or"}, &ExpressionParser::parse_and); }
ExprPtr ExpressionParser::parse_and() { return binary_level({"and"}, &ExpressionParser::parse_not); }
ExprPtr ExpressionParser::parse_math1() { return binary_level({"+", "-"}, &ExpressionParser::parse_concat); }
ExprPtr ExpressionParser::parse_concat() { return binary_level({"~"}, &ExpressionParser::parse_math2); }
ExprPtr ExpressionParser::parse_math2() { return binary_level({"*", "/", "//", "%"}, &ExpressionParser::parse_pow); }
ExprPtr ExpressionParser::parse_pow() { return binary_level({"**"}, &ExpressionParser::parse_filtered_unary); }
ExprPtr ExpressionParser::parse_filtered_unary() { return parse_unary(true); }

ExprPtr ExpressionParser::parse_not() {
  const Nesting guard(*this);
  if (is_name("not")) {
    auto u = make(Kind::Unary, cur().line);
    next();
    u->name = "not";
    u->args.push_back(parse_not());
    return u;
  }
  return parse_compare();
}
ExprPtr ExpressionParser::parse_compare() {
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
ExprPtr ExpressionParser::parse_unary(bool with_filter) {
  const Nesting guard(*this);
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

ExprPtr ExpressionParser::literal(Value v, int line) {
  auto e = make(Kind::Literal, line);
  e->value = std::move(v);
  return e;
}

ExprPtr ExpressionParser::parse_primary() {
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
    case Token::Type::Int: {
      errno = 0;
      const long long i = std::strtoll(t.text.c_str(), nullptr, 10);
      if (errno == ERANGE) fail("integer literal beyond 64 bits (Python's ints are unbounded, peft's are not)");
      next();
      return literal(Value::integer(i), t.line);
    }
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

ExprPtr ExpressionParser::parse_postfix(ExprPtr e) {
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

ExprPtr ExpressionParser::parse_subscript(ExprPtr obj, int line) {
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

void ExpressionParser::parse_call_args(Expr& e) {
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

ExprPtr ExpressionParser::parse_call(ExprPtr callee) {
  auto c = make(Kind::Call, cur().line);
  c->args.push_back(std::move(callee));
  parse_call_args(*c);
  return c;
}

ExprPtr ExpressionParser::parse_filter_expr(ExprPtr e) {
  while (true) {
    if (is_op("|")) e = parse_filter(e);
    else if (is_name("is")) e = parse_test(e);
    else if (is_op("(")) e = parse_call(e);
    else return e;
  }
}

std::string ExpressionParser::dotted_name() {
  std::string n = expect_name();
  while (is_op(".") && peek().type == Token::Type::Name) {
    next();
    n += "." + expect_name();
  }
  return n;
}

ExprPtr ExpressionParser::parse_filter(ExprPtr subject) {
  if (subject) expect_op("|");
  auto f = make(Kind::Filter, cur().line);
  f->args.push_back(std::move(subject));
  f->name = dotted_name();
  if (is_op("(")) parse_call_args(*f);
  return f;
}

ExprPtr ExpressionParser::parse_test(ExprPtr subject) {
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

}  // namespace peft::text::detail
