#pragma once
/// The `lora:` section of a YAML training config, with the keys of adapter_config.json:
///
///   lora:
///     r: 16
///     lora_alpha: 32
///     target_modules: [q_proj, v_proj]     # or a regex string, or all-linear
///     layers_to_transform: [0, 1]
///     layers_pattern: layers
///
/// Unknown keys, wrong types and bad values raise ConfigError (duplicate keys and malformed YAML
/// raise SerializationError); every message starts with `<source>:<line>:<column>:`.
/// Plain scalars follow the YAML 1.2 core schema (true/false, null/~, ints, floats); quoted
/// scalars are always strings.

#include <filesystem>
#include <string>

#include "peft/config/lora_config.hpp"

namespace peft {

/// Parse `text`; `section` is the top-level key holding the LoRA settings ("" = the whole
/// document). `source_name` prefixes error messages.
LoraConfig lora_config_from_yaml(const std::string& text, const std::string& section = "lora",
                                 const std::string& source_name = "<yaml>");

/// Read a YAML file and parse its `section`.
LoraConfig load_lora_yaml(const std::filesystem::path& path, const std::string& section = "lora");

}  // namespace peft
