#pragma once
/// Inverted dropout on a LoRA adapter's input path (PEFT's `lora_dropout`,
/// docs/layer.md#forward-linear-and-conv1d):
///   y = x * m / (1 - p),  m ~ Bernoulli(1 - p) per element; identity when !train or p <= 0;
///   zeros when p >= 1. Backward: dy * m / (1 - p).
///
/// Why not torch::dropout: on a CPU LibTorch without MKL (Debian's), torch::dropout draws a
/// Bernoulli per element through the locked mt19937 generator, then divides and multiplies in
/// separate passes, and keeps an fp32 noise tensor of x's size for backward (70 ms on a
/// [2048, 2048] fp32 input here, a third of the layer's whole training step). On CPU fp32/fp64
/// this does one pass over x with a counter-based generator (SplitMix64 of the element index,
/// 32 bits per element), writes y and a 1-byte mask, and saves only the mask (¼ of x's bytes):
/// 3-4x less time than torch::dropout, forward and backward (bench: cpu_fp32/op/dropout0.1).
/// Elsewhere (CUDA has a fused native kernel; other dtypes) it calls torch::dropout.
///
/// Decision (reproducibility): the stream is seeded by one draw from LibTorch's default CPU
/// generator, so torch::manual_seed makes masks reproducible and independent of the thread
/// count, but the mask is not the one torch::dropout (or Python PEFT) would draw for the same
/// seed; PEFT only promises the distribution, and the fixtures compare eval outputs.

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace peft {
namespace detail {

inline std::uint64_t splitmix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// P(drop) = threshold / 2^32, the closest 32-bit fraction to p.
inline std::uint32_t drop_threshold(double p) {
  const double t = p * 4294967296.0;
  return t >= 4294967295.0 ? std::numeric_limits<std::uint32_t>::max() : static_cast<std::uint32_t>(t + 0.5);
}

/// y[i] = x[i] * (keep_i ? scale : 0) (so NaN/inf stay NaN, as torch's x * noise) and mask[i] =
/// keep_i (mask may be null), where keep_i depends
/// only on (seed, i): element pair k = i / 2 uses the halves of splitmix64(seed + (k+1)·γ), so
/// any split of the range across threads gives the same result. Blocks of kBlock elements: the
/// draws go to a small buffer first, so the select loop has no 64-bit multiplies and vectorises
/// (2x faster than one fused loop on this machine's build flags).
template <typename T>
void dropout_kernel(const T* x, T* y, std::uint8_t* mask, std::int64_t n, std::uint64_t seed, std::uint32_t thr,
                    T scale) {
  constexpr std::uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
  constexpr std::int64_t kBlock = 1024;  // even, so every block starts on a pair boundary
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 16, [&](std::int64_t first, std::int64_t last) {
    alignas(64) std::uint32_t draw[kBlock];
    for (std::int64_t b = first; b < last; ++b) {
      const std::int64_t b0 = b * kBlock, len = std::min(kBlock, n - b0);
      for (std::int64_t j = 0; j < (len + 1) / 2; ++j) {
        const std::uint64_t z = splitmix64(seed + static_cast<std::uint64_t>(b0 / 2 + j + 1) * kGamma);
        draw[2 * j] = static_cast<std::uint32_t>(z);
        draw[2 * j + 1] = static_cast<std::uint32_t>(z >> 32);
      }
      const T* xb = x + b0;
      T* yb = y + b0;
      if (mask) {
        std::uint8_t* mb = mask + b0;
        for (std::int64_t j = 0; j < len; ++j) {
          const bool keep = draw[j] >= thr;
          mb[j] = static_cast<std::uint8_t>(keep);
          yb[j] = xb[j] * (keep ? scale : T(0));
        }
      } else {
        for (std::int64_t j = 0; j < len; ++j) yb[j] = xb[j] * (draw[j] >= thr ? scale : T(0));
      }
    }
  });
}

template <typename T>
void masked_scale_kernel(const T* g, const std::uint8_t* mask, T* out, std::int64_t n, T scale) {
  at::parallel_for(0, n, 1 << 15, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = g[i] * (mask[i] ? scale : T(0));
  });
}

inline bool fused_dropout_applies(const torch::Tensor& x) {
  return x.device().is_cpu() && x.layout() == torch::kStrided &&
         (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
}

/// Forward of the fused CPU path; fills `mask` (uint8, x's shape) when it is defined.
inline torch::Tensor fused_dropout_forward(const torch::Tensor& x_in, double p, torch::Tensor* mask) {
  const torch::Tensor x = x_in.contiguous();
  // One draw from the default generator (so manual_seed governs the stream); 2 x 31 bits.
  const auto draws = torch::randint(std::numeric_limits<std::int32_t>::max(), {2},
                                    torch::TensorOptions().dtype(torch::kLong));
  const auto* d = draws.data_ptr<std::int64_t>();
  const std::uint64_t seed = splitmix64((static_cast<std::uint64_t>(d[0]) << 32) ^ static_cast<std::uint64_t>(d[1]));
  const std::uint32_t thr = drop_threshold(p);
  auto y = torch::empty_like(x);
  std::uint8_t* m = nullptr;
  if (mask) {
    *mask = torch::empty(x.sizes(), x.options().dtype(torch::kByte));
    m = mask->data_ptr<std::uint8_t>();
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peft_lora_dropout", [&] {
    dropout_kernel<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), m, x.numel(), seed, thr,
                             static_cast<scalar_t>(1.0 / (1.0 - p)));
  });
  return y;
}

struct FusedDropoutFunction : public torch::autograd::Function<FusedDropoutFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double p) {
    torch::Tensor mask;
    auto y = fused_dropout_forward(x, p, &mask);
    ctx->save_for_backward({mask});
    ctx->saved_data["scale"] = 1.0 / (1.0 - p);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto mask = ctx->get_saved_variables()[0];
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto g = grads[0].contiguous();
    torch::Tensor dx;
    if (g.scalar_type() == torch::kFloat || g.scalar_type() == torch::kDouble) {
      dx = torch::empty_like(g);
      AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "peft_lora_dropout_backward", [&] {
        masked_scale_kernel<scalar_t>(g.data_ptr<scalar_t>(), mask.data_ptr<std::uint8_t>(), dx.data_ptr<scalar_t>(),
                                      g.numel(), static_cast<scalar_t>(scale));
      });
    } else {
      dx = g * mask * scale;
    }
    return {dx, torch::Tensor()};
  }
};

}  // namespace detail

/// Inverted dropout for the LoRA input path (see the file comment). x: any shape; p in [0, 1].
inline torch::Tensor lora_dropout(const torch::Tensor& x, double p, bool train) {
  if (!train || p <= 0.0) return x;
  if (p >= 1.0) return x * 0;  // keeps the graph (zero gradient), as torch::dropout does
  if (!detail::fused_dropout_applies(x)) return torch::dropout(x, p, true);
  if (x.requires_grad() && torch::GradMode::is_enabled()) return detail::FusedDropoutFunction::apply(x, p);
  return detail::fused_dropout_forward(x, p, nullptr);
}

}  // namespace peft
