#pragma once
// tokenizer.json `normalizer`: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace (String or
// Regex pattern) and Sequence, as HF tokenizers applies them. Others are refused at load.

#include <memory>
#include <string>

#include "json_fields.hpp"

namespace peft::text::detail {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  /// Rewrites `text` in place. at_start (see Piece) is cleared when text at the front is removed.
  virtual void normalize(std::string& text, bool& at_start) const = 0;
};

/// null -> nullptr. Unsupported types (BertNormalizer, Precompiled, StripAccents, NMT, ...) throw
/// ConfigError naming the file and field.
std::unique_ptr<Normalizer> parse_normalizer(const JsonValue& v, const JsonPlace& at);

}  // namespace peft::text::detail
