#pragma once
/// adapter_config.json: LoraConfig <-> JSON exactly as PEFT 0.20.0 reads and writes it
/// (docs/config.md#saving-the-config). Written like `json.dumps(d, indent=2, sort_keys=True)`.

#include <filesystem>
#include <string>

#include "peft/config/lora_config.hpp"
#include "peft/format/json_value.hpp"

namespace peft {

/// Where a JSON object comes from, which decides how strict the reader is.
enum class ConfigSource {
  /// An adapter_config.json (PeftConfig.from_pretrained): `peft_type` is required, keys of a
  /// newer PEFT are kept in `extra_fields` and reported by one warning, `runtime_config` is
  /// dropped with a warning.
  AdapterConfigFile,
  /// Keyword arguments written by a person (LoraConfig(**kwargs), a YAML `lora:` section):
  /// an unknown key is a ConfigError (with the closest known key as hint); `peft_type` optional.
  Kwargs,
};

/// Build and validate a config from a JSON object. Throws ConfigError (wrong type, bad value,
/// unknown key in Kwargs mode, missing peft_type in file mode).
LoraConfig lora_config_from_json_value(const JsonValue& object,
                                       ConfigSource source = ConfigSource::AdapterConfigFile);

/// The 40 keys PEFT 0.20.0 writes, plus `extra_fields`. Does not validate.
JsonValue to_json_value(const LoraConfig& config);

/// adapter_config.json text: 2-space indent, keys sorted at every level, ASCII only.
std::string to_json(const LoraConfig& config);

/// Parse adapter_config.json text (ConfigSource::AdapterConfigFile).
LoraConfig lora_config_from_json(const std::string& text);

/// Read `path`, or `path/adapter_config.json` when `path` is a directory.
/// Throws SerializationError (I/O, malformed JSON) or ConfigError (content).
LoraConfig load_adapter_config(const std::filesystem::path& path);

/// Write `dir/adapter_config.json` (creating `dir`), atomically: a temporary file in the same
/// directory is renamed over the target, so a crash never leaves a truncated config.
void save_adapter_config(const LoraConfig& config, const std::filesystem::path& dir);

}  // namespace peft
