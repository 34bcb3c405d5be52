#pragma once
/// Python's repr() of a float, shared by the JSON writer and the chat-template interpreter.

#include <string>

namespace peft::detail {

/// Shortest round-trip digits as Python prints them: `0.5`, `2.0`, `1e-05`, `1e+16`; NaN and the
/// infinities as json.dumps writes them (`NaN`, `Infinity`). Defined in peft::format.
std::string python_float_repr(double v);

}  // namespace peft::detail
