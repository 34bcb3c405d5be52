// Statement execution and expression evaluation. Undefined follows jinja2's default Undefined:
// it prints as "", is false, iterates as empty and has length 0, but an attribute, item, call or
// arithmetic on it raises (here: peft::ConfigError naming the variable and the line).

#include "evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <optional>

#include "builtins.hpp"
#include "errors.hpp"

namespace peft::text::detail {

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return &it->second;
  }
  return nullptr;
}

namespace {
ScopePtr child_scope(const ScopePtr& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}
}  // namespace

Evaluator::Evaluator(const Template& tmpl, const ValueDict& variables) : tmpl_(tmpl) { install_globals(variables); }

Evaluator::~Evaluator() {
  for (auto& scope : macro_scopes_) scope->vars.clear();
  for (auto& ns : namespaces_) ns.namespace_entries().clear();
  globals_->vars.clear();
}

void Evaluator::fail(int line, const std::string& field, const std::string& value, const std::string& problem,
                     const std::string& hint) const {
  throw_template_error(tmpl_.name, line, field, value, problem, hint);
}

void Evaluator::install_globals(const ValueDict& variables) {
  globals_ = std::make_shared<Scope>();
  auto& g = globals_->vars;
  g["raise_exception"] = Value::callable(
      [this](const CallArgs& a) -> Value {
        fail(a.line, "raise_exception", "", argument(a, 0, "message").str(), "the template rejected the conversation");
      },
      "raise_exception");
  g["strftime_now"] = Value::callable(
      [](const CallArgs& a) {
        const std::time_t now = std::time(nullptr);
        std::tm tm_now{};
        localtime_r(&now, &tm_now);
        char buf[256];
        const std::size_t n = std::strftime(buf, sizeof buf, argument(a, 0, "format").str().c_str(), &tm_now);
        return Value::string(std::string(buf, n));
      },
      "strftime_now");
  g["namespace"] = Value::callable(
      [this](const CallArgs& a) {
        ValueDict attrs;
        if (!a.positional.empty() && a.positional[0].kind() == Value::Kind::Dict) attrs = a.positional[0].entries();
        for (const auto& kv : a.keyword) attrs.emplace_back(kv);
        namespaces_.push_back(Value::namespace_object(std::move(attrs)));
        return namespaces_.back();
      },
      "namespace");
  g["dict"] = Value::callable([](const CallArgs& a) { return Value::dict(ValueDict(a.keyword.begin(), a.keyword.end())); },
                              "dict");
  g["range"] = Value::callable(
      [this](const CallArgs& a) {
        std::int64_t start = 0, stop = 0, step = 1;
        for (const auto& v : a.positional)
          if (!v.is_int() && !v.is_bool()) fail(a.line, "range", v.repr(), "range() takes integers");
        if (a.positional.size() == 1) {
          stop = a.positional[0].as_int();
        } else if (a.positional.size() >= 2) {
          start = a.positional[0].as_int();
          stop = a.positional[1].as_int();
          if (a.positional.size() > 2) step = a.positional[2].as_int();
        }
        if (step == 0) fail(a.line, "range", "step=0", "range() arg 3 must not be zero");
        ValueList out;
        for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
          if (out.size() >= 100000) fail(a.line, "range", std::to_string(stop), "range too big (the sandbox allows 100000 items)");
          out.push_back(Value::integer(i));
        }
        return Value::list(std::move(out));
      },
      "range");
  for (const auto& kv : variables) g[kv.first] = kv.second;
}

std::string Evaluator::render() {
  std::string out;
  root_out_ = &out;
  exec(tmpl_.body, child_scope(globals_), out);
  return out;
}

std::vector<Value> Evaluator::iterate(const Value& v, int line) const {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List:
    case Value::Kind::Tuple: return v.items();
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& kv : v.entries()) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      const auto cps = to_code_points(v.as_string());
      for (std::size_t i = 0; i < cps.size(); ++i) chars.push_back(Value::string(from_code_points(cps, i, i + 1)));
      return chars;
    }
    default: fail(line, "iteration", v.repr(), "'" + v.type_name() + "' object is not iterable");
  }
}

Value Evaluator::get_attr(const Value& obj, const std::string& name, int line) {
  if (obj.is_undefined())
    fail(line, "attribute", name, "'" + obj.as_string() + "' is undefined (jinja2 raises on an attribute of an undefined value)",
         "test it first: `x is defined`");
  if (obj.kind() != Value::Kind::Namespace && has_method(obj, name)) {
    const Value self = obj;
    return Value::callable([this, self, name](const CallArgs& a) { return call_method(*this, self, name, a); }, name);
  }
  if (const Value* v = obj.find(name)) return *v;
  return Value::undefined(name);
}

Value Evaluator::get_item(const Value& obj, const Value& key, int line) {
  if (obj.is_undefined())
    fail(line, "subscript", key.repr(), "'" + obj.as_string() + "' is undefined", "test it first: `x is defined`");
  if (obj.is_mapping() && key.is_string()) {
    if (const Value* v = obj.find(key.as_string())) return *v;
  } else if ((obj.is_sequence() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    std::int64_t i = key.as_int();
    if (obj.is_string()) {
      const auto cps = to_code_points(obj.as_string());
      const auto n = static_cast<std::int64_t>(cps.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::string(from_code_points(cps, static_cast<std::size_t>(i), static_cast<std::size_t>(i) + 1));
    } else {
      const auto n = static_cast<std::int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[static_cast<std::size_t>(i)];
    }
  }
  if (key.is_string() && obj.kind() != Value::Kind::Namespace && has_method(obj, key.as_string())) return get_attr(obj, key.as_string(), line);
  return Value::undefined(key.is_string() ? key.as_string() : key.repr());
}

Value Evaluator::slice(const Value& obj, const Value& start, const Value& stop, const Value& step, int line) const {
  if (!obj.is_sequence() && !obj.is_string()) fail(line, "slice", obj.repr(), "'" + obj.type_name() + "' object is not subscriptable");
  for (const Value* v : {&start, &stop, &step})
    if (!v->is_undefined() && !v->is_none() && !v->is_int() && !v->is_bool())
      fail(line, "slice", v->repr(), "slice indices must be integers or None");
  const std::vector<char32_t> cps = obj.is_string() ? to_code_points(obj.as_string()) : std::vector<char32_t>{};
  const auto n = static_cast<std::int64_t>(obj.is_string() ? cps.size() : obj.items().size());
  const std::int64_t st = (step.is_int() || step.is_bool()) ? step.as_int() : 1;
  if (st == 0) fail(line, "slice", "step=0", "slice step cannot be zero");
  // Python's slice.indices().
  auto clamp = [&](const Value& v, std::int64_t dflt) {
    if (!v.is_int() && !v.is_bool()) return dflt;
    std::int64_t i = v.as_int();
    if (i < 0) {
      i += n;
      if (i < 0) i = st < 0 ? -1 : 0;
    } else if (i >= n) {
      i = st < 0 ? n - 1 : n;
    }
    return i;
  };
  const std::int64_t b = clamp(start, st < 0 ? n - 1 : 0);
  const std::int64_t e = clamp(stop, st < 0 ? -1 : n);
  std::string s;
  ValueList items;
  for (std::int64_t i = b; st > 0 ? i < e : i > e; i += st) {
    if (obj.is_string()) append_utf8(s, cps[static_cast<std::size_t>(i)]);
    else items.push_back(obj.items()[static_cast<std::size_t>(i)]);
  }
  if (obj.is_string()) return Value::string(s);
  return Value::list(std::move(items), obj.kind());
}

// ---- statements ----

Evaluator::Flow Evaluator::exec(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const auto& sp : body) {
    const Stmt& s = *sp;
    switch (s.kind) {
      case Stmt::Kind::Data: out += s.text; break;
      case Stmt::Kind::Output: out += eval(*s.expr, scope).str(); break;
      case Stmt::Kind::If:
        for (const auto& br : s.branches) {
          if (br.first && !eval(*br.first, scope).truthy()) continue;
          const Flow f = exec(br.second, scope, out);
          if (f != Flow::Normal) return f;
          break;
        }
        break;
      case Stmt::Kind::For: exec_for(s, scope, out); break;
      case Stmt::Kind::Set: assign(*s.target, eval(*s.expr, scope), scope); break;
      case Stmt::Kind::SetBlock: {
        std::string text;
        exec(s.body, child_scope(scope), text);
        assign(*s.target, Value::string(text), scope);
        break;
      }
      case Stmt::Kind::Macro: exec_macro_def(s, scope); break;
      case Stmt::Kind::CallBlock: exec_call_block(s, scope, out); break;
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Generation: {  // a call block in jinja2: its `set`s stay inside
        const std::size_t begin = out.size();
        const Flow f = exec(s.body, child_scope(scope), out);
        if (&out == root_out_) spans_.emplace_back(begin, out.size());
        if (f != Flow::Normal) return f;
        break;
      }
      case Stmt::Kind::FilterBlock: {
        std::string text;
        exec(s.body, child_scope(scope), text);
        // Apply the chain innermost-first: the innermost Filter has a null subject.
        std::vector<const Expr*> chain;
        for (const Expr* f = s.expr.get(); f; f = f->args[0].get()) chain.insert(chain.begin(), f);
        Value v = Value::string(text);
        for (const Expr* f : chain) v = apply_filter(*this, f->name, v, eval_args(*f, 1, scope));
        out += v.str();
        break;
      }
      case Stmt::Kind::With: {
        auto inner = child_scope(scope);
        for (std::size_t i = 0; i < s.targets.size(); ++i) assign(*s.targets[i], eval(*s.values[i], scope), inner);
        const Flow f = exec(s.body, inner, out);
        if (f != Flow::Normal) return f;
        break;
      }
    }
  }
  return Flow::Normal;
}

Evaluator::Flow Evaluator::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  std::vector<Value> items = iterate(eval(*s.expr, scope), s.line);
  if (s.cond) {  // `for x in xs if cond`: loop.* count the kept items only
    std::vector<Value> kept;
    for (const auto& item : items) {
      auto probe = child_scope(scope);
      assign(*s.target, item, probe);
      if (eval(*s.cond, probe).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const auto n = static_cast<std::int64_t>(items.size());
  // loop.changed(*args): true on the first call and whenever the arguments differ from the last.
  auto last_changed = std::make_shared<std::optional<Value>>();
  const Value changed = Value::callable(
      [last_changed](const CallArgs& a) {
        const Value now = Value::tuple(a.positional);
        if (*last_changed && values_equal(**last_changed, now)) return Value::boolean(false);
        *last_changed = now;
        return Value::boolean(true);
      },
      "changed");
  for (std::int64_t i = 0; i < n; ++i) {
    auto iter_scope = child_scope(scope);
    assign(*s.target, items[static_cast<std::size_t>(i)], iter_scope);
    ValueDict loop = {
        {"index", Value::integer(i + 1)},
        {"index0", Value::integer(i)},
        {"revindex", Value::integer(n - i)},
        {"revindex0", Value::integer(n - i - 1)},
        {"first", Value::boolean(i == 0)},
        {"last", Value::boolean(i == n - 1)},
        {"length", Value::integer(n)},
        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
    };
    if (i > 0) loop.emplace_back("previtem", items[static_cast<std::size_t>(i - 1)]);
    if (i + 1 < n) loop.emplace_back("nextitem", items[static_cast<std::size_t>(i + 1)]);
    loop.emplace_back("cycle", Value::callable(
                                   [this, i](const CallArgs& a) {
                                     if (a.positional.empty()) fail(a.line, "loop.cycle", "", "no items for cycling given");
                                     return a.positional[static_cast<std::size_t>(i) % a.positional.size()];
                                   },
                                   "cycle"));
    loop.emplace_back("changed", changed);
    iter_scope->vars["loop"] = Value::dict(std::move(loop));
    if (exec(s.body, iter_scope, out) == Flow::Break) break;
  }
  if (n == 0 && !s.else_body.empty()) exec(s.else_body, child_scope(scope), out);
  return Flow::Normal;
}

void Evaluator::assign(const Expr& target, const Value& v, const ScopePtr& scope) {
  if (target.kind == Expr::Kind::Name) {
    scope->vars[target.name] = v;
    return;
  }
  if (target.kind == Expr::Kind::GetAttr) {  // {% set ns.attr = v %}
    const std::string& ns_name = target.args[0]->name;
    const Value* ns = scope->lookup(ns_name);
    if (!ns || ns->kind() != Value::Kind::Namespace)
      fail(target.line, "set", ns_name + "." + target.name, "cannot assign attribute on non-namespace object",
           "create it with `{% set " + ns_name + " = namespace() %}`");
    for (auto& kv : ns->namespace_entries())
      if (kv.first == target.name) {
        kv.second = v;
        return;
      }
    ns->namespace_entries().emplace_back(target.name, v);
    return;
  }
  // Tuple unpacking.
  const std::vector<Value> items = iterate(v, target.line);
  if (items.size() != target.args.size())
    fail(target.line, "unpacking", v.repr(),
         items.size() < target.args.size() ? "not enough values to unpack" : "too many values to unpack");
  for (std::size_t i = 0; i < items.size(); ++i) assign(*target.args[i], items[i], scope);
}

void Evaluator::exec_macro_def(const Stmt& s, const ScopePtr& scope) {
  scope->vars[s.text] = make_macro(s, scope, s.body);
  macro_scopes_.push_back(scope);
}

// A macro (or a call block's `caller`): binds positional, keyword and default arguments in a new
// scope under the defining scope and renders the body to a string.
Value Evaluator::make_macro(const Stmt& s, const ScopePtr& defining_scope, const Body& body_ref) {
  const Stmt* def = &s;
  const Body* body = &body_ref;
  return Value::callable(
      [this, def, body, defining_scope](const CallArgs& a) {
        // jinja2's Macro call: positional, then keyword, then default arguments; extra ones only
        // where the body uses varargs / kwargs / caller, else TypeError.
        auto scope = child_scope(defining_scope);
        const auto& params = def->params;
        if (a.positional.size() > params.size() && !def->uses_varargs)
          fail(a.line, "macro", def->text, "macro '" + def->text + "' takes not more than " + std::to_string(params.size()) +
                                                " argument(s)");
        ValueList varargs;
        for (std::size_t i = 0; i < a.positional.size(); ++i) {
          if (i < params.size()) scope->vars[params[i]] = a.positional[i];
          else varargs.push_back(a.positional[i]);
        }
        ValueDict kwargs;
        for (const auto& kv : a.keyword) {
          const auto it = std::find(params.begin(), params.end(), kv.first);
          if (it != params.end()) {
            if (static_cast<std::size_t>(it - params.begin()) < a.positional.size())
              fail(a.line, "macro", def->text, "macro '" + def->text + "' got multiple values for argument '" + kv.first + "'");
            scope->vars[kv.first] = kv.second;
          } else if (kv.first == "caller" && def->uses_caller) {
            scope->vars["caller"] = kv.second;
          } else if (def->uses_kwargs) {
            kwargs.emplace_back(kv);
          } else {
            fail(a.line, "macro", def->text, "macro '" + def->text + "' takes no keyword argument '" + kv.first + "'");
          }
        }
        for (std::size_t i = 0; i < params.size(); ++i) {
          if (scope->vars.count(params[i])) continue;
          scope->vars[params[i]] = def->defaults[i] ? eval(*def->defaults[i], scope) : Value::undefined(params[i]);
        }
        if (def->uses_varargs) scope->vars["varargs"] = Value::tuple(std::move(varargs));
        if (def->uses_kwargs) scope->vars["kwargs"] = Value::dict(std::move(kwargs));
        std::string out;
        exec(*body, scope, out);
        return Value::string(out);
      },
      s.text);
}

void Evaluator::exec_call_block(const Stmt& s, const ScopePtr& scope, std::string& out) {
  // As jinja2 does: `caller` (the block body, rendered in the call site's scope with the block's own
  // parameters) is passed to the macro as the keyword argument `caller`.
  const Expr& call_expr = *s.expr;
  const Value callee = eval(*call_expr.args[0], scope);
  CallArgs args = eval_args(call_expr, 1, scope);
  args.keyword.emplace_back("caller", make_macro(s, scope, s.body));
  out += call(callee, args, s.line).str();
}

}  // namespace peft::text::detail
