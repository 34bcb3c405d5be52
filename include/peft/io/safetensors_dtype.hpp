#pragma once
/// safetensors dtype <-> LibTorch scalar type, for the dtypes of format/safetensors_dtype.hpp.

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <iterator>
#include <optional>
#include <string_view>

#include "peft/format/safetensors_dtype.hpp"

namespace peft {

namespace detail {
/// The LibTorch type of each kSafetensorsDtypes entry, in the table's order.
inline constexpr c10::ScalarType kSafetensorsTorchTypes[] = {
    c10::ScalarType::Float, c10::ScalarType::Half,  c10::ScalarType::BFloat16, c10::ScalarType::Double,
    c10::ScalarType::Long,  c10::ScalarType::Int,   c10::ScalarType::Short,    c10::ScalarType::Char,
    c10::ScalarType::Byte,  c10::ScalarType::Bool};
static_assert(std::size(kSafetensorsTorchTypes) == std::size(kSafetensorsDtypes),
              "one LibTorch type per safetensors dtype");
}  // namespace detail

/// The LibTorch type of an entry of kSafetensorsDtypes.
inline c10::ScalarType torch_dtype_of(const SafetensorsDtype& dtype) {
  return detail::kSafetensorsTorchTypes[static_cast<std::size_t>(&dtype - kSafetensorsDtypes)];
}

/// The LibTorch type of a safetensors dtype name; nullopt when peft-cpp does not support it.
inline std::optional<c10::ScalarType> torch_dtype_of(std::string_view name) {
  const SafetensorsDtype* d = find_safetensors_dtype(name);
  if (!d) return std::nullopt;
  return torch_dtype_of(*d);
}

/// The safetensors dtype of a LibTorch type, or nullptr when safetensors files of peft-cpp
/// cannot hold it (complex, quantised, ...).
inline const SafetensorsDtype* safetensors_dtype_of(c10::ScalarType type) {
  for (std::size_t i = 0; i < std::size(kSafetensorsDtypes); ++i)
    if (detail::kSafetensorsTorchTypes[i] == type) return &kSafetensorsDtypes[i];
  return nullptr;
}

}  // namespace peft
