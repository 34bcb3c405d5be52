#pragma once
/// Small, crash-safe file helpers shared by every writer of the library.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace peft {

/// Open `path` read-only when it is a regular file and return the descriptor (the caller closes
/// it); `size` (if given) receives the file size. Opened O_NONBLOCK, so a FIFO or device put where
/// a file belongs fails at once instead of blocking the reader forever. SerializationError naming
/// the path: "no such file", "cannot open (<errno>)", "not a regular file".
int open_regular_file(const std::filesystem::path& path, std::uint64_t* size = nullptr);

/// Read a whole file. Throws SerializationError naming the path when it is missing, unreadable,
/// not a regular file (open_regular_file) or larger than `max_bytes`.
std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes = 64u << 20);

/// Write `bytes` to `path` atomically: write `path`.tmp-<pid> in the same directory, fsync,
/// rename over `path`, fsync the directory. A kill at any moment leaves the old or the new file,
/// never a torn one. Creates missing parent directories. On failure the previous file is left
/// untouched and the temporary file removed; throws SerializationError. Not for two threads of
/// one process writing the same path at once (they share the temporary name).
void write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

/// write_file_atomically in pieces, for files too large to hold in memory: the constructor
/// creates `path`.tmp-<pid>, write() appends, commit() fsyncs and renames it over `path`.
/// Destroyed without commit() (an error on the way), it removes the temporary file and `path`
/// stays as it was. Errors are SerializationErrors naming the file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const char* data, std::size_t size);
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
};

}  // namespace peft
