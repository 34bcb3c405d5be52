#pragma once
// Tiny hand-written tokenizer.json documents for the HfTokenizer tests.

#include <memory>
#include <string>

#include "peft/format/json_value.hpp"
#include "peft/text/hf_tokenizer.hpp"

namespace peft_test {

/// A BPE model object: vocab/merges are JSON text ({"a": 0, ...} and [["a", "b"], ...]);
/// extra is more JSON members (e.g. `"byte_fallback": true`).
inline std::string bpe_model(const std::string& vocab, const std::string& merges, const std::string& extra = "") {
  return R"({"type": "BPE", "dropout": null, "vocab": )" + vocab + R"(, "merges": )" + merges +
         (extra.empty() ? "" : ", " + extra) + "}";
}

/// A tokenizer.json with `model` and extra top-level members (normalizer, pre_tokenizer, ...),
/// read as "t/tokenizer.json"; config is tokenizer_config.json's text (none when empty).
inline std::unique_ptr<peft::text::HfTokenizer> hf_tokenizer(const std::string& model, const std::string& extra = "",
                                                             const std::string& config = "") {
  const std::string doc = R"({"version": "1.0", "truncation": null, "padding": null, "model": )" + model +
                          (extra.empty() ? "" : ", " + extra) + "}";
  if (config.empty()) return peft::text::HfTokenizer::from_json(peft::JsonValue::parse(doc), nullptr, "t/tokenizer.json");
  const peft::JsonValue cfg = peft::JsonValue::parse(config);
  return peft::text::HfTokenizer::from_json(peft::JsonValue::parse(doc), &cfg, "t/tokenizer.json");
}

}  // namespace peft_test
