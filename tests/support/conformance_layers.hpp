#pragma once
// The layer-type suite's checks (tests/fixtures/peft-layers, fixtures README §8): what its model
// cases add to the common procedure of conformance_models.cpp (trainable tokens, conv/embedding
// layer entries, mixed batches, the merge -> unmerge round trip), and its configs.json (a second
// adapter, a forward stage, refusals, same_as_init_true), which needs real models.

#include <torch/types.h>

#include <string>

#include "peft/format/json_value.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"
#include "support/catalogue_models.hpp"
#include "support/conformance.hpp"

namespace peft_test {

/// Whether a case.json / manifest.json belongs to the layer suite (it has its fields).
bool is_layer_suite_case(const peft::JsonValue& case_json);

/// Whether the `layers` entry's fan_in_fan_out is the layer's (Linear / Conv1D); PEFT keeps the
/// config flag on Embedding and conv layers without using it (docs/quirks.md).
bool fan_in_fan_out_applies(const peft::JsonValue& layer_info);

/// Right after get_peft_model (+ add_adapter of the other adapters): trainable_tokens_wrapped,
/// modules_to_save_wrapped, and each `layers` entry's type, features and conv geometry.
/// Throws std::runtime_error naming the first difference.
void check_layer_suite_injection(peft::LoraModel& pm, const peft::JsonValue& case_json);

/// With the saved adapters loaded and active_adapters active, before merge_and_unload:
/// out_mixed (mixed_adapter_names), then merge_adapter + unmerge_adapter -> out_unmerged and
/// unmerged.<param>. Throws std::runtime_error naming the first difference.
void check_layer_suite_outputs(peft::LoraModel& pm, CatalogueModel& model, const peft::JsonValue& case_json,
                               const peft::SafetensorsFile& expected, const torch::Tensor& input, double atol);

/// One configs.json entry of the layer suite; `manifest` gives the input shapes of its forward stage.
CaseResult check_layer_config_case(std::size_t index, const peft::JsonValue& entry, const peft::JsonValue& manifest);

}  // namespace peft_test
