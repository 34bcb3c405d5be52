// File reading with a size limit, and atomic replacement (temp file + fsync + rename + fsync of
// the directory). A process killed at any point leaves either the old or the new file under the
// final name (plus, at worst, a stray `<name>.tmp-*` that no reader looks at); the directory
// fsync makes the rename itself survive a power loss, not only a killed process.

#include "peft/format/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "peft/error.hpp"

namespace peft {

int open_regular_file(const std::filesystem::path& path, std::uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw SerializationError(path.string() + ": no such file");
    throw SerializationError(path.string() + ": cannot open (" + std::strerror(err) + ")");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw SerializationError(path.string() + ": not a regular file (a directory, FIFO or device)");
  }
  if (size) *size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes) {
  std::uint64_t size = 0;
  const int fd = open_regular_file(path, &size);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (size > max_bytes)
    throw SerializationError(path.string() + ": file is " + std::to_string(size) +
                             " bytes, more than the limit of " + std::to_string(max_bytes));
  std::string bytes(static_cast<std::size_t>(size), '\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, &bytes[done], bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw SerializationError(path.string() + ": read error (" + std::strerror(errno) + ")");
    if (n == 0) break;  // truncated meanwhile: return what is there
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
  std::error_code ec;
  if (path_.has_parent_path()) {
    std::filesystem::create_directories(path_.parent_path(), ec);
    if (ec)
      throw SerializationError(path_.parent_path().string() + ": cannot create directory (" +
                               ec.message() + ")");
  }
  tmp_ = path_.string() + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw SerializationError(tmp_.string() + ": cannot create (" + std::strerror(errno) + ")");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ < 0) return;  // committed (or never opened)
  ::close(fd_);
  std::error_code ec;
  std::filesystem::remove(tmp_, ec);
}

void AtomicFileWriter::write(const char* p, std::size_t left) {
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw SerializationError(tmp_.string() + ": write failed (" + std::strerror(errno) + ")");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  std::error_code ec;
  int sync_rc = ::fsync(fd_);
  int sync_err = errno;
  int close_rc = ::close(fd_);
  fd_ = -1;
  if (sync_rc != 0 || close_rc != 0) {
    int err = sync_rc != 0 ? sync_err : errno;
    std::filesystem::remove(tmp_, ec);
    throw SerializationError(tmp_.string() + ": flush failed (" + std::strerror(err) + ")");
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::filesystem::remove(tmp_, ec);
    throw SerializationError(path_.string() + ": cannot replace (" + std::strerror(err) + ")");
  }
  // Persist the directory entry. Failure here is not reported: the file is complete and in
  // place for every reader; only durability across a power loss is weaker (some filesystems
  // refuse fsync on a directory).
  const std::filesystem::path dir = path_.has_parent_path() ? path_.parent_path() : ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::filesystem::path& path, const std::string& bytes) {
  AtomicFileWriter file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace peft
