#pragma once
/// IncrementalPCA: PEFT's port of scikit-learn's incremental PCA (peft/utils/incremental_pca.py),
/// used by EVA to find the principal directions of a layer's inputs batch by batch.
///
///   peft::IncrementalPCA pca({/*n_components=*/8, /*lowrank=*/true, /*lowrank_seed=*/42});
///   for (auto& X : batches) pca.partial_fit(X);        // X [n_samples, n_features]
///   pca.components();                                   // [n_components, n_features], unit rows
///
/// Each step stacks [diag(S) V^T; X - batch mean; mean correction] and takes its SVD (exact, or
/// torch.svd_lowrank with q = lowrank_q (default 2 n_components) and lowrank_niter rounds).
/// Signs are fixed per component (largest |entry| of each row of V^T positive). dtypes follow
/// PEFT: mean/var are float64; the first step's SVD runs in X's dtype, later steps in float64
/// (the float64 mean correction promotes the stack), so components() is float64 after step 2.

#include <torch/types.h>

#include <ATen/core/Generator.h>
#include <ATen/Context.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "peft/error.hpp"
#include "peft/init/svd_lowrank.hpp"

namespace peft {

struct IncrementalPCAOptions {
  std::optional<std::int64_t> n_components;  ///< None: min(n_samples, n_features) of the first batch
  bool lowrank = false;                      ///< torch.svd_lowrank instead of torch.linalg.svd
  std::optional<std::uint64_t> lowrank_seed;  ///< seed for svd_lowrank's randn (EVA: 42)
  std::optional<std::int64_t> lowrank_q;     ///< None: 2 * n_components
  std::int64_t lowrank_niter = 4;
  bool copy = true;  ///< false: partial_fit may overwrite the caller's X
};

class IncrementalPCA {
 public:
  explicit IncrementalPCA(IncrementalPCAOptions options = {}) : opt_(options) {
    if (opt_.lowrank) {
      if (!opt_.lowrank_q) {
        if (!opt_.n_components)
          throw Error("IncrementalPCA: n_components must be specified when using lowrank mode with lowrank_q=None");
        opt_.lowrank_q = *opt_.n_components * 2;
      }
      if (opt_.n_components && *opt_.lowrank_q < *opt_.n_components)
        throw Error("IncrementalPCA: lowrank_q must be greater than or equal to n_components");
    }
    n_components_ = opt_.n_components.value_or(0);
  }

  /// One incremental step with X [n_samples, n_features] (float32/float64; other dtypes are
  /// converted to float32). n_components must not exceed n_samples nor n_features.
  IncrementalPCA& partial_fit(torch::Tensor X) {
    torch::NoGradGuard no_grad;
    const bool first_pass = !fitted();
    X = validate(std::move(X));
    const std::int64_t n_samples = X.size(0), n_features = X.size(1);
    if (first_pass) {
      n_samples_seen_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kLong).device(X.device()));
      n_features_ = n_features;
      if (n_components_ == 0) n_components_ = std::min(n_samples, n_features);
    }
    if (n_features != n_features_)
      throw Error("IncrementalPCA: Number of features of the new batch (" + std::to_string(n_features) +
                  ") does not match the number of features of the first batch (" +
                  std::to_string(n_features_) + ")");
    torch::Tensor col_mean, col_var, n_total;
    std::tie(col_mean, col_var, n_total) = incremental_mean_and_var(X, mean_, var_, n_samples_seen_);
    if (first_pass) {
      X.sub_(col_mean);
    } else {
      const torch::Tensor col_batch_mean = X.mean({0});
      X.sub_(col_batch_mean);
      const torch::Tensor factor = torch::sqrt((n_samples_seen_.to(torch::kDouble) / n_total) * n_samples);
      const torch::Tensor mean_correction = factor * (mean_ - col_batch_mean);
      X = torch::vstack({singular_values_.view({-1, 1}) * components_, X, mean_correction});
    }
    torch::Tensor U, S, Vt;
    std::tie(U, S, Vt) = svd(X);
    svd_flip_rows(U, Vt);
    const torch::Tensor S2 = S.pow(2);
    const torch::Tensor explained_variance = S2 / (n_total - 1);
    const torch::Tensor explained_variance_ratio = S2 / torch::sum(col_var * n_total);

    n_samples_seen_ = n_total;
    components_ = Vt.slice(0, 0, n_components_);
    singular_values_ = S.slice(0, 0, n_components_);
    mean_ = col_mean;
    var_ = col_var;
    explained_variance_ = explained_variance.slice(0, 0, n_components_);
    explained_variance_ratio_ = explained_variance_ratio.slice(0, 0, n_components_);
    if (n_components_ != n_samples && n_components_ != n_features)
      noise_variance_ = explained_variance.slice(0, n_components_).mean();
    else
      noise_variance_ = torch::zeros({}, torch::TensorOptions().device(X.device()));
    return *this;
  }

  /// Fits X in consecutive batches of `batch_size` rows (0: 5 * n_features), skipping a batch that
  /// would leave fewer than n_components rows for the last one (scikit-learn's gen_batches).
  IncrementalPCA& fit(const torch::Tensor& X, std::int64_t batch_size = 0) {
    torch::Tensor data = validate(X);
    const std::int64_t n = data.size(0);
    if (batch_size <= 0) batch_size = 5 * data.size(1);
    std::int64_t start = 0;
    for (std::int64_t i = 0; i < n / batch_size; ++i) {
      const std::int64_t end = start + batch_size;
      if (end + n_components_ > n) continue;
      partial_fit(data.slice(0, start, end));
      start = end;
    }
    if (start < n) partial_fit(data.slice(0, start, n));
    return *this;
  }

  /// (X - mean) @ components^T [n_samples, n_components], in float64 (the mean is float64).
  torch::Tensor transform(const torch::Tensor& X) const {
    require_fitted();
    return torch::mm((X - mean_).to(torch::kDouble), components_.t().to(torch::kDouble));
  }

  bool fitted() const { return components_.defined(); }
  std::int64_t n_components() const { return n_components_; }
  const torch::Tensor& components() const { return checked(components_); }
  const torch::Tensor& singular_values() const { return checked(singular_values_); }
  const torch::Tensor& mean() const { return checked(mean_); }
  const torch::Tensor& var() const { return checked(var_); }
  const torch::Tensor& explained_variance() const { return checked(explained_variance_); }
  const torch::Tensor& explained_variance_ratio() const { return checked(explained_variance_ratio_); }
  const torch::Tensor& noise_variance() const { return checked(noise_variance_); }
  std::int64_t n_samples_seen() const { return fitted() ? n_samples_seen_.item<std::int64_t>() : 0; }

  /// sklearn's svd_flip with u_based_decision=False: each row of Vt gets the sign that makes its
  /// largest-magnitude entry positive; U's columns follow.
  static void svd_flip_rows(torch::Tensor& U, torch::Tensor& Vt) {
    const torch::Tensor idx = torch::argmax(torch::abs(Vt), 1);
    const torch::Tensor signs = torch::sign(Vt.gather(1, idx.unsqueeze(1)).squeeze(1));
    U.mul_(signs.slice(0, 0, U.size(1)).view({1, -1}));
    Vt.mul_(signs.view({-1, 1}));
  }

  /// sklearn's _incremental_mean_and_var in float64 sums: returns (mean, var, count) after
  /// adding X's rows to the running statistics (last_* undefined on the first batch).
  static std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> incremental_mean_and_var(
      const torch::Tensor& X, const torch::Tensor& last_mean, const torch::Tensor& last_variance,
      const torch::Tensor& last_sample_count) {
    if (X.size(0) == 0) return {last_mean, last_variance, last_sample_count};
    const torch::Tensor new_count =
        torch::full({1}, X.size(0), torch::TensorOptions().dtype(torch::kLong).device(X.device()));
    const torch::Tensor updated_count = last_sample_count + new_count;
    const torch::Tensor last_sum = last_mean.defined()
                                       ? last_mean * last_sample_count
                                       : torch::zeros({X.size(1)}, X.options().dtype(torch::kDouble));
    const torch::Tensor new_sum = X.sum({0}, /*keepdim=*/false, torch::kDouble);
    const torch::Tensor updated_mean = (last_sum + new_sum) / updated_count;
    const torch::Tensor T = new_sum / new_count;
    torch::Tensor temp = X - T;
    const torch::Tensor correction = temp.sum({0}, false, torch::kDouble).square();
    temp.square_();
    torch::Tensor new_unnormalized = temp.sum({0}, false, torch::kDouble);
    new_unnormalized.sub_(correction / new_count);
    torch::Tensor updated_variance;
    if (!last_variance.defined()) {
      updated_variance = new_unnormalized / updated_count;
    } else {
      const torch::Tensor last_unnormalized = last_variance * last_sample_count;
      const torch::Tensor last_over_new = last_sample_count.to(torch::kDouble) / new_count;
      const torch::Tensor updated_unnormalized =
          last_unnormalized + new_unnormalized +
          last_over_new / updated_count * (last_sum / last_over_new - new_sum).square();
      updated_variance = updated_unnormalized / updated_count;
    }
    return {updated_mean, updated_variance, updated_count};
  }

 private:
  torch::Tensor validate(torch::Tensor X) const {
    if (X.dim() != 2)
      throw Error("IncrementalPCA: expected a 2-D [n_samples, n_features] tensor, got " +
                  std::to_string(X.dim()) + " dimensions");
    if (opt_.copy) X = X.clone();
    if (n_components_ > X.size(1))
      throw Error("IncrementalPCA: n_components=" + std::to_string(n_components_) + " invalid for n_features=" +
                  std::to_string(X.size(1)) + ", need more rows than columns for IncrementalPCA processing");
    if (n_components_ > X.size(0))
      throw Error("IncrementalPCA: n_components=" + std::to_string(n_components_) +
                  " must be less or equal to the batch number of samples " + std::to_string(X.size(0)));
    if (X.scalar_type() != torch::kFloat && X.scalar_type() != torch::kDouble) X = X.to(torch::kFloat);
    return X;
  }

  const torch::Tensor& checked(const torch::Tensor& t) const {
    require_fitted();
    return t;
  }
  void require_fitted() const {
    if (!fitted()) throw Error("IncrementalPCA: not fitted yet (call partial_fit first)");
  }

  /// (U, S, Vt) of X, reduced.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> svd(const torch::Tensor& X) const {
    const std::int64_t q = opt_.lowrank_q.value_or(0);
    // torch.svd_lowrank asserts q <= min(m, n) (PEFT would fail there); use the exact SVD then.
    if (!opt_.lowrank || q > std::min(X.size(0), X.size(1))) return torch::linalg_svd(X, /*full_matrices=*/false);
    torch::Tensor U, S, V;
    if (opt_.lowrank_seed) {
      // PEFT forks the global RNG around manual_seed(seed); a private generator of the same kind,
      // seeded alike, draws the same numbers and leaves the global stream untouched.
      at::Generator global = at::globalContext().defaultGenerator(X.device());
      at::Generator gen;
      {
        std::lock_guard<std::mutex> lock(global.mutex());
        gen = global.clone();
      }
      gen.set_current_seed(*opt_.lowrank_seed);
      std::tie(U, S, V) = svd_lowrank(X, q, opt_.lowrank_niter, torch::Tensor(), &gen);
    } else {
      std::tie(U, S, V) = svd_lowrank(X, q, opt_.lowrank_niter);
    }
    return {U, S, V.t()};
  }

  IncrementalPCAOptions opt_;
  std::int64_t n_components_ = 0;
  std::int64_t n_features_ = 0;
  torch::Tensor n_samples_seen_;
  torch::Tensor components_, singular_values_, mean_, var_;
  torch::Tensor explained_variance_, explained_variance_ratio_, noise_variance_;
};

}  // namespace peft
