#include "support/tensor_diff.hpp"

#include <ATen/ATen.h>

#include <limits>
#include <sstream>

namespace peft_test {
namespace {

/// Why `a` and `b` cannot be compared element by element, or "" when they can.
std::string incomparable(const at::Tensor& a, const at::Tensor& b) {
  std::ostringstream s;
  if (!a.defined() || !b.defined())
    s << "undefined tensor (" << (a.defined() ? "b" : "a") << ")";
  else if (a.sizes() != b.sizes())
    s << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  else if (a.scalar_type() != b.scalar_type())
    s << "dtypes differ: " << a.scalar_type() << " vs " << b.scalar_type() << " (shape " << a.sizes() << ")";
  else if (a.device() != b.device())
    s << "devices differ: " << a.device() << " vs " << b.device() << " (shape " << a.sizes() << ")";
  return s.str();
}

std::string index_string(std::int64_t flat, at::IntArrayRef sizes) {
  std::vector<std::int64_t> idx(sizes.size());
  for (std::size_t d = sizes.size(); d-- > 0;) {
    idx[d] = flat % sizes[d];
    flat /= sizes[d];
  }
  std::ostringstream s;
  s << '[';
  for (std::size_t d = 0; d < idx.size(); ++d) s << (d ? ", " : "") << idx[d];
  s << ']';
  return s.str();
}

/// The largest |a - b| (NaN counts as largest), where it is and both values there; with `bad`
/// (elementwise mismatches), also how many there are and the worst of them if it lies elsewhere.
std::string describe(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bad) {
  std::ostringstream s;
  s.precision(10);
  s << "shape " << a.sizes() << ", " << a.scalar_type();
  const std::int64_t n = a.numel();
  if (n == 0) return s.str() + ", no elements";
  const at::Tensor ad = a.detach().to(at::kCPU, at::kDouble).reshape(-1);
  const at::Tensor bd = b.detach().to(at::kCPU, at::kDouble).reshape(-1);
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor diff = (ad - bd).abs();
  const at::Tensor rank = diff.nan_to_num(inf, inf, inf);
  auto at_index = [&](std::int64_t i) {
    std::ostringstream e;
    e.precision(10);
    e << index_string(i, a.sizes()) << " (a = " << ad[i].item<double>() << ", b = " << bd[i].item<double>() << ")";
    return e.str();
  };
  const std::int64_t worst = rank.argmax().item<std::int64_t>();
  s << "; max |a - b| = " << diff[worst].item<double>() << " at " << at_index(worst);
  if (bad.defined()) {
    const at::Tensor flat_bad = bad.to(at::kCPU).reshape(-1);
    s << "; " << flat_bad.sum().item<std::int64_t>() << " of " << n << " elements differ";
    const std::int64_t worst_bad = at::where(flat_bad, rank, at::full({}, -1.0, rank.options())).argmax().item<std::int64_t>();
    if (worst_bad != worst && flat_bad[worst_bad].item<bool>()) s << ", the largest of them at " << at_index(worst_bad);
  }
  return s.str();
}

}  // namespace

TensorDiff compare_close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol, bool equal_nan) {
  std::ostringstream tol;
  tol << " (rtol " << rtol << ", atol " << atol << (equal_nan ? ", NaN == NaN" : "") << ")";
  if (std::string why = incomparable(a, b); !why.empty()) return {false, false, why + tol.str()};
  // The verdict is torch::allclose's: isclose(...).all().
  const at::Tensor near = at::isclose(a.detach(), b.detach(), rtol, atol, equal_nan);
  const bool ok = near.all().item<bool>();
  return {ok, true, describe(a, b, ok ? at::Tensor() : near.logical_not()) + tol.str()};
}

TensorDiff compare_equal(const at::Tensor& a, const at::Tensor& b) {
  if (std::string why = incomparable(a, b); !why.empty()) return {false, false, why};
  const bool ok = at::equal(a.detach(), b.detach());
  return {ok, true, describe(a, b, ok ? at::Tensor() : a.detach().ne(b.detach()))};
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.sizes() == b.sizes(), "max_abs_diff: shapes differ: ", a.sizes(), " vs ", b.sizes());
  if (a.numel() == 0) return 0.0;
  // In the tensors' own (promoted) dtype, as `(a - b).abs().max()` written out would compute it.
  auto as_number = [](const at::Tensor& t) { return t.scalar_type() == at::kBool ? t.to(at::kInt) : t; };
  return (as_number(a.detach()) - as_number(b.detach())).abs().max().item<double>();
}

}  // namespace peft_test
