#pragma once
/// The one safetensors writer (save_safetensors, serialize_safetensors and peft-merge use it):
/// the header is built from the tensor list up front, then the data follows one tensor at a time,
/// so a file is never held in memory whole.
///
///   SafetensorsWriter w(path, {{"w", torch::kFloat32, {2, 3}}}, {{"format", "pt"}});
///   w.write(t);    // each tensor in the announced order, dtype and shape
///   w.commit();    // the file appears under `path` atomically (format/atomic_file.hpp)
///
/// Header layout (as the Python library writes it): keys in the given order, `__metadata__`
/// first when there is any, data_offsets consecutive, compact JSON padded with spaces to a
/// multiple of 8 bytes. Data is little-endian and row-major.

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace peft {

class AtomicFileWriter;

/// One header entry: what will be written under `name`.
struct SafetensorsTensorSpec {
  std::string name;
  torch::ScalarType dtype;
  std::vector<std::int64_t> shape;
};

class SafetensorsWriter {
 public:
  using Metadata = std::vector<std::pair<std::string, std::string>>;

  /// The entry of a tensor to be written (an undefined tensor gets dtype Undefined, which the
  /// constructor rejects).
  static SafetensorsTensorSpec spec_of(const std::string& name, const torch::Tensor& t);

  /// Writes the header to a temporary file beside `path` (nothing appears under `path` before
  /// commit()). Throws SerializationError naming `path` for duplicate names or metadata keys, a
  /// tensor called `__metadata__`, an undefined tensor, a dtype safetensors cannot hold or
  /// names that are not UTF-8.
  SafetensorsWriter(const std::filesystem::path& path, std::vector<SafetensorsTensorSpec> specs,
                    const Metadata& metadata = {});
  /// The same into memory: the header is appended to `*out` now, each tensor on write().
  /// Errors start with `source` instead of the path.
  SafetensorsWriter(std::string* out, std::vector<SafetensorsTensorSpec> specs, const Metadata& metadata,
                    const std::string& source);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  /// The next tensor: same dtype and shape as its spec (any device and layout; it is copied to
  /// the CPU and made contiguous as needed).
  void write(const torch::Tensor& t);
  /// After the last tensor: the file is complete and in place.
  void commit();
  /// Size of the whole file (header and data) in bytes.
  std::uint64_t bytes() const { return bytes_; }

 private:
  void start(std::vector<SafetensorsTensorSpec> specs, const Metadata& metadata);
  void put(const char* data, std::size_t size);

  std::string source_;
  std::unique_ptr<AtomicFileWriter> file_;
  std::string* memory_ = nullptr;
  std::vector<SafetensorsTensorSpec> specs_;
  std::size_t next_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace peft
