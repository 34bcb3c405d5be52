#pragma once
/// The LibTorch-free layer of the safetensors reader: checks the 8-byte header length, the JSON
/// header (syntax, nesting, duplicate keys, types) and every entry's dtype, shape and
/// data_offsets against the data buffer (in range, no overlaps, byte count = numel x dtype size,
/// BOOL bytes 0/1). load_safetensors builds tensors only from what this accepted; tools and fuzz
/// targets use it directly without linking LibTorch.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace peft {

/// One tensor entry of a validated header; [begin, end) is relative to the data buffer.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;           ///< safetensors name: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  std::size_t dtype_size = 0;  ///< bytes per element
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t numel() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);  // bounded by the validation
    return n;
  }
};

/// A validated header: entries and __metadata__ in file order, and where the data starts.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::uint64_t data_start = 0;  ///< byte offset of the data buffer in the file (8 + header length)
  std::uint64_t data_size = 0;   ///< bytes after the header
};

/// Validate `size` bytes at `bytes` (a whole file); `source_name` starts every error message.
/// Throws SerializationError naming the source and the problem; never reads outside the input.
/// = safetensors_header_length + parse_safetensors_header_text + check_safetensors_bool_data.
SafetensorsHeader parse_safetensors_header(const char* bytes, std::size_t size,
                                           const std::string& source_name);

/// For readers that fetch the header alone (load_checkpoint streams the data afterwards): the
/// header length stored in the first 8 bytes of a file of `file_size` bytes, checked against
/// the 100 MB limit and against the bytes that follow it, so a reader never allocates more for
/// the header than the file holds. `first_bytes` holds min(8, file_size) bytes.
std::uint64_t safetensors_header_length(const char* first_bytes, std::uint64_t file_size,
                                        const std::string& source_name);

/// Validate the JSON header text (the `header_len` bytes after the length) against a data buffer
/// of `data_size` bytes: every check of parse_safetensors_header but the BOOL bytes.
SafetensorsHeader parse_safetensors_header_text(const char* text, std::size_t header_len, std::uint64_t data_size,
                                                const std::string& source_name);

/// The BOOL-bytes check for `count` bytes of `entry`'s data (elements first_element...), for a
/// reader that reads the data after the header; nothing for other dtypes.
void check_safetensors_bool_data(const SafetensorsEntry& entry, const char* data, std::uint64_t first_element,
                                 std::uint64_t count, const std::string& source_name);

/// Bytes per element of a supported safetensors dtype name; 0 when unsupported or unknown.
std::size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace peft
