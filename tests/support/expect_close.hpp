#pragma once
// gtest assertions on tensors for the unit tests, with what went wrong in the failure message
// (both shapes, the largest difference, its index and both values there):
//   EXPECT_TRUE(peft_test::close(y, want, 1e-5, 1e-6));  // torch::allclose's verdict, same defaults
//   EXPECT_TRUE(peft_test::not_close(y, before));        // "this must change the output"
//   EXPECT_TRUE(peft_test::equal(y, want));              // torch::equal's verdict
// Unlike torch::allclose nothing broadcasts: tensors of another shape, dtype or device mismatch.

#include <gtest/gtest.h>

#include "support/tensor_diff.hpp"

namespace peft_test {

namespace detail {
inline ::testing::AssertionResult to_assertion(const TensorDiff& d) {
  return (d.ok ? ::testing::AssertionSuccess() : ::testing::AssertionFailure()) << d.message;
}
}  // namespace detail

/// torch::allclose(a, b, rtol, atol, equal_nan) (|a - b| <= atol + rtol |b|) without broadcasting.
inline ::testing::AssertionResult close(const at::Tensor& a, const at::Tensor& b, double rtol = 1e-5,
                                        double atol = 1e-8, bool equal_nan = false) {
  return detail::to_assertion(compare_close(a, b, rtol, atol, equal_nan));
}

/// The negation of close() for tensors of one shape, dtype and device (anything else fails too):
/// some element differs by more than atol + rtol |b|.
inline ::testing::AssertionResult not_close(const at::Tensor& a, const at::Tensor& b, double rtol = 1e-5,
                                            double atol = 1e-8) {
  const TensorDiff d = compare_close(a, b, rtol, atol);
  if (!d.comparable) return ::testing::AssertionFailure() << d.message;
  return (d.ok ? ::testing::AssertionFailure() << "the tensors are close: " : ::testing::AssertionSuccess())
         << d.message;
}

/// torch::equal(a, b): same shape, dtype and values.
inline ::testing::AssertionResult equal(const at::Tensor& a, const at::Tensor& b) {
  return detail::to_assertion(compare_equal(a, b));
}

}  // namespace peft_test
