#pragma once
/// Reading and writing the safetensors format (what PEFT's save_pretrained writes as
/// adapter_model.safetensors): an 8-byte little-endian header length N, N bytes of JSON header
/// ({"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets"}, ...}), then the
/// raw little-endian, row-major data; data_offsets are relative to the start of the data.
///
/// Supported dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL. Every malformed input is
/// reported as a peft::SerializationError that names the file and the problem.

#include <torch/types.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace peft {

/// One file's tensors in header order, plus its __metadata__ (string -> string).
struct SafetensorsFile {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;

  /// The tensor called `name`, or nullptr.
  const torch::Tensor* find(const std::string& name) const;
};

/// Read and validate a whole file, memory-mapped copy-on-write: tensors whose data is aligned for
/// their dtype view the mapping without a copy (and keep it alive); others are copied. All are
/// contiguous CPU tensors; writing to them never changes the file.
SafetensorsFile load_safetensors(const std::filesystem::path& path);

/// Validate and decode a file already in memory; `source_name` names it in error messages.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& source_name);

/// The bytes of a safetensors file: header keys in the given order (`__metadata__` first when
/// `metadata` is not empty), data offsets consecutive, header padded with spaces to a multiple of
/// 8 bytes as the Python library does. Tensors are moved to the CPU and made contiguous first.
/// Throws SerializationError for duplicate names, a tensor called `__metadata__`, an undefined
/// tensor or an unsupported dtype.
std::string serialize_safetensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::vector<std::pair<std::string, std::string>>& metadata = {});

/// The bytes of serialize_safetensors, written to `path` atomically one tensor at a time
/// (io/safetensors_writer.hpp); errors name the path and leave an existing file as it was.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata = {});

}  // namespace peft
