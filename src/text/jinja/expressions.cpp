// Expression evaluation with Python's operator semantics (int/float promotion, true division,
// floor division and modulo with the divisor's sign, str/list concatenation and repetition,
// `and`/`or` returning an operand, chained comparisons).

#include <cmath>

#include "builtins.hpp"
#include "evaluator.hpp"

namespace peft::text::detail {
namespace {

bool is_numeric(const Value& v) { return v.is_number(); }
bool any_float(const Value& a, const Value& b) {
  return a.kind() == Value::Kind::Float || b.kind() == Value::Kind::Float;
}

Value repeat(const Value& seq, std::int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (std::int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value::string(out);
  }
  ValueList out;
  for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out), seq.kind());
}

}  // namespace

Value arithmetic(const std::string& op, const Value& a, const Value& b, std::string& error) {
  if (op == "~") return Value::string(a.str() + b.str());
  if (a.is_undefined() || b.is_undefined()) {
    error = "'" + (a.is_undefined() ? a : b).as_string() + "' is undefined";
    return Value();
  }
  const char o = op[0];
  if (is_numeric(a) && is_numeric(b)) {
    const bool f = any_float(a, b);
    // Python's ints are unbounded, ours are 64-bit: an overflow is an error, never a wrong number.
    const char* const overflow = "integer overflow (peft's templates compute with 64-bit integers)";
    std::int64_t r = 0;
    if (op == "+") {
      if (f) return Value::floating(a.as_double() + b.as_double());
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) error = overflow;
      return Value::integer(r);
    }
    if (op == "-") {
      if (f) return Value::floating(a.as_double() - b.as_double());
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) error = overflow;
      return Value::integer(r);
    }
    if (op == "*") {
      if (f) return Value::floating(a.as_double() * b.as_double());
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) error = overflow;
      return Value::integer(r);
    }
    if (op == "**") {
      if (!f && b.as_int() >= 0) {  // by squaring
        r = 1;
        std::int64_t base = a.as_int();
        for (std::int64_t e = b.as_int(); e > 0 && error.empty(); e >>= 1) {
          if ((e & 1) && __builtin_mul_overflow(r, base, &r)) error = overflow;
          if (e > 1 && __builtin_mul_overflow(base, base, &base)) error = overflow;
        }
        return Value::integer(r);
      }
      return Value::floating(std::pow(a.as_double(), b.as_double()));
    }
    if (b.as_double() == 0.0) {
      error = op == "/" ? "division by zero" : "integer division or modulo by zero";
      return Value();
    }
    if (op == "/") return Value::floating(a.as_double() / b.as_double());
    if (!f) {
      const std::int64_t x = a.as_int(), y = b.as_int();
      std::int64_t q = x / y, rem = x % y;
      if (rem != 0 && ((rem < 0) != (y < 0))) {
        --q;
        rem += y;
      }
      return op == "//" ? Value::integer(q) : Value::integer(rem);
    }
    const double x = a.as_double(), y = b.as_double();
    if (op == "//") return Value::floating(std::floor(x / y));
    double rem = std::fmod(x, y);
    if (rem != 0 && ((rem < 0) != (y < 0))) rem += y;
    return Value::floating(rem);
  }
  if (o == '+' && a.is_string() && b.is_string()) return Value::string(a.as_string() + b.as_string());
  if (o == '+' && a.is_sequence() && a.kind() == b.kind()) {
    ValueList out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    return Value::list(std::move(out), a.kind());
  }
  if (op == "*" && (a.is_string() || a.is_sequence()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
  if (op == "*" && (b.is_string() || b.is_sequence()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
  error = "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'";
  if (op == "%" && a.is_string()) error += " (printf-style string formatting is not supported)";
  return Value();
}

Value Evaluator::eval(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case Expr::Kind::Literal: return e.value;
    case Expr::Kind::Name: {
      const Value* v = scope->lookup(e.name);
      return v ? *v : Value::undefined(e.name);
    }
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      ValueList items;
      for (const auto& a : e.args) items.push_back(eval(*a, scope));
      return Value::list(std::move(items), e.kind == Expr::Kind::List ? Value::Kind::List : Value::Kind::Tuple);
    }
    case Expr::Kind::Dict: {
      ValueDict entries;
      for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
        const Value k = eval(*e.args[i], scope);
        if (!k.is_string()) fail(e.line, "dict literal", k.repr(), "only string keys are supported");
        Value v = eval(*e.args[i + 1], scope);
        bool replaced = false;
        for (auto& kv : entries)
          if (kv.first == k.as_string()) {
            kv.second = v;
            replaced = true;
          }
        if (!replaced) entries.emplace_back(k.as_string(), std::move(v));
      }
      return Value::dict(std::move(entries));
    }
    case Expr::Kind::GetAttr: return get_attr(eval(*e.args[0], scope), e.name, e.line);
    case Expr::Kind::GetItem: return get_item(eval(*e.args[0], scope), eval(*e.args[1], scope), e.line);
    case Expr::Kind::Slice: {
      const Value obj = eval(*e.args[0], scope);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        if (e.args[static_cast<std::size_t>(i) + 1]) parts[i] = eval(*e.args[static_cast<std::size_t>(i) + 1], scope);
      return slice(obj, parts[0], parts[1], parts[2], e.line);
    }
    case Expr::Kind::Call: return eval_call(e, scope);
    case Expr::Kind::Filter: {
      const Value subject = eval(*e.args[0], scope);
      return apply_filter(*this, e.name, subject, eval_args(e, 1, scope));
    }
    case Expr::Kind::Test: {
      const Value subject = eval(*e.args[0], scope);
      return Value::boolean(apply_test(*this, e.name, subject, eval_args(e, 1, scope)) != e.negated);
    }
    case Expr::Kind::Unary: {
      const Value v = eval(*e.args[0], scope);
      if (e.name == "not") return Value::boolean(!v.truthy());
      if (!v.is_number()) fail(e.line, "unary " + e.name, v.repr(), "bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.is_bool() ? Value::integer(v.as_int()) : v;
      return v.kind() == Value::Kind::Float ? Value::floating(-v.as_double()) : Value::integer(-v.as_int());
    }
    case Expr::Kind::Binary: return eval_binary(e, scope);
    case Expr::Kind::Compare: return eval_compare(e, scope);
    case Expr::Kind::CondExpr:
      if (eval(*e.args[1], scope).truthy()) return eval(*e.args[0], scope);
      return e.args[2] ? eval(*e.args[2], scope) : Value::undefined();
  }
  return Value();
}

Value Evaluator::eval_binary(const Expr& e, const ScopePtr& scope) {
  const Value a = eval(*e.args[0], scope);
  if (e.name == "and") return a.truthy() ? eval(*e.args[1], scope) : a;
  if (e.name == "or") return a.truthy() ? a : eval(*e.args[1], scope);
  const Value b = eval(*e.args[1], scope);
  std::string error;
  Value r = arithmetic(e.name, a, b, error);
  if (!error.empty()) fail(e.line, "operator " + e.name, a.repr() + " " + e.name + " " + b.repr(), error);
  return r;
}

Value Evaluator::eval_compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.args[0], scope);
  for (std::size_t i = 0; i < e.ops.size(); ++i) {
    const Value right = eval(*e.args[i + 1], scope);
    const std::string& op = e.ops[i];
    bool result = false;
    if (op == "==" || op == "!=") {
      result = values_equal(left, right) == (op == "==");
    } else if (op == "in" || op == "notin") {
      const Value r = apply_test(*this, "in", left, CallArgs{{right}, {}, e.line}) ? Value::boolean(true) : Value::boolean(false);
      result = r.as_bool() == (op == "in");
    } else {
      bool ok = true;
      const int c = compare_values(left, right, ok);
      if (!ok)
        fail(e.line, "comparison", left.repr() + " " + op + " " + right.repr(),
             "'" + op + "' not supported between instances of '" + left.type_name() + "' and '" + right.type_name() + "'");
      result = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!result) return Value::boolean(false);
    left = right;
  }
  return Value::boolean(true);
}

CallArgs Evaluator::eval_args(const Expr& e, std::size_t first, const ScopePtr& scope) {
  CallArgs args;
  args.line = e.line;
  for (std::size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], scope));
  for (const auto& kv : e.kwargs) args.keyword.emplace_back(kv.first, eval(*kv.second, scope));
  return args;
}

Value Evaluator::eval_call(const Expr& e, const ScopePtr& scope) {
  const Value callee = eval(*e.args[0], scope);
  return call(callee, eval_args(e, 1, scope), e.line);
}

Value Evaluator::call(const Value& callee, const CallArgs& args, int line) {
  if (callee.kind() != Value::Kind::Callable) {
    if (callee.is_undefined())
      fail(line, "call", callee.as_string(), "'" + callee.as_string() + "' is undefined",
           "a function or method this interpreter does not provide? see docs/chat_templates.md");
    fail(line, "call", callee.repr(), "'" + callee.type_name() + "' object is not callable");
  }
  // Python stops runaway recursion at ~1000 frames (a few hundred macro levels); so do we, before
  // the C++ stack runs out.
  constexpr int kMaxCallDepth = 200;
  if (call_depth_ >= kMaxCallDepth)
    fail(line, "call", callee.as_string(), "calls nested deeper than " + std::to_string(kMaxCallDepth) + " (runaway recursion?)");
  struct DepthScope {
    int& depth;
    explicit DepthScope(int& d) : depth(d) { ++depth; }
    ~DepthScope() { --depth; }
  } depth_scope(call_depth_);
  CallArgs a = args;
  a.line = line;
  return callee.function()(a);
}

}  // namespace peft::text::detail
