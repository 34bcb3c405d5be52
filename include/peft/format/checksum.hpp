#pragma once
/// CRC-32 (zlib's, the checksum of gzip and PNG) of bytes and files, for detecting silent
/// corruption of files written earlier (training checkpoints record one per file).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace peft {

/// CRC-32 of `size` bytes.
std::uint32_t crc32_of(const char* data, std::size_t size);
inline std::uint32_t crc32_of(const std::string& bytes) { return crc32_of(bytes.data(), bytes.size()); }

/// A file's size and CRC-32, read in 1 MiB pieces. SerializationError naming the path when it
/// cannot be opened or read.
struct FileChecksum {
  std::uint64_t size = 0;
  std::uint32_t crc32 = 0;
};
FileChecksum checksum_file(const std::filesystem::path& path);

/// 8 lowercase hex digits ("0a1b2c3d"), and back: parse_crc32_hex is false for
/// anything but exactly 8 hex digits.
std::string crc32_hex(std::uint32_t crc);
bool parse_crc32_hex(const std::string& text, std::uint32_t& crc);

}  // namespace peft
