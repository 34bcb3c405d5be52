#pragma once
/// The safetensors dtypes peft-cpp reads and writes (LibTorch-free): name, bytes per element and
/// whether it is a floating-point type. io/safetensors_dtype.hpp maps them to LibTorch types.

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace peft {

struct SafetensorsDtype {
  const char* name;  ///< as in the header: "F32"
  std::size_t size;  ///< bytes per element
  bool floating;
};

inline constexpr SafetensorsDtype kSafetensorsDtypes[] = {
    {"F32", 4, true}, {"F16", 2, true},  {"BF16", 2, true}, {"F64", 8, true}, {"I64", 8, false},
    {"I32", 4, false}, {"I16", 2, false}, {"I8", 1, false},  {"U8", 1, false}, {"BOOL", 1, false}};

/// Valid safetensors dtypes that have no LibTorch 1.13 counterpart (rejected with their name).
inline constexpr const char* kUnsupportedSafetensorsDtypes[] = {
    "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};

/// The table entry called `name`, or nullptr when peft-cpp does not support it.
inline const SafetensorsDtype* find_safetensors_dtype(std::string_view name) {
  for (const auto& d : kSafetensorsDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

namespace detail {
/// safetensors data is little-endian: swap each `elem_size`-byte element in place on a
/// big-endian host (a no-op elsewhere).
inline void to_or_from_little_endian(char* data, std::size_t nbytes, std::size_t elem_size) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if (elem_size > 1)
    for (std::size_t i = 0; i + elem_size <= nbytes; i += elem_size) std::reverse(data + i, data + i + elem_size);
#else
  (void)data;
  (void)nbytes;
  (void)elem_size;
#endif
}
}  // namespace detail

}  // namespace peft
