#pragma once
// Locating and reading the golden files written by Python PEFT (tests/fixtures; $PEFT_FIXTURES overrides).

#include <filesystem>
#include <string>
#include <vector>

#include "peft/format/json_value.hpp"
#include "peft/targeting/plan.hpp"

namespace peft_test {

/// The directory holding manifest.json / configs.json: $PEFT_FIXTURES (either the fixtures root
/// with a peft/ folder, or that folder itself), else the shared fixtures next to the checkout.
std::filesystem::path fixtures_dir();

/// Every fixture suite under the same root: its peft/ (core) and peft-layers/ (layer types)
/// folders, or the root itself when it is one suite's folder.
std::vector<std::filesystem::path> fixture_roots();

/// The Hugging Face model-family cases (one directory per family with base/, adapter/,
/// expected.safetensors, case.json): $PEFT_HF_MODELS, else hf_models/ under the fixtures root.
std::filesystem::path hf_models_dir();

/// A fresh, empty directory under $PEFT_TEST_TMP (set by ctest) or the system temp directory.
std::filesystem::path scratch_dir(const std::string& name);

/// Parse a JSON file with peft::JsonValue.
peft::JsonValue read_json(const std::filesystem::path& path);

/// The module inventory (named_modules() order, root included) of a catalogue model of
/// docs/conformance.md (`mlp`, `mlp_nobias`, `decoder`, `gpt2`) built from its model_dims.
std::vector<peft::ModuleInfo> catalogue_inventory(const std::string& model, const peft::JsonValue& dims);

/// The Python class name PEFT writes as auto_mapping.base_model_class for a catalogue model.
std::string catalogue_class_name(const std::string& model);

}  // namespace peft_test
