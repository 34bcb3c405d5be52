// The statement parser: `{% ... %}` tags with their bodies (if/elif/else, for/else, set and block
// set, macro, call, break/continue, generation, filter, with); anything else is a ConfigError.

#include <set>

#include "parser.hpp"

namespace peft::text::detail {
namespace {

class Parser : public ExpressionParser {
 public:
  using ExpressionParser::ExpressionParser;

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
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
    const Nesting guard(*this);
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
      note_special_names(*s);
    } else if (tag == "call") {
      s->kind = Stmt::Kind::CallBlock;
      s->text = "caller";
      if (is_op("(")) parse_signature(*s);
      s->expr = parse_expression(true);
      if (s->expr->kind != Kind::Call) fail("expected a macro call");
      expect_block_end();
      s->body = parse_block_until("endcall");
      note_special_names(*s);
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

  static void note_special_names(Stmt& s) {
    s.uses_varargs = body_references(s.body, "varargs");
    s.uses_kwargs = body_references(s.body, "kwargs");
    s.uses_caller = body_references(s.body, "caller");
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

};

bool expr_references(const ExprPtr& e, const std::string& name) {
  if (!e) return false;
  if (e->kind == Expr::Kind::Name && e->name == name) return true;
  for (const auto& a : e->args)
    if (expr_references(a, name)) return true;
  for (const auto& kv : e->kwargs)
    if (expr_references(kv.second, name)) return true;
  return false;
}

}  // namespace

bool body_references(const Body& body, const std::string& name) {
  for (const auto& s : body) {
    for (const ExprPtr* e : {&s->expr, &s->target, &s->cond})
      if (expr_references(*e, name)) return true;
    for (const auto& br : s->branches)
      if (expr_references(br.first, name) || body_references(br.second, name)) return true;
    for (const auto* list : {&s->defaults, &s->targets, &s->values})
      for (const auto& e : *list)
        if (expr_references(e, name)) return true;
    if (body_references(s->body, name) || body_references(s->else_body, name)) return true;
  }
  return false;
}

std::shared_ptr<const Template> parse_template(const std::string& source, const std::string& name) {
  auto t = std::make_shared<Template>();
  t->name = name;
  t->body = Parser(tokenize(source, name), name).parse_all();
  return t;
}

}  // namespace peft::text::detail
