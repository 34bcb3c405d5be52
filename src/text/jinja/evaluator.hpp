#pragma once
// Renders a parsed template: scopes as jinja2 has them (a for loop's iteration, a macro call and a
// call block each open a scope; `if` does not), loop variables, macros, filters, tests, methods.

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ast.hpp"
#include "value.hpp"

namespace peft::text::detail {

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* lookup(const std::string& name) const;
};
using ScopePtr = std::shared_ptr<Scope>;

class Evaluator {
 public:
  /// `variables` are the render's globals (messages, add_generation_prompt, bos_token, ...).
  Evaluator(const Template& tmpl, const ValueDict& variables);
  /// Breaks the reference cycles a render can create (a macro holds the scope it is defined in).
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  std::string render();
  /// [begin, end) byte offsets of the output of each top-level `{% generation %}` block.
  const std::vector<std::pair<std::size_t, std::size_t>>& generation_spans() const { return spans_; }

  [[noreturn]] void fail(int line, const std::string& field, const std::string& value, const std::string& problem,
                         const std::string& hint = "") const;
  /// Calls a Callable value (a macro, a global function, a bound method).
  Value call(const Value& callee, const CallArgs& args, int line);
  /// Python's iteration: list/tuple items, dict keys, string characters; Undefined is empty.
  std::vector<Value> iterate(const Value& v, int line) const;
  /// jinja2's getattr (`a.b`): a method of a str/dict/list, else the item; Undefined if neither.
  Value get_attr(const Value& obj, const std::string& name, int line);
  /// jinja2's getitem (`a[b]`): the item, else the method named b; Undefined if neither.
  Value get_item(const Value& obj, const Value& key, int line);

 private:
  enum class Flow { Normal, Break, Continue };
  Flow exec(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void exec_macro_def(const Stmt& s, const ScopePtr& scope);
  void exec_call_block(const Stmt& s, const ScopePtr& scope, std::string& out);
  void assign(const Expr& target, const Value& v, const ScopePtr& scope);
  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_binary(const Expr& e, const ScopePtr& scope);
  Value eval_compare(const Expr& e, const ScopePtr& scope);
  Value eval_call(const Expr& e, const ScopePtr& scope);
  CallArgs eval_args(const Expr& e, std::size_t first, const ScopePtr& scope);
  Value make_macro(const Stmt& s, const ScopePtr& defining_scope, const Body& body);
  Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step, int line) const;
  void install_globals(const ValueDict& variables);

  const Template& tmpl_;
  ScopePtr globals_;
  std::string* root_out_ = nullptr;
  int call_depth_ = 0;
  std::vector<ScopePtr> macro_scopes_;  // scopes holding a macro, which holds them back
  std::vector<Value> namespaces_;       // namespace() objects, which may hold themselves  // nested calls (recursive macros), bounded so that C++'s stack is safe
  std::vector<std::pair<std::size_t, std::size_t>> spans_;
};

/// Binary arithmetic with Python semantics (+ - * / // % ** ~); `ok` false on a TypeError.
Value arithmetic(const std::string& op, const Value& a, const Value& b, std::string& error);

}  // namespace peft::text::detail
