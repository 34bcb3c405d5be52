#pragma once
/// Tokenizers for the trainer and examples: the abstract Tokenizer, ByteTokenizer (raw bytes) and
/// load_tokenizer, which picks the right one for a model directory. GPT-2's byte-level BPE is in
/// peft/text/bpe_tokenizer.hpp.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peft::text {

/// Text <-> token ids. encode never adds BOS/EOS itself (like HF `add_special_tokens=False`);
/// callers put eos_id() between documents. Implementations are immutable after construction and
/// safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Any bytes (invalid UTF-8 included) -> ids in [0, vocab_size()).
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  /// ids -> bytes; decode(encode(s)) == s for every s whenever the vocabulary covers all 256
  /// bytes (always for ByteTokenizer and GPT-2). Throws peft::Error on an id out of range.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  /// The end-of-text id (`<|endoftext|>`), if the vocabulary has one.
  virtual std::optional<int64_t> eos_id() const = 0;
  /// "byte" or "bpe".
  virtual std::string kind() const = 0;
};

/// One id per byte: ids 0..255 are the bytes, 256 is `<|endoftext|>` (vocab_size 257). The literal
/// text `<|endoftext|>` in the input encodes to 256, as it does in the BPE tokenizer.
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kEndOfText = 256;
  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return 257; }
  std::optional<int64_t> eos_id() const override { return kEndOfText; }
  std::string kind() const override { return "byte"; }
};

/// The tokenizer of a model directory, first match wins:
///   1. `dir/tokenizer.json` (HF tokenizers, BPE model with the ByteLevel pre-tokenizer),
///   2. `dir/vocab.json` + `dir/merges.txt` (GPT-2's original files),
///   3. otherwise a ByteTokenizer (also for an empty path or a `builtin:` name / missing dir), so the
///      builtin tiny models (vocab 257) need no tokenizer files.
/// Throws peft::SerializationError (malformed file) or peft::ConfigError (a tokenizer.json this
/// library cannot reproduce, e.g. WordPiece or a Metaspace pre-tokenizer), naming the file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir);

}  // namespace peft::text
