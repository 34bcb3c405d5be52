#pragma once
/// Load a plain Hugging Face checkpoint into a module tree by parameter name: a `model.safetensors`
/// file, or a directory holding `model.safetensors` or a sharded `model.safetensors.index.json`
/// (`{"weight_map": {"<param>": "<shard file>"}}`). Every shape is checked before any value is
/// copied, so a checkpoint for another architecture changes nothing.

#include <torch/nn/module.h>

#include <filesystem>
#include <algorithm>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/format/json_value.hpp"

namespace peft {

struct CheckpointReport {
  std::vector<std::string> missing;     ///< model tensors the checkpoint lacks
  std::vector<std::string> unexpected;  ///< checkpoint tensors the model lacks
};

/// Maps a checkpoint key to the model's key ("" = skip the tensor), for files whose names differ
/// from the module tree (models/causal_lm.hpp: a missing base-model prefix, dropped buffers).
using CheckpointRename = std::function<std::string(const std::string&)>;

/// Copy the checkpoint's tensors into `model`'s parameters and buffers (values are cast to the
/// model's dtype and device). strict: missing or unexpected keys are a SerializationError listing
/// them; otherwise they are returned. Shape mismatches are always errors. `rename` (optional) is
/// applied to every checkpoint key first; two keys landing on one model key are an error.
inline CheckpointReport load_checkpoint(torch::nn::Module& model, const std::filesystem::path& path,
                                        bool strict = true, const CheckpointRename& rename = {}) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "model.safetensors")) {
      files.push_back(path / "model.safetensors");
    } else if (fs::exists(path / "model.safetensors.index.json")) {
      const auto index_path = path / "model.safetensors.index.json";
      const JsonValue index = JsonValue::parse(read_text_file(index_path));
      const JsonValue* map = index.find("weight_map");
      if (!map || !map->is_object())
        throw SerializationError(index_path.string() + ": no `weight_map` object");
      for (const auto& [key, shard] : map->as_object()) {
        if (!shard.is_string() || shard.as_string().find("..") != std::string::npos ||
            fs::path(shard.as_string()).is_absolute())
          throw SerializationError(index_path.string() + ": bad shard name for `" + key + "`");
        const auto f = path / shard.as_string();
        if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
      }
    } else {
      throw SerializationError(path.string() + ": no model.safetensors or model.safetensors.index.json");
    }
  } else {
    files.push_back(path);
  }

  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : model.named_parameters()) targets[p.key()] = p.value();
  for (const auto& b : model.named_buffers()) targets[b.key()] = b.value();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  std::map<std::string, bool> seen;
  CheckpointReport report;
  for (const auto& f : files) {
    auto file = load_safetensors(f);
    for (auto& [file_key, t] : file.tensors) {
      const std::string key = rename ? rename(file_key) : file_key;
      if (key.empty()) continue;
      if (seen.count(key))
        throw SerializationError(f.string() + ": `" + file_key + "` and another tensor both load into `" + key + "`");
      auto it = targets.find(key);
      if (it == targets.end()) {
        report.unexpected.push_back(file_key);
        continue;
      }
      if (it->second.sizes() != t.sizes()) {
        std::ostringstream s;
        s << f.string() << ": `" << key << "` has shape " << t.sizes() << ", the model needs "
          << it->second.sizes();
        throw SerializationError(s.str());
      }
      seen[key] = true;
      copies.emplace_back(it->second, t);
    }
  }
  for (const auto& [key, t] : targets)
    if (!seen.count(key)) report.missing.push_back(key);
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = path.string() + ": checkpoint does not match the model.";
    auto list = [](const std::vector<std::string>& keys) {
      std::string out;
      for (std::size_t i = 0; i < keys.size() && i < 8; ++i) out += " " + keys[i];
      if (keys.size() > 8) out += " ... (" + std::to_string(keys.size()) + " in all)";
      return out + ".";
    };
    if (!report.missing.empty()) msg += " Missing:" + list(report.missing);
    if (!report.unexpected.empty()) msg += " Unexpected:" + list(report.unexpected);
    throw SerializationError(msg + " (pass strict=false to load the rest)");
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

}  // namespace peft
