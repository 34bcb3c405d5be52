// safetensors reader and writer. The header and every entry are validated by the LibTorch-free
// parse_safetensors_header (format/safetensors_header.cpp); this file turns the accepted entries into
// tensors (zero-copy views of a private mapping where aligned) and writes files.

#include "peft/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <memory>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/safetensors_header.hpp"

namespace peft {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  c10::ScalarType type;
  std::size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
    {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(c10::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw SerializationError(source + ": " + problem);
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

/// safetensors data is little-endian; swap each element in place on a big-endian host.
void to_or_from_little_endian(char* data, std::size_t nbytes, std::size_t elem_size) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if (elem_size > 1)
    for (std::size_t i = 0; i + elem_size <= nbytes; i += elem_size)
      std::reverse(data + i, data + i + elem_size);
#else
  (void)data;
  (void)nbytes;
  (void)elem_size;
#endif
}

std::string read_binary_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path.string(), "no such file");
  auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(path.string(), "cannot read (" + ec.message() + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), "cannot open for reading");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !in.read(&bytes[0], static_cast<std::streamsize>(size)))
    fail(path.string(), "read failed");
  return bytes;
}

std::string json_string(const std::string& s, const std::string& what) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    throw SerializationError("safetensors: " + what + " is not valid UTF-8");
  }
}

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
    const DtypeInfo* dtype = dtype_by_name(s.dtype);  // every name the header accepts has one
    if (!dtype) fail(src, "tensor " + in_quotes(s.name) + ": dtype " + s.dtype + " has no LibTorch type");
    torch::Tensor t;
    if (mapping && nbytes > 0 && host_is_little_endian() &&
        reinterpret_cast<std::uintptr_t>(from) % dtype->size == 0) {
      // Zero-copy: a view of the mapping that keeps it alive.
      std::shared_ptr<Mapping> keep = mapping;
      t = torch::from_blob(const_cast<char*>(from), s.shape, [keep](void*) {},
                           torch::TensorOptions().dtype(dtype->type));
      file.tensors.emplace_back(s.name, std::move(t));
      continue;
    }
    try {
      t = torch::empty(s.shape, torch::TensorOptions().dtype(dtype->type));
    } catch (const c10::Error& e) {
      fail(src, "tensor " + in_quotes(s.name) + ": cannot allocate (" + e.what_without_backtrace() +
                    ")");
    }
    if (nbytes > 0) {
      char* to = static_cast<char*>(t.data_ptr());
      std::memcpy(to, from, nbytes);
      to_or_from_little_endian(to, nbytes, dtype->size);
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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return parse_safetensors(read_binary_file(path), src);  // reports the reason
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 8) {
    ::close(fd);
    return parse_safetensors(read_binary_file(path), src);
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<std::size_t>(st.st_size);
  void* addr = ::mmap(nullptr, mapping->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) return parse_safetensors(read_binary_file(path), src);
  mapping->addr = addr;
  return parse_bytes(static_cast<const char*>(addr), mapping->size, src, mapping);
}

std::string serialize_safetensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::unordered_set<std::string> seen;
  for (const auto& kv : metadata)
    if (!seen.insert(kv.first).second)
      throw SerializationError("safetensors: duplicate metadata key " + in_quotes(kv.first));
  seen.clear();

  std::vector<torch::Tensor> cpu;
  std::vector<const DtypeInfo*> dtypes;
  cpu.reserve(tensors.size());
  dtypes.reserve(tensors.size());
  for (const auto& kv : tensors) {
    const std::string what = "tensor " + in_quotes(kv.first);
    if (kv.first == "__metadata__")
      throw SerializationError("safetensors: a tensor cannot be called \"__metadata__\"");
    if (!seen.insert(kv.first).second)
      throw SerializationError("safetensors: duplicate tensor name " + in_quotes(kv.first));
    if (!kv.second.defined()) throw SerializationError("safetensors: " + what + " is undefined");
    const DtypeInfo* d = dtype_by_type(kv.second.scalar_type());
    if (!d)
      throw SerializationError("safetensors: " + what + " has dtype " +
                               std::string(c10::toString(kv.second.scalar_type())) +
                               ", which safetensors files of peft-cpp cannot hold");
    cpu.push_back(kv.second.detach().to(torch::kCPU).contiguous());
    dtypes.push_back(d);
  }

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (std::size_t i = 0; i < metadata.size(); ++i) {
      if (i) header += ',';
      header += json_string(metadata[i].first, "metadata key") + ":" +
                json_string(metadata[i].second, "metadata value of " + in_quotes(metadata[i].first));
    }
    header += '}';
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const std::uint64_t nbytes = cpu[i].numel() * dtypes[i]->size;
    nlohmann::ordered_json entry;
    entry["dtype"] = dtypes[i]->name;
    entry["shape"] = cpu[i].sizes().vec();
    entry["data_offsets"] = {offset, offset + nbytes};
    offset += nbytes;
    if (header.size() > 1) header += ',';
    header += json_string(tensors[i].first, "tensor name") + ":" + entry.dump();
  }
  header += '}';
  while (header.size() % 8 != 0) header += ' ';

  std::string out;
  out.reserve(8 + header.size() + static_cast<std::size_t>(offset));
  std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  out += header;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const std::size_t nbytes = static_cast<std::size_t>(cpu[i].numel()) * dtypes[i]->size;
    if (nbytes == 0) continue;
    const std::size_t at = out.size();
    out.append(static_cast<const char*>(cpu[i].data_ptr()), nbytes);
    to_or_from_little_endian(&out[at], nbytes, dtypes[i]->size);
  }
  return out;
}

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::string bytes;
  try {
    bytes = serialize_safetensors(tensors, metadata);
  } catch (const SerializationError& e) {
    std::string msg = e.what();
    const std::string prefix = "safetensors: ";
    if (msg.compare(0, prefix.size(), prefix) == 0) msg.erase(0, prefix.size());
    throw SerializationError(path.string() + ": " + msg);
  }
  write_file_atomically(path, bytes);
}

}  // namespace peft
