#pragma once
/// Tokenizers for the trainer and examples: the abstract Tokenizer, ByteTokenizer (raw bytes) and
/// load_tokenizer, which picks the right one for a model directory. HF's tokenizer.json pipeline is
/// peft/text/hf_tokenizer.hpp, GPT-2's vocab.json + merges.txt peft/text/bpe_tokenizer.hpp.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peft::text {

/// The special token ids a tokenizer knows (tokenizer_config.json's bos/eos/pad/unk_token for an
/// HF tokenizer); each is nullopt when the tokenizer has none.
struct SpecialTokenIds {
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;
  std::optional<int64_t> unk;
};

/// Text <-> token ids, as HF `tokenizer(text, add_special_tokens=...)` / `tokenizer.decode(ids,
/// skip_special_tokens=...)`. The defaults (false, false) are what the trainer's raw-text path
/// uses: callers put eos_id() between documents. Implementations are immutable after
/// construction and safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Any bytes (invalid UTF-8 included) -> ids in [0, vocab_size()). add_special_tokens runs the
  /// tokenizer's post-processor (e.g. BOS first for Llama); tokenizers without one ignore it.
  virtual std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const = 0;
  /// ids -> text; skip_special_tokens drops special tokens. decode(encode(s)) == s whenever the
  /// tokenizer is lossless on s. Throws peft::Error on an id out of range.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual SpecialTokenIds special_token_ids() const = 0;
  /// special_token_ids().eos: the end-of-text id, if the tokenizer has one.
  std::optional<int64_t> eos_id() const { return special_token_ids().eos; }
  /// "byte", "bpe" (GPT-2 style byte-level BPE) or "hf" (the general tokenizer.json pipeline).
  virtual std::string kind() const = 0;
  /// Characters encode() has dropped so far because the vocabulary has no token for them and
  /// no unk or byte fallback (HF drops them silently too); the trainer refuses data that lost any.
  virtual std::uint64_t dropped_characters() const { return 0; }
};

/// One id per byte: ids 0..255 are the bytes, 256 is `<|endoftext|>` (vocab_size 257). The literal
/// text `<|endoftext|>` in the input encodes to 256, as it does in the BPE tokenizer.
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kEndOfText = 256;
  /// add_special_tokens has no effect (no post-processor); skip_special_tokens drops id 256.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const override;
  int64_t vocab_size() const override { return 257; }
  SpecialTokenIds special_token_ids() const override { return {std::nullopt, kEndOfText, std::nullopt, std::nullopt}; }
  std::string kind() const override { return "byte"; }
};

/// The tokenizer of a model directory, first match wins:
///   1. `dir/tokenizer.json` (+ tokenizer_config.json): HfTokenizer, kind "hf" (GPT-2, Llama 2/3,
///      Qwen, Gemma, Mistral ... BPE tokenizers; docs/tokenizers.md),
///   2. `dir/vocab.json` + `dir/merges.txt` (GPT-2's original files),
///   3. otherwise a ByteTokenizer (also for an empty path or a `builtin:` name / missing dir), so the
///      builtin tiny models (vocab 257) need no tokenizer files.
/// Throws peft::SerializationError (malformed file) or peft::ConfigError (a tokenizer.json this
/// library cannot reproduce, e.g. a WordPiece/Unigram model or a BertNormalizer), naming the file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir);

}  // namespace peft::text
