// Hugging Face checkpoints (io/hf_checkpoint.hpp): resolving the shard files, reading them and
// loading them into a module tree by parameter name.

#include "peft/io/hf_checkpoint.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"

namespace peft {
namespace {

namespace fs = std::filesystem;
using detail::ticked;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

/// A shard name the index may give: a plain file name beside the index, so a checkpoint cannot
/// make a reader open files elsewhere.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos && name.find("..") == std::string::npos &&
         !fs::path(name).is_absolute();
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
    if (!shard.is_string() || !plain_file_name(shard.as_string()))
      throw SerializationError(files.index_path.string() + ": bad shard name for " + ticked(key) + " (" +
                               shard.dump() + "; shards are plain file names beside the index)");
    const std::string& name = shard.as_string();
    if (std::find(files.shard_names.begin(), files.shard_names.end(), name) == files.shard_names.end()) {
      files.shard_names.push_back(name);
      files.shards.push_back(path / name);
    }
  }
  return files;
}

HfCheckpoint open_hf_checkpoint(const fs::path& path) {
  HfCheckpoint cp;
  cp.files = resolve_hf_checkpoint(path);
  for (const auto& f : cp.files.shards) cp.shards.push_back(load_safetensors(f));
  const JsonValue* map = cp.files.weight_map();
  if (!map) return cp;
  // The index and the shards must agree, or a reader (and peft-merge's output index) would lie.
  const std::string index = cp.files.index_path.string();
  std::set<std::string> in_files;
  for (std::size_t i = 0; i < cp.shards.size(); ++i)
    for (const auto& kv : cp.shards[i].tensors) {
      const JsonValue* where = map->find(kv.first);
      if (!where || where->as_string() != cp.files.shard_names[i])
        throw SerializationError(index + ": " + ticked(kv.first) + " is in " + cp.files.shard_names[i] +
                                 " but the weight_map says otherwise");
      in_files.insert(kv.first);
    }
  for (const auto& kv : map->as_object())
    if (!in_files.count(kv.first))
      throw SerializationError(index + ": " + ticked(kv.first) + " is listed but not in " + kv.second.as_string());
  return cp;
}

CheckpointReport load_checkpoint(torch::nn::Module& model, const fs::path& path, bool strict,
                                 const CheckpointRename& rename) {
  const HfCheckpoint cp = open_hf_checkpoint(path);
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : model.named_parameters()) targets[p.key()] = p.value();
  for (const auto& b : model.named_buffers()) targets[b.key()] = b.value();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  std::set<std::string> seen;
  CheckpointReport report;
  for (std::size_t i = 0; i < cp.shards.size(); ++i) {
    const std::string f = cp.files.shards[i].string();
    for (const auto& [file_key, t] : cp.shards[i].tensors) {
      const std::string key = rename ? rename(file_key) : file_key;
      if (key.empty()) continue;
      if (seen.count(key))
        throw SerializationError(f + ": `" + file_key + "` and another tensor both load into `" + key + "`");
      auto it = targets.find(key);
      if (it == targets.end()) {
        report.unexpected.push_back(file_key);
        continue;
      }
      if (it->second.sizes() != t.sizes())
        throw SerializationError(f + ": `" + key + "` has shape " + detail::shape_string(t.sizes()) +
                                 ", the model needs " + detail::shape_string(it->second.sizes()));
      seen.insert(key);
      copies.emplace_back(it->second, t);
    }
  }
  for (const auto& [key, t] : targets)
    if (!seen.count(key)) report.missing.push_back(key);
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = path.string() + ": checkpoint does not match the model.";
    auto list = [](const std::vector<std::string>& keys) { return " " + detail::abbreviated_list(keys, 8, " ") + "."; };
    if (!report.missing.empty()) msg += " Missing:" + list(report.missing);
    if (!report.unexpected.empty()) msg += " Unexpected:" + list(report.unexpected);
    throw SerializationError(msg + " (pass strict=false to load the rest)");
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

}  // namespace peft
