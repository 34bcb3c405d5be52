#pragma once
// tokenizer.json `decoder`: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, WordPiece
// and Sequence, as HF's decode_chain. Without a decoder, tokens are joined with spaces (HF).

#include <memory>
#include <string>
#include <vector>

#include "json_fields.hpp"

namespace peft::text::detail {

class Decoder {
 public:
  virtual ~Decoder() = default;
  /// HF's decode_chain: rewrites the token strings (possibly merging them).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

/// null -> nullptr; unknown types throw ConfigError naming the file and field.
std::unique_ptr<Decoder> parse_decoder(const JsonValue& v, const JsonPlace& at);

}  // namespace peft::text::detail
