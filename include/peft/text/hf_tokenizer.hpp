#pragma once
/// HF tokenizers' tokenizer.json pipeline (docs/tokenizers.md), as the Rust core runs it:
///   added tokens split out (normalized=false ones on the raw text, then the rest on the
///   normalized text) -> normalizer -> pre-tokenizer -> BPE model -> post-processor (only with
///   add_special_tokens) ; decode: ids -> tokens -> decoder.
/// Supported: normalizers NFC/NFD/NFKC/NFKD/Lowercase/Strip/Prepend/Replace/Sequence;
/// pre-tokenizers ByteLevel/Split/Metaspace/Digits/Punctuation/Whitespace/WhitespaceSplit/
/// CharDelimiterSplit/Sequence; the BPE model (byte_fallback, unk/fuse_unk, ignore_merges,
/// subword prefix/suffix); post-processors TemplateProcessing/Roberta/Bert/ByteLevel/Sequence;
/// decoders ByteLevel/Metaspace/ByteFallback/Fuse/Strip/Replace/WordPiece/Sequence. Anything else
/// (WordPiece/Unigram models, BertNormalizer, Precompiled, BPE dropout, ...) is refused with
/// peft::ConfigError naming the file and field.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "peft/format/json_value.hpp"
#include "peft/text/tokenizer.hpp"

namespace peft::text {

class HfTokenizer : public Tokenizer {
 public:
  /// Reads tokenizer.json and, when present next to it, tokenizer_config.json (special tokens;
  /// add_bos_token/add_eos_token for Llama/Gemma tokenizer classes, see docs/tokenizers.md).
  /// Throws SerializationError (malformed file) or ConfigError (unsupported component).
  static std::unique_ptr<HfTokenizer> from_file(const std::filesystem::path& tokenizer_json);
  /// The same from parsed JSON; `source` names the file in error messages. config may be null.
  static std::unique_ptr<HfTokenizer> from_json(const JsonValue& tokenizer_json, const JsonValue* tokenizer_config,
                                                const std::string& source);
  ~HfTokenizer() override;

  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const override;
  /// Ids the tokenizer does not know are skipped (as HF); ids < 0 or >= vocab_size() throw.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const override;
  /// 1 + the largest id of the model vocab and the added tokens.
  int64_t vocab_size() const override;
  /// From tokenizer_config.json's bos/eos/pad/unk_token; without it (or for a token it leaves
  /// out) guessed from well-known names (docs/tokenizers.md), unk from model.unk_token.
  SpecialTokenIds special_token_ids() const override;
  std::string kind() const override { return "hf"; }
  std::uint64_t dropped_characters() const override;

  /// The vocab spelling of an id (or an added token's content); nullopt if unknown.
  std::optional<std::string> id_to_token(int64_t id) const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  std::size_t num_merges() const;

 private:
  HfTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::text
