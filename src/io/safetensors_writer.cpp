// The safetensors writer (io/safetensors_writer.hpp): header from the specs, then the data of one
// tensor at a time, into an atomic file or a string.

#include "peft/io/safetensors_writer.hpp"

#include <nlohmann/json.hpp>
#include <unordered_set>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/safetensors_dtype.hpp"

namespace peft {
namespace {

using detail::in_quotes;

/// `s` as a JSON string; names that are not UTF-8 are an error.
std::string json_string(const std::string& s, const std::string& source, const std::string& what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw SerializationError(source + ": " + what + " is not valid UTF-8");
  }
}

/// Bytes per element of each spec, after checking names, definedness and dtypes.
std::vector<std::size_t> check_specs(const std::vector<SafetensorsTensorSpec>& specs,
                                     const SafetensorsWriter::Metadata& metadata, const std::string& source) {
  std::unordered_set<std::string> seen;
  for (const auto& kv : metadata)
    if (!seen.insert(kv.first).second)
      throw SerializationError(source + ": duplicate metadata key " + in_quotes(kv.first));
  seen.clear();
  std::vector<std::size_t> sizes;
  sizes.reserve(specs.size());
  for (const auto& s : specs) {
    const std::string what = "tensor " + in_quotes(s.name);
    if (s.name == "__metadata__")
      throw SerializationError(source + ": a tensor cannot be called \"__metadata__\"");
    if (!seen.insert(s.name).second) throw SerializationError(source + ": duplicate tensor name " + in_quotes(s.name));
    if (s.dtype == torch::ScalarType::Undefined) throw SerializationError(source + ": " + what + " is undefined");
    const SafetensorsDtype* d = safetensors_dtype_of(s.dtype);
    if (!d)
      throw SerializationError(source + ": " + what + " has dtype " + std::string(c10::toString(s.dtype)) +
                               ", which safetensors files of peft-cpp cannot hold");
    sizes.push_back(d->size);
  }
  return sizes;
}

/// The 8-byte length and the padded JSON header; `data_bytes` receives the size of the data.
std::string header_bytes(const std::vector<SafetensorsTensorSpec>& specs, const SafetensorsWriter::Metadata& metadata,
                         const std::string& source, std::uint64_t& data_bytes) {
  const std::vector<std::size_t> sizes = check_specs(specs, metadata, source);
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (std::size_t i = 0; i < metadata.size(); ++i) {
      if (i) header += ',';
      header += json_string(metadata[i].first, source, "metadata key") + ":" +
                json_string(metadata[i].second, source, "metadata value of " + in_quotes(metadata[i].first));
    }
    header += '}';
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    std::uint64_t nbytes = sizes[i];
    for (auto d : specs[i].shape) nbytes *= static_cast<std::uint64_t>(d);
    nlohmann::ordered_json entry;
    entry["dtype"] = safetensors_dtype_of(specs[i].dtype)->name;
    entry["shape"] = specs[i].shape;
    entry["data_offsets"] = {offset, offset + nbytes};
    offset += nbytes;
    if (header.size() > 1) header += ',';
    header += json_string(specs[i].name, source, "tensor name") + ":" + entry.dump();
  }
  header += '}';
  while (header.size() % 8 != 0) header += ' ';
  data_bytes = offset;
  std::string out(8, '\0');
  const std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header;
}

}  // namespace

SafetensorsTensorSpec SafetensorsWriter::spec_of(const std::string& name, const torch::Tensor& t) {
  if (!t.defined()) return {name, torch::ScalarType::Undefined, {}};
  return {name, t.scalar_type(), t.sizes().vec()};
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<SafetensorsTensorSpec> specs,
                                     const Metadata& metadata)
    : source_(path.string()) {
  std::uint64_t data_bytes = 0;
  const std::string header = header_bytes(specs, metadata, source_, data_bytes);  // before creating anything
  file_ = std::make_unique<AtomicFileWriter>(path);
  specs_ = std::move(specs);
  bytes_ = header.size() + data_bytes;
  put(header.data(), header.size());
}

SafetensorsWriter::SafetensorsWriter(std::string* out, std::vector<SafetensorsTensorSpec> specs,
                                     const Metadata& metadata, const std::string& source)
    : source_(source), memory_(out) {
  std::uint64_t data_bytes = 0;
  const std::string header = header_bytes(specs, metadata, source_, data_bytes);
  specs_ = std::move(specs);
  bytes_ = header.size() + data_bytes;
  memory_->reserve(memory_->size() + static_cast<std::size_t>(bytes_));
  put(header.data(), header.size());
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::put(const char* data, std::size_t size) {
  if (size == 0) return;
  if (memory_)
    memory_->append(data, size);
  else
    file_->write(data, size);
}

void SafetensorsWriter::write(const torch::Tensor& t) {
  if (next_ >= specs_.size()) throw Error("internal: " + source_ + ": more tensors than announced");
  const SafetensorsTensorSpec& spec = specs_[next_++];
  if (!t.defined() || t.scalar_type() != spec.dtype || t.sizes().vec() != spec.shape)
    throw Error("internal: " + source_ + ": tensor " + detail::ticked(spec.name) + " does not match its header entry");
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  const std::size_t nbytes = static_cast<std::size_t>(c.numel()) * c.element_size();
  const char* data = static_cast<const char*>(c.data_ptr());
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  std::string swapped(data, nbytes);  // the tensor itself is left as it is
  detail::to_or_from_little_endian(&swapped[0], nbytes, c.element_size());
  put(swapped.data(), nbytes);
#else
  put(data, nbytes);
#endif
}

void SafetensorsWriter::commit() {
  if (next_ != specs_.size()) throw Error("internal: " + source_ + " is missing tensors");
  if (file_) file_->commit();
}

}  // namespace peft
