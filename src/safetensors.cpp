// safetensors reader and writer. The header is checked in two steps: a SAX pass over the raw JSON
// (syntax, nesting depth, duplicate keys — a DOM keeps only one of two equal keys — and the key
// order), then a DOM built from the already-checked text. The DOM is a plain nlohmann::json
// (std::map objects) read back in the recorded key order: an ordered_json object finds keys by
// linear search while it is built, which makes a 100 MB header of tiny entries quadratic.

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
#include "peft/io/atomic_file.hpp"

namespace peft {
namespace {

using json = nlohmann::json;

/// The Python library's limit on the header length.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
/// Root object -> tensor entry object -> shape / data_offsets array.
constexpr int kMaxDepth = 3;

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

/// Valid safetensors dtypes that have no LibTorch 1.13 counterpart.
constexpr const char* kKnownUnsupported[] = {"U16",     "U32",     "U64",     "F8_E4M3", "F8_E5M2",
                                             "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "C64"};

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

/// First pass over the header text: syntax, nesting depth and duplicate keys; records the
/// top-level keys and the keys of __metadata__ in file order.
class HeaderScanner : public nlohmann::json_sax<json> {
 public:
  std::string error;
  std::vector<std::string> top_keys;
  std::vector<std::string> metadata_keys;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }

  bool start_object(std::size_t) override {
    if (!enter()) return false;
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      error = depth_ == 1 ? "duplicate tensor name " + in_quotes(k)
                          : "duplicate key " + in_quotes(k) + " in the entry " +
                                in_quotes(top_keys.empty() ? std::string() : top_keys.back());
      return false;
    }
    if (depth_ == 1) top_keys.push_back(k);
    if (depth_ == 2 && !top_keys.empty() && top_keys.back() == "__metadata__")
      metadata_keys.push_back(k);
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = std::string("header is not valid JSON (") + ex.what() + ")";
    return false;
  }

 private:
  bool enter() {
    if (depth_ >= kMaxDepth) {
      error = "header nests objects/arrays deeper than a safetensors header can (" +
              std::to_string(kMaxDepth) + " levels)";
      return false;
    }
    ++depth_;
    return true;
  }
  int depth_ = 0;
  std::vector<std::unordered_set<std::string>> keys_;
};

/// A JSON integer >= 0 (`-0` included), as uint64; nullopt-like via the bool.
bool non_negative_integer(const json& v, std::uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<std::int64_t>() == 0) {  // "-0"
    out = 0;
    return true;
  }
  return false;
}

std::string describe(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return "negative " + v.dump();
  if (v.is_number_float()) return "non-integer " + v.dump();
  return std::string(v.type_name()) + " " + v.dump();
}

struct TensorSpec {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;
};

TensorSpec parse_entry(const std::string& source, const std::string& name, const json& entry,
                       std::uint64_t data_size) {
  const std::string what = "tensor " + in_quotes(name);
  if (!entry.is_object()) fail(source, "entry " + in_quotes(name) + " is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end()) fail(source, what + " has no \"dtype\"");
  if (shape_it == entry.end()) fail(source, what + " has no \"shape\"");
  if (offsets_it == entry.end()) fail(source, what + " has no \"data_offsets\"");

  TensorSpec spec;
  spec.name = name;
  if (!dtype_it->is_string()) fail(source, what + ": \"dtype\" is not a string");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  spec.dtype = dtype_by_name(dtype_name);
  if (!spec.dtype) {
    for (const char* known : kKnownUnsupported)
      if (dtype_name == known)
        fail(source, what + " has dtype " + dtype_name + ", which peft-cpp does not support");
    fail(source, what + " has unknown dtype " + in_quotes(dtype_name));
  }

  if (!shape_it->is_array()) fail(source, what + ": \"shape\" is not an array");
  // `span` (the product with zeros counted as 1) bounds the element count and the largest
  // stride, so a zero-element shape whose strides would overflow int64 is rejected too.
  std::uint64_t numel = 1, span = 1;
  constexpr auto kMaxI64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (const json& d : *shape_it) {
    std::uint64_t dim = 0;
    if (!non_negative_integer(d, dim))
      fail(source, what + ": shape dimension " + describe(d) +
                       " is not a non-negative integer");
    if (dim > kMaxI64 || __builtin_mul_overflow(span, std::max<std::uint64_t>(dim, 1), &span) ||
        span > kMaxI64)
      fail(source, what + ": the element count of shape " + shape_it->dump() + " overflows");
    numel *= dim;
    spec.shape.push_back(static_cast<std::int64_t>(dim));
  }
  std::uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(spec.dtype->size), &nbytes))
    fail(source, what + ": the byte size of shape " + shape_it->dump() + " overflows");

  const json& off = *offsets_it;
  if (!off.is_array() || off.size() != 2 || !non_negative_integer(off[0], spec.begin) ||
      !non_negative_integer(off[1], spec.end))
    fail(source, what + ": \"data_offsets\" " + off.dump() +
                     " is not two non-negative integers [begin, end]");
  if (spec.end < spec.begin)
    fail(source, what + ": data_offsets " + off.dump() + " end before they begin");
  if (spec.end > data_size)
    fail(source, what + ": data_offsets " + off.dump() + " reach beyond the data buffer (" +
                     std::to_string(data_size) + " bytes)");
  if (spec.end - spec.begin != nbytes)
    fail(source, what + ": data_offsets " + off.dump() + " span " +
                     std::to_string(spec.end - spec.begin) + " bytes but " + dtype_name +
                     " with shape " + shape_it->dump() + " needs " + std::to_string(nbytes));
  return spec;
}

void parse_metadata(const std::string& source, const json& meta,
                    const std::vector<std::string>& keys,
                    std::vector<std::pair<std::string, std::string>>& out) {
  if (!meta.is_object())
    fail(source, "\"__metadata__\" is a JSON " + std::string(meta.type_name()) +
                     ", not an object of strings");
  for (const std::string& k : keys) {
    const json& v = meta.at(k);
    if (!v.is_string())
      fail(source, "\"__metadata__\" value of " + in_quotes(k) + " is a JSON " +
                       std::string(v.type_name()) + ", not a string");
    out.emplace_back(k, v.get<std::string>());
  }
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
  if (size < 8)
    fail(src, "file is " + std::to_string(size) +
                  " bytes, shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<unsigned char>(base[static_cast<std::size_t>(i)]);
  if (header_len > kMaxHeaderBytes)
    fail(src, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                  std::to_string(kMaxHeaderBytes) + " bytes");
  const std::uint64_t rest = size - 8;
  if (header_len > rest)
    fail(src, "header length " + std::to_string(header_len) + " is larger than the " +
                  std::to_string(rest) + " bytes that follow it");
  const std::string header_text(base + 8, static_cast<std::size_t>(header_len));
  const std::uint64_t data_size = rest - header_len;
  const char* data = base + 8 + header_len;

  // nlohmann's lexer takes a NUL byte for the end of the input, which would let anything after
  // "{...}\0" through; a JSON text can only hold one as a (rejected) raw control character.
  const auto nul = header_text.find('\0');
  if (nul != std::string::npos)
    fail(src, "header is not valid JSON (NUL byte at header offset " + std::to_string(nul) + ")");

  HeaderScanner scan;
  bool ok = false;
  try {
    ok = json::sax_parse(header_text, &scan);
  } catch (const json::exception& e) {
    fail(src, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!ok) fail(src, scan.error.empty() ? "header is not valid JSON" : scan.error);
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail(src, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object())
    fail(src, "header is a JSON " + std::string(header.type_name()) + ", not an object");

  SafetensorsFile file;
  std::vector<TensorSpec> specs;
  specs.reserve(scan.top_keys.size());
  for (const std::string& name : scan.top_keys) {
    const json& entry = header.at(name);
    if (name == "__metadata__")
      parse_metadata(src, entry, scan.metadata_keys, file.metadata);
    else
      specs.push_back(parse_entry(src, name, entry, data_size));
  }

  // Overlaps: sorted by (begin, end), each range must start at or after every earlier end.
  std::vector<const TensorSpec*> by_offset;
  by_offset.reserve(specs.size());
  for (const auto& s : specs) by_offset.push_back(&s);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorSpec* a, const TensorSpec* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const TensorSpec* furthest = nullptr;
  for (const TensorSpec* s : by_offset) {
    if (furthest && s->begin < furthest->end)
      fail(src, "tensors " + in_quotes(furthest->name) + " and " + in_quotes(s->name) +
                    " overlap in the data buffer");
    if (!furthest || s->end > furthest->end) furthest = s;
  }

  file.tensors.reserve(specs.size());
  for (const auto& s : specs) {
    const std::size_t nbytes = static_cast<std::size_t>(s.end - s.begin);
    const char* from = data + s.begin;
    if (s.dtype->type == torch::kBool)
      for (std::size_t i = 0; i < nbytes; ++i)
        if (static_cast<unsigned char>(from[i]) > 1)
          fail(src, "tensor " + in_quotes(s.name) + " (BOOL) holds byte " +
                        std::to_string(static_cast<unsigned char>(from[i])) + " at element " +
                        std::to_string(i) + "; only 0 and 1 are valid");
    torch::Tensor t;
    if (mapping && nbytes > 0 && host_is_little_endian() &&
        reinterpret_cast<std::uintptr_t>(from) % s.dtype->size == 0) {
      // Zero-copy: a view of the mapping that keeps it alive.
      std::shared_ptr<Mapping> keep = mapping;
      t = torch::from_blob(const_cast<char*>(from), s.shape, [keep](void*) {},
                           torch::TensorOptions().dtype(s.dtype->type));
      file.tensors.emplace_back(s.name, std::move(t));
      continue;
    }
    try {
      t = torch::empty(s.shape, torch::TensorOptions().dtype(s.dtype->type));
    } catch (const c10::Error& e) {
      fail(src, "tensor " + in_quotes(s.name) + ": cannot allocate (" + e.what_without_backtrace() +
                    ")");
    }
    if (nbytes > 0) {
      char* to = static_cast<char*>(t.data_ptr());
      std::memcpy(to, from, nbytes);
      to_or_from_little_endian(to, nbytes, s.dtype->size);
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
