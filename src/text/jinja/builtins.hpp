#pragma once
// jinja2's built-in filters and tests and the Python str/dict/list methods templates call.

#include <string>

#include "evaluator.hpp"

namespace peft::text::detail {

/// `subject | name(args)`; fails (ConfigError naming the line) on an unknown filter.
Value apply_filter(Evaluator& ev, const std::string& name, const Value& subject, const CallArgs& args);
/// `subject is name(args)`; fails on an unknown test.
bool apply_test(Evaluator& ev, const std::string& name, const Value& subject, const CallArgs& args);
/// Whether `obj.name(...)` is a method this interpreter implements for obj's type.
bool has_method(const Value& obj, const std::string& name);
/// Calls method `name` of `obj` (str: strip, split, startswith, ...; dict: items, get, ...).
Value call_method(Evaluator& ev, const Value& obj, const std::string& name, const CallArgs& args);

/// Argument `index` (or keyword `keyword`) of a call, `fallback` when absent.
Value argument(const CallArgs& args, std::size_t index, const char* keyword, Value fallback = Value());

}  // namespace peft::text::detail
