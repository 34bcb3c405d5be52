#pragma once
/// torch.svd_lowrank (Halko et al. 2009, Alg. 4.4 + 5.1) ported from torch 1.13's torch/_lowrank.py,
/// so that a run after torch::manual_seed draws the same randn and returns PEFT's factors
/// ("pissa_niter_N", EVA's incremental PCA).
///
///   auto [U, S, V] = peft::svd_lowrank(A, q, niter);   // A [*, m, n] -> U [*, m, q], S [*, q], V [*, n, q]
///   A ~= U diag(S) V^T          (of A - M when M is given)
///
/// Randomness: exactly one `randn({rows, q})` in A's floating dtype (fp32 for integer inputs) on
/// A's device, from that device's default generator unless `generator` is given; the same call
/// as Python's, in the same place, so the results equal torch.svd_lowrank's.

#include <torch/types.h>

#include <tuple>

namespace peft {

namespace detail {
/// torch._linalg_utils.get_floating_dtype: floating inputs keep their dtype, others use fp32.
inline torch::ScalarType lowrank_floating_dtype(const torch::Tensor& a) {
  return torch::isFloatingType(a.scalar_type()) ? a.scalar_type() : torch::kFloat32;
}

inline torch::Tensor lowrank_randn(std::int64_t rows, std::int64_t cols, const torch::Tensor& like,
                                   const at::Generator* generator) {
  const auto opts = torch::TensorOptions().dtype(lowrank_floating_dtype(like)).device(like.device());
  if (generator) return at::randn({rows, cols}, *generator, opts);
  return torch::randn({rows, cols}, opts);
}

inline torch::Tensor reduced_q(const torch::Tensor& x) { return std::get<0>(torch::linalg_qr(x)); }
}  // namespace detail

/// torch._lowrank.get_approximate_basis: Q [*, m, q] with orthonormal columns such that
/// Q Q^T (A - M) ~= A - M. Draws R = randn(n, q), then QR of (A - M) R and `niter` rounds of
/// QR((A - M)^T Q), QR((A - M) Q). M (optional) broadcasts against A.
inline torch::Tensor get_approximate_basis(const torch::Tensor& A, std::int64_t q, std::int64_t niter = 2,
                                           const torch::Tensor& M = {},
                                           const at::Generator* generator = nullptr) {
  const std::int64_t n = A.size(-1);
  const torch::Tensor R = detail::lowrank_randn(n, q, A, generator);
  const torch::Tensor A_H = A.transpose(-2, -1);
  torch::Tensor Q;
  // Same expression shapes as Python (A@R - M@R, not (A-M)@R) for identical rounding.
  if (!M.defined()) {
    Q = detail::reduced_q(torch::matmul(A, R));
    for (std::int64_t i = 0; i < niter; ++i) {
      Q = detail::reduced_q(torch::matmul(A_H, Q));
      Q = detail::reduced_q(torch::matmul(A, Q));
    }
  } else {
    const torch::Tensor M_H = M.transpose(-2, -1);
    Q = detail::reduced_q(torch::matmul(A, R) - torch::matmul(M, R));
    for (std::int64_t i = 0; i < niter; ++i) {
      Q = detail::reduced_q(torch::matmul(A_H, Q) - torch::matmul(M_H, Q));
      Q = detail::reduced_q(torch::matmul(A, Q) - torch::matmul(M, Q));
    }
  }
  return Q;
}

/// torch.svd_lowrank(A, q, niter, M): approximate rank-q SVD of A [*, m, n] (of A - M when M is
/// defined). Returns (U [*, m, q], S [*, q] descending, V [*, n, q]); A ~= U diag(S) V^T.
/// q must be <= min(m, n). Real tensors only (conjugation is the identity).
inline std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> svd_lowrank(
    const torch::Tensor& A, std::int64_t q = 6, std::int64_t niter = 2, const torch::Tensor& M = {},
    const at::Generator* generator = nullptr) {
  const std::int64_t m = A.size(-2);
  const std::int64_t n = A.size(-1);
  const torch::Tensor A_t = A.transpose(-2, -1);
  const torch::Tensor M_t = M.defined() ? M.transpose(-2, -1) : torch::Tensor();
  torch::Tensor U, S, Vh, V;
  // torch 1.13 works on the transpose when A is wide or when that keeps V small (n > q): the
  // branch decides which dimension the random matrix spans, so it must match for equal draws.
  if (m < n || n > q) {
    const torch::Tensor Q = get_approximate_basis(A_t, q, niter, M_t, generator);
    torch::Tensor B_t = torch::matmul(A, Q);
    if (M.defined()) B_t = B_t - torch::matmul(M, Q);
    std::tie(U, S, Vh) = torch::linalg_svd(B_t, /*full_matrices=*/false);
    V = Q.matmul(Vh.transpose(-2, -1));
  } else {
    const torch::Tensor Q = get_approximate_basis(A, q, niter, M, generator);
    torch::Tensor B = torch::matmul(A_t, Q);
    if (M.defined()) B = B - torch::matmul(M_t, Q);
    const torch::Tensor B_t = B.transpose(-2, -1);
    std::tie(U, S, Vh) = torch::linalg_svd(B_t, /*full_matrices=*/false);
    V = Vh.transpose(-2, -1);
    U = Q.matmul(U);
  }
  return {U, S, V};
}

}  // namespace peft
