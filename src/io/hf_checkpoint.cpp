// Hugging Face checkpoints (io/hf_checkpoint.hpp): resolving the shard files and reading them
// whole (peft-merge). The streaming load_checkpoint is in io/checkpoint_loader.cpp.

#include "peft/io/hf_checkpoint.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/detail/checkpoint_files.hpp"

namespace peft {
namespace {

namespace fs = std::filesystem;
using detail::ticked;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

/// A shard name the index may give: a plain file name beside the index, so a checkpoint cannot
/// make a reader open files elsewhere, ending in ".safetensors", so it cannot collide with the
/// index or a side file (config.json, tokenizer.json...) that peft-merge writes beside the shards.
bool shard_file_name(const std::string& name) {
  const std::string ext = ".safetensors";
  return name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0 &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos &&
         name.find("..") == std::string::npos && !fs::path(name).is_absolute();
}

}  // namespace

HfCheckpointFiles resolve_hf_checkpoint(const fs::path& path) {
  HfCheckpointFiles files;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    files.shard_names.push_back(path.filename().string());
    files.shards.push_back(path);
    return files;
  }
  files.dir = path;
  if (fs::exists(path / kSingleFile, ec)) {
    files.shard_names.push_back(kSingleFile);
    files.shards.push_back(path / kSingleFile);
    return files;
  }
  if (!fs::exists(path / kIndexFile, ec)) {
    if (fs::exists(path / "pytorch_model.bin", ec) || fs::exists(path / "pytorch_model.bin.index.json", ec))
      throw SerializationError(path.string() + ": only pytorch_model.bin (pickle) weights; peft-cpp reads "
                               "safetensors (hint: convert with transformers: model.save_pretrained(dir, "
                               "safe_serialization=True))");
    throw SerializationError(path.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  files.index_path = path / kIndexFile;
  files.index = JsonValue::parse(read_text_file(files.index_path));
  const JsonValue* map = files.weight_map();
  if (!map || !map->is_object()) throw SerializationError(files.index_path.string() + ": no `weight_map` object");
  for (const auto& [key, shard] : map->as_object()) {
    if (!shard.is_string() || !shard_file_name(shard.as_string()))
      throw SerializationError(files.index_path.string() + ": bad shard name for " + ticked(key) + " (" +
                               shard.dump() + "; shards are plain *.safetensors file names beside the index)");
    const std::string& name = shard.as_string();
    if (std::find(files.shard_names.begin(), files.shard_names.end(), name) == files.shard_names.end()) {
      files.shard_names.push_back(name);
      files.shards.push_back(path / name);
    }
  }
  return files;
}

void detail::check_index_agrees(const HfCheckpointFiles& files,
                                const std::vector<std::vector<std::string>>& tensor_names) {
  const JsonValue* map = files.weight_map();
  if (!map) return;
  // The index and the shards must agree, or a reader (and peft-merge's output index) would lie.
  const std::string index = files.index_path.string();
  std::set<std::string> in_files;
  for (std::size_t i = 0; i < tensor_names.size(); ++i)
    for (const auto& name : tensor_names[i]) {
      const JsonValue* where = map->find(name);
      if (!where || where->as_string() != files.shard_names[i])
        throw SerializationError(index + ": " + ticked(name) + " is in " + files.shard_names[i] +
                                 " but the weight_map says otherwise");
      in_files.insert(name);
    }
  for (const auto& kv : map->as_object())
    if (!in_files.count(kv.first))
      throw SerializationError(index + ": " + ticked(kv.first) + " is listed but not in " + kv.second.as_string());
}

HfCheckpoint open_hf_checkpoint(const fs::path& path) {
  HfCheckpoint cp;
  cp.files = resolve_hf_checkpoint(path);
  for (const auto& f : cp.files.shards) cp.shards.push_back(load_safetensors(f));
  std::vector<std::vector<std::string>> names;
  for (const auto& shard : cp.shards) {
    names.emplace_back();
    for (const auto& kv : shard.tensors) names.back().push_back(kv.first);
  }
  detail::check_index_agrees(cp.files, names);
  return cp;
}

}  // namespace peft
