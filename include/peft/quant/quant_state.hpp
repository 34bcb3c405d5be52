#pragma once
/// QuantState4bit: what bitsandbytes keeps beside a 4-bit weight (its QuantState) and how it is
/// stored in a checkpoint (docs/qlora.md). For a weight W of `shape` (numel n) in blocks of
/// `blocksize` (last block may be partial):
///   packed   uint8 [(n + 1) / 2, 1]   two codes per byte, element 2i in the high nibble
///   absmax   float32 [blocks]         max |W| of each block (uint8 [blocks] when nested)
///   W[i] = quant_map[code_i] · absmax[i / blocksize]
/// Double quantisation (bnb's compress_statistics, `nested()`): absmax is stored as 8-bit codes
/// of (absmax - nested_offset) with bnb's dynamic map (nested_quant_map, 256 values) in blocks
/// of nested_blocksize (256), scaled by nested_absmax [ceil(blocks / 256)].
/// Checkpoint keys (transformers + bitsandbytes): `<p>.weight` (U8), `<p>.weight.absmax`,
/// `<p>.weight.quant_map`, `<p>.weight.nested_absmax`, `<p>.weight.nested_quant_map`, and
/// `<p>.weight.quant_state.bitsandbytes__<nf4|fp4>`: U8 bytes of the JSON {"quant_type",
/// "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"}.

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace peft {

/// bitsandbytes' 4-bit data types: NF4 (normal-float quantiles) and FP4 (1 sign, 2 exponent,
/// 1 mantissa bit).
enum class QuantType4bit { nf4, fp4 };

/// "nf4" / "fp4".
const char* to_string(QuantType4bit t);
/// Parses "nf4" / "fp4"; ConfigError on `subject`.`field` otherwise.
QuantType4bit parse_quant_type_4bit(const std::string& s, const std::string& subject, const std::string& field);

struct QuantState4bit {
  QuantType4bit quant_type = QuantType4bit::nf4;
  std::int64_t blocksize = 64;
  /// dtype of the tensor that was quantised (what dequantize_4bit returns by default).
  torch::ScalarType dtype = torch::kFloat32;
  /// shape of the tensor that was quantised ([out, in] for a Linear weight).
  std::vector<std::int64_t> shape;
  torch::Tensor absmax;     ///< float32 [blocks], or uint8 [blocks] when nested()
  torch::Tensor quant_map;  ///< float32 [16]: the code (code_4bit(quant_type))
  torch::Tensor nested_absmax;     ///< float32 [ceil(blocks / nested_blocksize)]; undefined: not nested
  torch::Tensor nested_quant_map;  ///< float32 [256]: bnb's dynamic map
  std::int64_t nested_blocksize = 256;
  torch::ScalarType nested_dtype = torch::kFloat32;
  float nested_offset = 0.0f;  ///< mean of the absmax, subtracted before the 8-bit quantisation

  bool nested() const { return nested_absmax.defined(); }
  std::int64_t numel() const;
  std::int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }
  /// The per-block scales as float32 [blocks] (dequantised when nested).
  torch::Tensor absmax_float() const;
  /// Bytes of everything but the packed codes (absmax, maps), for memory reports.
  std::int64_t state_bytes() const;
  /// A copy whose tensors are on `device` (shared when already there).
  QuantState4bit to(const torch::Device& device) const;
  /// A deep copy (tensors cloned).
  QuantState4bit clone() const;

  /// bnb's packed JSON string (QuantState.as_dict(packed=True)'s non-tensor part).
  std::string json() const;
  /// The checkpoint entries for a weight stored under `weight_key` (e.g. "fc1.weight"), packed
  /// codes excluded: `<weight_key>.absmax`, `.quant_map`, [`.nested_absmax`, `.nested_quant_map`],
  /// `.quant_state.bitsandbytes__<type>`, in bnb's order.
  std::vector<std::pair<std::string, torch::Tensor>> state_dict_entries(const std::string& weight_key) const;
  /// Reads the state of `weight_key` from checkpoint entries (suffix -> tensor: "absmax",
  /// "quant_map", "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4"), and
  /// checks it against `packed` (U8, (numel + 1) / 2 bytes): every size, type and value range,
  /// before anything uses it. SerializationError naming `source` and the key otherwise.
  static QuantState4bit from_entries(const std::map<std::string, torch::Tensor>& entries,
                                     const torch::Tensor& packed, const std::string& weight_key,
                                     const std::string& source);
};

}  // namespace peft
