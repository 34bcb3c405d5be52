#pragma once
/// PEFT's TunerLayerStatus / TunerModelStatus (peft_model.py; docs/lifecycle.md "Model
/// status"): what LoraModel::get_layer_status() / get_model_status() report.
///
/// A value that differs between layers is "irregular" (PEFT's Literal["irregular"]): a model in
/// that state is inconsistent (e.g. an adapter merged on some layers only). peft-cpp has no
/// quantization backends, so PEFT's `quantization_backend` is always None and left out.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace peft {

/// A bool that may be "irregular" (some true, some false).
enum class Tristate { False, True, Irregular };

inline const char* to_string(Tristate t) {
  switch (t) {
    case Tristate::False: return "False";
    case Tristate::True: return "True";
    case Tristate::Irregular: return "irregular";
  }
  return "?";
}

/// One adapter layer (a LoRA layer, or a modules_to_save module).
struct TunerLayerStatus {
  std::string name;         ///< module key, e.g. "model.layers.0.self_attn.q_proj"
  std::string module_type;  ///< "lora.Linear", "lora.Embedding", ..., or "ModulesToSaveWrapper"
  bool enabled = true;      ///< false while adapters are disabled
  std::vector<std::string> active_adapters;   ///< LoRA layer: the model's active list; wrapper: its one copy or []
  std::vector<std::string> merged_adapters;   ///< in merge order
  std::map<std::string, Tristate> requires_grad;  ///< per adapter, over its parameters in this layer
  std::vector<std::string> available_adapters;    ///< sorted
  std::map<std::string, std::vector<std::string>> devices;  ///< per adapter: sorted device types ("cpu", "cuda")
};

/// The model's aggregate. `nullopt` in active_adapters / merged_adapters means "irregular".
struct TunerModelStatus {
  std::string base_model_type;     ///< the user module's type name (namespaces and "Impl" removed)
  std::string adapter_model_type;  ///< "LoraModel"
  std::map<std::string, std::string> peft_types;  ///< adapter -> "LORA"
  std::int64_t trainable_params = 0;
  std::int64_t total_params = 0;
  std::int64_t num_adapter_layers = 0;
  Tristate enabled = Tristate::True;
  std::optional<std::vector<std::string>> active_adapters;  ///< nullopt: "irregular"
  std::optional<std::vector<std::string>> merged_adapters;  ///< sorted; nullopt: "irregular"
  std::map<std::string, Tristate> requires_grad;            ///< per adapter, over all layers
  std::vector<std::string> available_adapters;              ///< sorted union
  std::map<std::string, std::vector<std::string>> devices;  ///< per adapter, sorted union
};

}  // namespace peft
