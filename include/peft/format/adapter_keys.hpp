#pragma once
/// PEFT's on-disk tensor keys of an adapter file (docs/file-format.md "On-disk keys"), in both
/// directions: save_pretrained / load_adapter build them, peft-merge and peft-inspect parse them.
/// LibTorch-free.
///
///   base_model.model.<m>.lora_A.weight            [r, in]
///   base_model.model.<m>.lora_B.weight            [out, r]
///   base_model.model.<m>.lora_B.bias              [out]        lora_bias
///   base_model.model.<m>.lora_magnitude_vector    [out]        DoRA (no ".weight")
///   base_model.model.<m>.base_layer.bias                       bias="all"/"lora_only", <m> carries LoRA
///   base_model.model.<m>.<param>                               modules_to_save copies, other biases

#include <cstddef>
#include <optional>
#include <string>

#include "peft/detail/strings.hpp"

namespace peft::adapter_keys {

/// Every key starts with this (PeftModel.base_model.model).
inline constexpr const char* kRoot = "base_model.model.";

/// The tensors of one LoRA module.
enum class LoraTensor { A, B, B_bias, magnitude };

/// The key suffix of `t` after the module key: "lora_A.weight", ..., "lora_magnitude_vector".
inline const char* suffix(LoraTensor t) {
  switch (t) {
    case LoraTensor::A: return "lora_A.weight";
    case LoraTensor::B: return "lora_B.weight";
    case LoraTensor::B_bias: return "lora_B.bias";
    case LoraTensor::magnitude: return "lora_magnitude_vector";
  }
  return "";
}

/// `base_model.model.<module>.<param>` (`base_model.model.<param>` for the root module "").
inline std::string module_key(const std::string& module, const std::string& param) {
  return kRoot + (module.empty() ? std::string() : module + ".") + param;
}

/// The on-disk key of LoRA tensor `t` of `module`.
inline std::string lora_key(const std::string& module, LoraTensor t) { return module_key(module, suffix(t)); }

/// The base bias of a layer that carries LoRA (of any adapter): `<m>.base_layer.bias`.
inline std::string base_layer_bias_key(const std::string& module) { return module_key(module, "base_layer.bias"); }

inline bool has_root(const std::string& key) { return detail::starts_with(key, kRoot); }

/// A parsed LoRA key: the module key (without the root) and which tensor.
struct ParsedLoraKey {
  std::string module;
  LoraTensor tensor;
};

/// Whether parse_lora_key also takes `<m>.lora_magnitude_vector.weight` (the in-memory spelling)
/// as a DoRA magnitude.
enum class MagnitudeSpelling { OnDiskOnly, AlsoWithWeight };

/// The module and tensor of a LoRA key (lora_key's inverse for non-empty module keys); nullopt
/// for every other key (no root, no LoRA suffix, or an empty module).
inline std::optional<ParsedLoraKey> parse_lora_key(const std::string& key,
                                                   MagnitudeSpelling spelling = MagnitudeSpelling::OnDiskOnly) {
  if (!has_root(key)) return std::nullopt;
  const std::string root = kRoot;
  struct Form {
    std::string suffix;
    LoraTensor tensor;
  };
  const Form forms[] = {{std::string(".") + suffix(LoraTensor::A), LoraTensor::A},
                        {std::string(".") + suffix(LoraTensor::B), LoraTensor::B},
                        {std::string(".") + suffix(LoraTensor::B_bias), LoraTensor::B_bias},
                        {std::string(".") + suffix(LoraTensor::magnitude), LoraTensor::magnitude},
                        {std::string(".") + suffix(LoraTensor::magnitude) + ".weight", LoraTensor::magnitude}};
  const std::size_t n = spelling == MagnitudeSpelling::AlsoWithWeight ? 5 : 4;
  for (std::size_t i = 0; i < n; ++i) {
    const Form& f = forms[i];
    if (!detail::ends_with(key, f.suffix) || key.size() <= root.size() + f.suffix.size()) continue;
    return ParsedLoraKey{key.substr(root.size(), key.size() - root.size() - f.suffix.size()), f.tensor};
  }
  return std::nullopt;
}

/// The base checkpoint key a non-LoRA adapter tensor (bias="all" bias, modules_to_save copy)
/// stands for: the root and every `.base_layer` infix removed (`<m>.base_layer.bias` -> `<m>.bias`).
inline std::string base_model_key(const std::string& key) {
  std::string plain = has_root(key) ? key.substr(std::string(kRoot).size()) : key;
  for (std::size_t p; (p = plain.find(".base_layer.")) != std::string::npos;) plain.erase(p, 11);
  return plain;
}

}  // namespace peft::adapter_keys
