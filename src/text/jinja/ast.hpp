#pragma once
// The syntax tree of a parsed Jinja template (immutable once parsed; shared by ChatTemplate copies
// and by the macros a render defines).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "value.hpp"

namespace peft::text::detail {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    Literal,   // value
    Name,      // name
    List,      // args: items
    Tuple,     // args: items
    Dict,      // args: key0, value0, key1, value1, ...
    GetAttr,   // args[0].name
    GetItem,   // args[0][args[1]]
    Slice,     // args[0][args[1]:args[2]:args[3]] (null = omitted)
    Call,      // args[0](args[1..], kwargs)
    Filter,    // args[0] | name(args[1..], kwargs)
    Test,      // args[0] is [not] name(args[1..], kwargs)
    Unary,     // name ("-", "+", "not") args[0]
    Binary,    // args[0] name args[1]: + - * / // % ** ~ and or
    Compare,   // args[0] ops[0] args[1] ops[1] args[2] ... (== != < <= > >= in notin)
    CondExpr,  // args[0] if args[1] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::shared_ptr<const Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    Data,        // text
    Output,      // {{ expr }}
    If,          // branches (cond null = else)
    For,         // for target in expr [if cond] body [else else_body]
    Set,         // set target = expr
    SetBlock,    // set name %} body {% endset
    Macro,       // macro name(params = defaults) body
    CallBlock,   // call(params) expr %} body {% endcall
    Break,
    Continue,
    Generation,  // {% generation %} body (transformers' AssistantTracker)
    FilterBlock, // filter expr (a Filter expr with a null subject) body
    With,        // with target_i = values_i body
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr cond;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // per param, null when none
  std::vector<ExprPtr> targets;   // With
  std::vector<ExprPtr> values;    // With
  // Macro / CallBlock: whether the body names `varargs`, `kwargs`, `caller` (jinja2 accepts extra
  // positional / keyword arguments / a caller only then).
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

/// Whether `name` appears as a variable anywhere in `body` (nested blocks included).
bool body_references(const Body& body, const std::string& name);

struct Template {
  std::string name;
  Body body;
};

/// Parses `source`; throws peft::ConfigError naming `name` and the line on a syntax error or an
/// unsupported tag.
std::shared_ptr<const Template> parse_template(const std::string& source, const std::string& name);

}  // namespace peft::text::detail
