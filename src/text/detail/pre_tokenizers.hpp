#pragma once
// tokenizer.json `pre_tokenizer`: ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace,
// WhitespaceSplit, CharDelimiterSplit and Sequence, as HF tokenizers runs them. Others are refused.

#include <memory>
#include <vector>

#include "json_fields.hpp"
#include "pieces.hpp"

namespace peft::text::detail {

/// GPT-2's pre-tokenization regex (HF's ByteLevel with use_regex).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits (and rewrites) every piece that is not an added token; added tokens pass unchanged.
  void pre_tokenize(std::vector<Piece>& pieces) const;

 protected:
  /// Appends the splits of one piece to `out`.
  virtual void split(const Piece& piece, std::vector<Piece>& out) const = 0;
  friend class SequencePreTokenizer;
};

/// null -> nullptr; unsupported types throw ConfigError naming the file and field.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonValue& v, const JsonPlace& at);

/// SplitDelimiterBehavior from its tokenizer.json spelling ("Isolated", ...).
SplitBehavior parse_split_behavior(const JsonValue& obj, const JsonPlace& at, SplitBehavior def);

}  // namespace peft::text::detail
