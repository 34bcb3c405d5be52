// safetensors reader. The header and every entry are validated by the LibTorch-free
// parse_safetensors_header (format/safetensors_header.cpp); this file turns the accepted entries into
// tensors (zero-copy views of a private mapping where aligned). Writing is io/safetensors_writer.

#include "peft/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/safetensors_header.hpp"
#include "peft/io/safetensors_dtype.hpp"
#include "peft/io/safetensors_writer.hpp"

namespace peft {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw SerializationError(source + ": " + problem);
}

using detail::in_quotes;

}  // namespace

const torch::Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return &kv.second;
  return nullptr;
}

namespace {

/// A file mapped copy-on-write (PROT_WRITE + MAP_PRIVATE), so tensors viewing it may be written
/// without touching the file.
struct Mapping {
  void* addr = nullptr;
  std::size_t size = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

bool host_is_little_endian() {
  const std::uint16_t one = 1;
  return *reinterpret_cast<const unsigned char*>(&one) == 1;
}

/// Parses `size` bytes at `base`. With `mapping`, tensors whose data is aligned for their dtype
/// (and a little-endian host) view the mapping without a copy and keep it alive.
SafetensorsFile parse_bytes(const char* base, std::size_t size, const std::string& source_name,
                            const std::shared_ptr<Mapping>& mapping) {
  const std::string& src = source_name;
  const SafetensorsHeader header = parse_safetensors_header(base, size, src);
  const char* data = base + header.data_start;
  SafetensorsFile file;
  file.metadata = header.metadata;
  const auto& specs = header.entries;
  file.tensors.reserve(specs.size());
  for (const auto& s : specs) {
    const std::size_t nbytes = static_cast<std::size_t>(s.end - s.begin);
    const char* from = data + s.begin;
    const auto dtype = torch_dtype_of(s.dtype);  // every name the header accepts has one
    if (!dtype) fail(src, "tensor " + in_quotes(s.name) + ": dtype " + s.dtype + " has no LibTorch type");
    torch::Tensor t;
    if (mapping && nbytes > 0 && host_is_little_endian() &&
        reinterpret_cast<std::uintptr_t>(from) % s.dtype_size == 0) {
      // Zero-copy: a view of the mapping that keeps it alive.
      std::shared_ptr<Mapping> keep = mapping;
      t = torch::from_blob(const_cast<char*>(from), s.shape, [keep](void*) {},
                           torch::TensorOptions().dtype(*dtype));
      file.tensors.emplace_back(s.name, std::move(t));
      continue;
    }
    try {
      t = torch::empty(s.shape, torch::TensorOptions().dtype(*dtype));
    } catch (const c10::Error& e) {
      fail(src, "tensor " + in_quotes(s.name) + ": cannot allocate (" + e.what_without_backtrace() +
                    ")");
    }
    if (nbytes > 0) {
      char* to = static_cast<char*>(t.data_ptr());
      std::memcpy(to, from, nbytes);
      detail::to_or_from_little_endian(to, nbytes, s.dtype_size);
    }
    file.tensors.emplace_back(s.name, std::move(t));
  }
  return file;
}

}  // namespace

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source_name) {
  return parse_bytes(bytes.data(), bytes.size(), source_name, nullptr);
}

SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  const std::string src = path.string();
  // Small files are read (mmap needs a length); a FIFO or device is refused, not waited on.
  constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();
  std::uint64_t size = 0;
  const int fd = open_regular_file(path, &size);
  if (size < 8) {
    ::close(fd);
    return parse_safetensors(read_text_file(path, kNoLimit), src);
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<std::size_t>(size);
  void* addr = ::mmap(nullptr, mapping->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) return parse_safetensors(read_text_file(path, kNoLimit), src);
  mapping->addr = addr;
  return parse_bytes(static_cast<const char*>(addr), mapping->size, src, mapping);
}

std::string serialize_safetensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) specs.push_back(SafetensorsWriter::spec_of(name, t));
  std::string out;
  SafetensorsWriter writer(&out, std::move(specs), metadata, "safetensors");
  for (const auto& kv : tensors) writer.write(kv.second);
  writer.commit();
  return out;
}

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) specs.push_back(SafetensorsWriter::spec_of(name, t));
  SafetensorsWriter writer(path, std::move(specs), metadata);
  for (const auto& kv : tensors) writer.write(kv.second);
  writer.commit();
}

}  // namespace peft
