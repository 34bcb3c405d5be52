#pragma once
/// LoftQ (docs/init.md#strategies-at-a-glance, PEFT's utils/loftq_utils.py): alternate quantising W and
/// fitting the
/// quantisation error with a rank-r product, so that Q + B @ A ~= W.
///
///   res = W (fp32); repeat num_iter times:
///     Q = dequantize(quantize(res));  res = W - Q
///     U, S, Vh = svd(res);  B = U sqrt(diag S)[:, :r]  [out, r];  A = sqrt(diag S)[:r] Vh  [r, in]
///     res = W - B @ A
///   base weight := Q (dequantized, in W's dtype);  lora_A := A;  lora_B := B  (no scaling compensation)
///
/// 4 bits: bitsandbytes' NF4 exactly as PEFT 0.20 calls it (Params4bit, blocksize 64, no double
/// quantisation; quant/quantize_4bit.hpp is bit-exact to bnb), so Q is the real 4-bit base:
/// quantize_model_4bit with nf4 and bnb_4bit_use_double_quant false stores Q without error
/// (docs/qlora.md). 8 (and 2) bits: PEFT's own NFQuantizer normal map, blockwise in pure LibTorch
/// (PEFT's 8-bit path uses bnb's Int8Params; not bit-exact). The base weight stays a dense float
/// tensor until you quantise the model. Decisions for 2/8 bits: a final partial block is quantised
/// on its own; an all-zero block dequantises to zeros (PEFT divides 0 by 0).

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <vector>

#include "peft/error.hpp"
#include "peft/init/init_factors.hpp"
#include "peft/quant/quantize_4bit.hpp"

namespace peft {

namespace detail {
/// Inverse of the standard normal CDF (scipy's norm.ppf): Acklam's rational approximation
/// refined by one Halley step (~1e-15 relative error).
inline double normal_ppf(double p) {
  if (p <= 0.0) return -INFINITY;
  if (p >= 1.0) return INFINITY;
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * std::acos(-1.0)) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}
}  // namespace detail

/// PEFT's NFQuantizer.create_normal_map(offset=0.9677083, symmetric=False, num_bits): 2^bits
/// sorted levels in [-1, 1] (fp32), one more positive than negative value, 0 included.
inline torch::Tensor nf_normal_map(std::int64_t num_bits) {
  const std::int64_t variations = std::int64_t(1) << num_bits;
  const double offset = 0.9677083;
  auto ppf_of_linspace = [&](std::int64_t steps) {
    auto t = torch::linspace(offset, 0.5, steps, torch::kFloat32);  // torch.linspace, then scipy in double
    std::vector<double> out;
    for (std::int64_t i = 0; i + 1 < steps; ++i) out.push_back(detail::normal_ppf(t[i].item<float>()));
    return out;
  };
  std::vector<double> v = ppf_of_linspace(variations / 2 + 1);
  v.push_back(0.0);
  for (double x : ppf_of_linspace(variations / 2)) v.push_back(-x);
  auto values = std::get<0>(torch::tensor(v, torch::kFloat64).to(torch::kFloat32).sort());
  return values / values.max();
}

/// bitsandbytes' NF4 code book (16 levels).
inline torch::Tensor nf4_code_book() {
  return torch::tensor({-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f});
}

/// Blockwise absmax quantisation to the nearest level of `table`, dequantised again (fp32,
/// W's shape). Blocks are `block_size` consecutive values of the row-major flattening.
inline torch::Tensor quantize_dequantize_blockwise(const torch::Tensor& W, const torch::Tensor& table,
                                                   std::int64_t block_size = 64) {
  torch::NoGradGuard no_grad;
  const torch::Tensor flat = W.to(torch::kFloat32).flatten();
  const std::int64_t n = flat.numel(), full = n / block_size * block_size;
  const torch::Tensor levels = table.to(flat.device(), torch::kFloat32);
  auto qdq = [&](const torch::Tensor& blocks) {  // [L, B]
    torch::Tensor mx = std::get<0>(blocks.abs().max(-1, /*keepdim=*/true));
    mx = torch::where(mx == 0, torch::ones_like(mx), mx);
    const torch::Tensor idx = (blocks.div(mx).unsqueeze(-1) - levels.view({1, 1, -1})).abs().argmin(-1);
    return levels.index_select(0, idx.flatten()).view(blocks.sizes()) * mx;
  };
  std::vector<torch::Tensor> parts;
  if (full > 0) parts.push_back(qdq(flat.slice(0, 0, full).view({-1, block_size})).flatten());
  if (full < n) parts.push_back(qdq(flat.slice(0, full, n).view({1, -1})).flatten());
  return torch::cat(parts).view(W.sizes());
}

/// LoftQ factors of W [out, in]: lora_A = R [r, in], lora_B = L [out, r] (fp32) and the
/// dequantised base weight in W's dtype. num_bits 2, 4 or 8; num_iter >= 1.
inline InitFactors loftq_init(const torch::Tensor& W, std::int64_t num_bits, std::int64_t reduced_rank,
                              std::int64_t num_iter = 1) {
  if (num_bits != 2 && num_bits != 4 && num_bits != 8)
    throw ConfigError("loftq_config.loftq_bits", std::to_string(num_bits), "Only support 2, 4, 8 bits quantization",
                      "use 4 (NF4) or 8");
  if (num_iter <= 0)
    throw ConfigError("loftq_config.loftq_iter", std::to_string(num_iter),
                      "Number of iterations must be greater than 0", "use 1 or more");
  if (W.dim() != 2) throw ConfigError("init_lora_weights", "\"loftq\"", "LoftQ needs a 2-D weight", "");
  detail::require_float_weight(W, "loftq", "LoftQ needs a floating base weight.");
  detail::require_rank_fits(W, reduced_rank, "loftq");
  torch::NoGradGuard no_grad;
  const torch::Tensor table = num_bits == 4 ? nf4_code_book() : nf_normal_map(num_bits);
  const torch::Tensor w = W.to(torch::kFloat32);
  torch::Tensor res = w.clone(), deq, L, R;
  for (std::int64_t i = 0; i < num_iter; ++i) {
    if (num_bits == 4) {
      auto [codes, state] = quantize_4bit(res, QuantType4bit::nf4, 64, /*compress_statistics=*/false);
      deq = dequantize_4bit(codes, state);
    } else {
      deq = quantize_dequantize_blockwise(res, table);
    }
    res = w - deq;
    auto [U, S, Vh] = torch::linalg_svd(res, /*full_matrices=*/false);
    const torch::Tensor D = torch::diag(S);
    L = torch::matmul(U, torch::sqrt(D.slice(1, 0, reduced_rank)));
    R = torch::matmul(torch::sqrt(D.slice(0, 0, reduced_rank)), Vh);
    res = w - torch::mm(L, R);
  }
  return InitFactors{R, L, deq.to(W.scalar_type())};
}

}  // namespace peft
