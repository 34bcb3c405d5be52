#pragma once
/// Internals of the checkpoint readers (io/hf_checkpoint.hpp), shared by open_hf_checkpoint
/// (memory-mapped, for peft-merge) and the streaming load_checkpoint; exposed for the tests.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "peft/format/safetensors_header.hpp"
#include "peft/io/hf_checkpoint.hpp"

namespace peft::detail {

/// A read-only file descriptor, closed when destroyed.
class ReadOnlyFile {
 public:
  /// Opens `path` (O_RDONLY, O_CLOEXEC); SerializationError "<path>: no such file" / "cannot
  /// open (<reason>)" / "not a regular file".
  explicit ReadOnlyFile(const std::filesystem::path& path);
  ~ReadOnlyFile();
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  /// Exactly `n` bytes at `offset` into `out` (pread, restarted after EINTR and partial reads).
  /// SerializationError naming the file and `what` (e.g. "tensor `x`") on a read error (EIO,
  /// ...) or when the file ends first (truncated or changed since its header was read).
  void read_exactly(char* out, std::uint64_t n, std::uint64_t offset, const std::string& what) const;
  /// Drops the descriptor now.
  void close();

  const std::string& name() const { return name_; }
  std::uint64_t size() const { return size_; }  ///< at open time

 private:
  int fd_ = -1;
  std::string name_;
  std::uint64_t size_ = 0;
};

/// A shard whose header alone has been read and validated; the file stays open for the data.
struct ShardHeader {
  ReadOnlyFile file;
  SafetensorsHeader header;
};

/// Reads and validates the header of the safetensors file at `path` without touching its data:
/// the length is checked against the file size before the header is allocated, every entry's
/// range against the data that follows (parse_safetensors_header_text).
ShardHeader read_shard_header(const std::filesystem::path& path);

/// For a sharded checkpoint: every tensor of shard i (tensor_names[i]) must be in the shard the
/// weight_map names and every listed tensor in its shard; SerializationError naming the index
/// otherwise. Nothing for a single file.
void check_index_agrees(const HfCheckpointFiles& files, const std::vector<std::vector<std::string>>& tensor_names);

}  // namespace peft::detail
