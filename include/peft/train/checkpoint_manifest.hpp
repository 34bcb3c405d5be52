#pragma once
/// checksums.json of a training checkpoint: the size and CRC-32 of every other file in it,
/// written last (training_checkpoint.hpp) and verified before any file is parsed, so that a
/// changed, truncated or swapped file is a SerializationError naming it, never silent use.
///
///   {"format": 1, "files": {"adapter_model.safetensors": {"size": 8272, "crc32": "0a1b2c3d"}, ...}}
///
/// Torch-free. Bodies: src/train/checkpoint_manifest.cpp.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace peft::train {

inline constexpr const char* kCheckpointManifestFile = "checksums.json";

struct ManifestEntry {
  std::string file;  ///< a plain file name inside the checkpoint directory
  std::uint64_t size = 0;
  std::uint32_t crc32 = 0;
};

/// Validate checksums.json text: the format, one entry per file with a plain name (no `/`, not
/// `.` or `..`), an integer size >= 0 and 8 hex digits of CRC-32, exactly the `expected` files
/// (in any order). SerializationError naming `where` otherwise. Returns them in `expected` order.
std::vector<ManifestEntry> parse_checkpoint_manifest(const std::string& text, const std::string& where,
                                                     const std::vector<std::string>& expected);

/// Checksum `files` of `dir` and write `dir`/checksums.json (fsynced, atomically).
void write_checkpoint_manifest(const std::filesystem::path& dir, const std::vector<std::string>& files);

/// Read `dir`/checksums.json (at most 1 MiB; it must list exactly the `expected` files) and check
/// the size and CRC-32 of every file in `check` (empty: all of `expected`) against it;
/// SerializationError naming the file and what differs otherwise.
void verify_checkpoint_files(const std::filesystem::path& dir, const std::vector<std::string>& expected,
                             const std::vector<std::string>& check = {});

}  // namespace peft::train
