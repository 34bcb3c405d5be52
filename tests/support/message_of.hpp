#pragma once
/// The message of the exception a test expects.

#include <gtest/gtest.h>

#include <exception>
#include <string>

namespace peft_test {

/// Runs `f` expecting an exception of type E and returns its message; records a failure otherwise.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "no exception thrown";
  return {};
}

}  // namespace peft_test
