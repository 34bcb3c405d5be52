// save_model / state_dict (include/peft/io/save_model.hpp).

#include "peft/io/save_model.hpp"

#include <cstdio>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/safetensors.hpp"

namespace peft {

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

void save_model(const torch::nn::Module& model, const std::filesystem::path& dir, const SaveModelOptions& options) {
  namespace fs = std::filesystem;
  if (options.max_shard_size < 0)
    throw ConfigError::about("save_model", "max_shard_size", std::to_string(options.max_shard_size),
                             "must not be negative", "0 writes one file");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw SerializationError(dir.string() + ": cannot create the directory: " + ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : state_dict(model)) tensors.emplace_back(name, t.detach());
  const std::vector<std::pair<std::string, std::string>> metadata{{"format", "pt"}};
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (options.max_shard_size == 0) {
    save_safetensors(single, tensors, metadata);
    fs::remove(index, ec);
    return;
  }
  // Greedy packing in state-dict order, as transformers' shard_checkpoint does.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  std::int64_t size = 0, total = 0;
  for (auto& e : tensors) {
    const std::int64_t bytes = static_cast<std::int64_t>(e.second.numel()) * e.second.element_size();
    if (!shards.back().empty() && size + bytes > options.max_shard_size) {
      shards.emplace_back();
      size = 0;
    }
    shards.back().push_back(e);
    size += bytes;
    total += bytes;
  }
  JsonValue weight_map = JsonValue::object();
  char name[64];
  for (std::size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors(dir / name, shards[i], metadata);
    for (const auto& e : shards[i]) weight_map.set(e.first, std::string(name));
  }
  JsonValue meta = JsonValue::object();
  meta.set("total_size", total);
  JsonValue root = JsonValue::object();
  root.set("metadata", meta);
  root.set("weight_map", weight_map);
  write_file_atomically(index, root.dump(2) + "\n");
  fs::remove(single, ec);
}

}  // namespace peft
