// checksums.json of training checkpoints (peft/train/checkpoint_manifest.hpp).

#include "peft/train/checkpoint_manifest.hpp"

#include <algorithm>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/checksum.hpp"
#include "peft/format/json_value.hpp"

namespace peft::train {

namespace {
constexpr std::int64_t kManifestFormat = 1;

bool plain_file_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}
}  // namespace

std::vector<ManifestEntry> parse_checkpoint_manifest(const std::string& text, const std::string& where,
                                                     const std::vector<std::string>& expected) {
  JsonValue j;
  try {
    j = JsonValue::parse(text);
  } catch (const std::exception& e) {
    throw SerializationError(where + ": not valid JSON (" + e.what() + ")");
  }
  const JsonValue* format = j.find("format");
  if (!format || !format->is_int() || format->as_int() != kManifestFormat)
    throw SerializationError(where + ": `format` must be " + std::to_string(kManifestFormat));
  const JsonValue* files = j.find("files");
  if (!files || !files->is_object()) throw SerializationError(where + ": `files` missing or not an object");
  std::vector<ManifestEntry> found;
  for (const auto& [name, e] : files->as_object()) {
    if (!plain_file_name(name)) throw SerializationError(where + ": `" + name + "` is not a file name");
    if (std::find(expected.begin(), expected.end(), name) == expected.end())
      throw SerializationError(where + ": lists `" + name + "`, which a checkpoint does not hold");
    for (const auto& f : found)
      if (f.file == name) throw SerializationError(where + ": lists `" + name + "` twice");
    const JsonValue* size = e.find("size");
    const JsonValue* crc = e.find("crc32");
    ManifestEntry m;
    m.file = name;
    if (!size || !size->is_int() || size->as_int() < 0)
      throw SerializationError(where + ": files." + name + ".size missing or not a byte count");
    m.size = static_cast<std::uint64_t>(size->as_int());
    if (!crc || !crc->is_string() || !parse_crc32_hex(crc->as_string(), m.crc32))
      throw SerializationError(where + ": files." + name + ".crc32 missing or not 8 hex digits");
    found.push_back(std::move(m));
  }
  std::vector<ManifestEntry> out;
  for (const auto& name : expected) {
    auto it = std::find_if(found.begin(), found.end(), [&](const ManifestEntry& m) { return m.file == name; });
    if (it == found.end()) throw SerializationError(where + ": no checksum for `" + name + "`");
    out.push_back(*it);
  }
  return out;
}

void write_checkpoint_manifest(const std::filesystem::path& dir, const std::vector<std::string>& files) {
  JsonValue entries = JsonValue::object();
  for (const auto& name : files) {
    const FileChecksum c = checksum_file(dir / name);
    JsonValue e = JsonValue::object();
    e.set("size", static_cast<std::int64_t>(c.size));
    e.set("crc32", crc32_hex(c.crc32));
    entries.set(name, std::move(e));
  }
  JsonValue m = JsonValue::object();
  m.set("format", kManifestFormat);
  m.set("files", std::move(entries));
  write_file_atomically(dir / kCheckpointManifestFile, m.dump(1) + "\n");
}

void verify_checkpoint_files(const std::filesystem::path& dir, const std::vector<std::string>& expected,
                             const std::vector<std::string>& check) {
  const auto manifest_path = dir / kCheckpointManifestFile;
  const auto entries = parse_checkpoint_manifest(read_text_file(manifest_path, 1u << 20), manifest_path.string(), expected);
  for (const auto& e : entries) {
    if (!check.empty() && std::find(check.begin(), check.end(), e.file) == check.end()) continue;
    const auto path = dir / e.file;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw SerializationError(path.string() + ": missing or unreadable (" + ec.message() + ")");
    if (size != e.size)
      throw SerializationError(path.string() + ": " + std::to_string(size) + " bytes, " + kCheckpointManifestFile +
                               " recorded " + std::to_string(e.size) + " (truncated or replaced)");
    const FileChecksum c = checksum_file(path);
    if (c.crc32 != e.crc32)
      throw SerializationError(path.string() + ": CRC-32 " + crc32_hex(c.crc32) + ", " + kCheckpointManifestFile +
                               " recorded " + crc32_hex(e.crc32) + " (the file changed after it was written)");
  }
}

}  // namespace peft::train
