#pragma once
// One check per golden vector of tests/fixtures/peft (configs.json, matching.json, patterns.json,
// the model cases) and of the layer-type suite tests/fixtures/peft-layers (ids "peft-layers/..."). Used by peft_conformance (which prints
// PASS/FAIL/SKIP lines) and by the unit tests (which assert every case passes).

#include <string>
#include <vector>

#include "peft/format/json_value.hpp"

namespace peft_test {

enum class Status { Pass, Fail, Skip };

struct CaseResult {
  std::string id;      // configs/<n>, matching/<n>, patterns/<n> or a case directory name
  Status status = Status::Pass;
  std::string reason;  // for FAIL and SKIP
};

/// With `resave_dir`, an accepted case's config is also written, as we save it, to
/// `<resave_dir>/configs/<n>/adapter_config.json` (for checking with Python PEFT).
CaseResult check_config_case(std::size_t index, const peft::JsonValue& entry,
                             const std::string& resave_dir = "");
CaseResult check_matching_case(std::size_t index, const peft::JsonValue& entry);
CaseResult check_pattern_case(std::size_t index, const peft::JsonValue& entry);

/// One model-case directory (case.json, base_model.safetensors, adapter/, expected.safetensors).
/// With `resave_dir`, the loaded adapters are saved again (save_pretrained) to
/// `<resave_dir>/<case>/`, laid out like the case's adapter/ folder.
CaseResult check_model_case(const std::string& case_dir, const std::string& resave_dir = "");

/// Compare the adapter_config.json we would write with the one PEFT wrote (lists PEFT built from
/// sets compared as sets); "" when equal, else the first differing key.
std::string diff_saved_config(const peft::JsonValue& ours, const peft::JsonValue& expected);

/// Every vector found in `dir` (missing files are skipped silently: a fixture set may hold only
/// some of them). Model cases run through check_model_case. A layer-suite directory (manifest
/// "suite": "layers") uses check_layer_config_case and prefixes every id with "peft-layers/".
std::vector<CaseResult> run_all_cases(const std::string& dir, const std::string& resave_dir = "");

}  // namespace peft_test
