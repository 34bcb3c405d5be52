// torch.svd_lowrank port: exact on low-rank inputs, both code branches, and the RNG draw that
// makes it reproduce Python after the same manual_seed.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include "peft/init/svd_lowrank.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"

namespace {

// A rank-k matrix [m, n] with known singular values (k distinct values, well separated).
torch::Tensor low_rank(std::int64_t m, std::int64_t n, std::vector<double> singular) {
  const auto k = static_cast<std::int64_t>(singular.size());
  auto u = std::get<0>(torch::linalg_qr(torch::randn({m, k}, torch::kFloat64)));
  auto v = std::get<0>(torch::linalg_qr(torch::randn({n, k}, torch::kFloat64)));
  return torch::matmul(u * torch::tensor(singular, torch::kFloat64), v.t());
}

void expect_exact_on_low_rank(std::int64_t m, std::int64_t n, std::int64_t q) {
  torch::manual_seed(3);
  auto A = low_rank(m, n, {5.0, 2.0, 0.5});
  auto [U, S, V] = peft::svd_lowrank(A, q, /*niter=*/2);
  ASSERT_EQ(U.sizes(), (std::vector<int64_t>{m, q}));
  ASSERT_EQ(S.sizes(), (std::vector<int64_t>{q}));
  ASSERT_EQ(V.sizes(), (std::vector<int64_t>{n, q}));
  auto exact = std::get<1>(torch::linalg_svd(A, false)).slice(0, 0, q);
  EXPECT_TRUE(peft_test::close(S, exact, 1e-9, 1e-9)) << S << exact;
  EXPECT_TRUE(peft_test::close(torch::matmul(U * S, V.t()), A, 1e-9, 1e-9));
  EXPECT_TRUE(peft_test::close(torch::matmul(U.t(), U), torch::eye(q, torch::kFloat64), 1e-9, 1e-9));
}

}  // namespace

SEEDED_TEST(SvdLowrank, IsExactOnALowRankTallMatrixWithNarrowQ) { expect_exact_on_low_rank(8, 6, 3); }  // n > q
SEEDED_TEST(SvdLowrank, IsExactOnALowRankWideMatrix) { expect_exact_on_low_rank(5, 9, 4); }            // m < n
SEEDED_TEST(SvdLowrank, IsExactWhenQCoversAllColumns) { expect_exact_on_low_rank(7, 4, 4); }           // else-branch

SEEDED_TEST(SvdLowrank, WithMeanDecomposesTheDifference) {
  torch::manual_seed(5);
  auto A = low_rank(9, 6, {4.0, 1.0});
  auto M = torch::randn({1, 6}, torch::kFloat64).expand({9, 6});
  auto [U, S, V] = peft::svd_lowrank(A + M, 2, 1, M);
  EXPECT_TRUE(peft_test::close(torch::matmul(U * S, V.t()), A, 1e-9, 1e-9));
}

SEEDED_TEST(SvdLowrank, DrawsOneRandnOfTheTransposedRowsTimesQ) {
  // n > q: torch works on A^T, so the draw is randn(m, q) — in A's dtype.
  auto A = torch::randn({6, 5});
  torch::manual_seed(11);
  peft::svd_lowrank(A, 2, 3);
  auto after = torch::randn({4});
  torch::manual_seed(11);
  torch::randn({6, 2});
  EXPECT_TRUE(peft_test::equal(after, torch::randn({4})));
}

SEEDED_TEST(SvdLowrank, SameSeedGivesIdenticalFactorsAndAGeneratorCanBeGiven) {
  auto A = torch::randn({10, 7});
  torch::manual_seed(1);
  auto a = peft::svd_lowrank(A, 3, 1);
  torch::manual_seed(1);
  auto b = peft::svd_lowrank(A, 3, 1);
  EXPECT_TRUE(peft_test::equal(std::get<0>(a), std::get<0>(b)));
  EXPECT_TRUE(peft_test::equal(std::get<2>(a), std::get<2>(b)));
  auto gen = at::detail::createCPUGenerator(1);
  auto c = peft::svd_lowrank(A, 3, 1, {}, &gen);
  EXPECT_TRUE(peft_test::equal(std::get<1>(a), std::get<1>(c)));
}

SEEDED_TEST(SvdLowrank, HandlesBatches) {
  torch::manual_seed(2);
  auto A = torch::stack({low_rank(6, 5, {3.0, 1.0}), low_rank(6, 5, {2.0, 0.5})});
  auto [U, S, V] = peft::svd_lowrank(A, 2, 2);
  EXPECT_EQ(U.sizes(), (std::vector<int64_t>{2, 6, 2}));
  EXPECT_TRUE(peft_test::close(torch::matmul(U * S.unsqueeze(-2), V.transpose(-2, -1)), A, 1e-9, 1e-9));
}
