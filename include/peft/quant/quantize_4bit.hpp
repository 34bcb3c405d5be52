#pragma once
/// bitsandbytes' 4-bit and 8-bit blockwise quantisation, bit-exact to its pure-torch default
/// backend (bitsandbytes/backends/default/ops.py at 95f9af3; docs/qlora.md):
///   absmax_b = max |A| over block b (float32);  s = clamp(A · (1 / max(absmax_b, 1e-38)), -1, 1)
///   (a partial last block divides by its absmax instead); code = the code value nearest to s,
///   ties to the lower value (torch.bucketize on the midpoints); two codes per byte, first high.
/// Quirk (documented, followed): FP4 has two zero codes; the default backend gives exact 0 and
/// small negative values code 0 and small positive values code 8 (-0), and packs an all-zero
/// block as 0x00. bitsandbytes' CUDA kernels differ there (and round 5 of 7 FP4 thresholds);
/// dequantised values are equal either way except at those thresholds.

#include <torch/types.h>

#include <cstdint>
#include <utility>

#include "peft/quant/quant_state.hpp"

namespace peft {

/// The 16 code values (float32): NF4's quantiles in ascending order; FP4's in bit-pattern order
/// (code i = sign(i & 8) · value(i & 7) / 12).
torch::Tensor code_4bit(QuantType4bit t);
/// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(), 256 ascending values), the code
/// of the nested absmax.
torch::Tensor dynamic_map_8bit();

/// Packed codes and state of `a` (float32/float16/bfloat16, any shape, any device).
/// blocksize in {32, 64, ..., 4096}; compress_statistics: double quantisation of the absmax
/// (nested blocks of 256). ConfigError on `quantize_4bit`.<arg> for a bad argument.
std::pair<torch::Tensor, QuantState4bit> quantize_4bit(const torch::Tensor& a,
                                                       QuantType4bit quant_type = QuantType4bit::nf4,
                                                       std::int64_t blocksize = 64,
                                                       bool compress_statistics = false);

/// W of state.shape in `dtype` (default: state.dtype), from packed codes (uint8, (n + 1) / 2
/// bytes). Computed in float32 (code · absmax), then cast, as bnb does.
torch::Tensor dequantize_4bit(const torch::Tensor& packed, const QuantState4bit& state,
                              c10::optional<torch::ScalarType> dtype = c10::nullopt);

namespace detail {
/// dequantize_4bit with tensor ops only (the path of non-CPU devices; the CPU has a direct loop).
/// `absmax` is the per-block scale, float32 [blocks].
torch::Tensor dequantize_4bit_tensor_ops(const torch::Tensor& packed, const torch::Tensor& absmax,
                                         const QuantState4bit& st, torch::ScalarType dtype);
}  // namespace detail

/// 8-bit blockwise quantisation with `code` (ascending float32 [256]): codes uint8 (a's shape)
/// and absmax float32 [blocks].
std::pair<torch::Tensor, torch::Tensor> quantize_blockwise_8bit(const torch::Tensor& a, const torch::Tensor& code,
                                                                std::int64_t blocksize);
/// code[q] · absmax[block], float32, q's shape.
torch::Tensor dequantize_blockwise_8bit(const torch::Tensor& q, const torch::Tensor& absmax,
                                        const torch::Tensor& code, std::int64_t blocksize);

}  // namespace peft
