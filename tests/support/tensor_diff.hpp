#pragma once
// Tensor comparison shared by the unit tests (support/expect_close.hpp wraps it for gtest) and the
// golden-file checks of peft_conformance: the verdict of torch::allclose / torch::equal, and on a
// mismatch a message with both shapes, the largest difference, where it is and both values there.

#include <ATen/core/Tensor.h>

#include <string>

namespace peft_test {

/// Outcome of a comparison; `message` says why it failed, or how close it came when it passed.
struct TensorDiff {
  bool ok = false;
  bool comparable = false;  ///< same shape, dtype and device: `ok` is an element-wise verdict
  std::string message;
};

/// torch::allclose(a, b, rtol, atol, equal_nan), that is |a - b| <= atol + rtol |b| everywhere,
/// but without broadcasting: a different shape, dtype or device is a mismatch, not an exception.
TensorDiff compare_close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol, bool equal_nan = false);

/// torch::equal(a, b) (NaN differs from NaN); a different shape, dtype or device is a mismatch.
TensorDiff compare_equal(const at::Tensor& a, const at::Tensor& b);

/// max |a - b| over same-shaped tensors, in their own dtype as `(a - b).abs().max()` computes it
/// (NaN where a difference is NaN; 0 for empty tensors).
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

}  // namespace peft_test
