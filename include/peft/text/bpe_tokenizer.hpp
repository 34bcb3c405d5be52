#pragma once
/// GPT-2's byte-level BPE, as HF `tokenizers` (BPE model + ByteLevel pre-tokenizer) runs it; a
/// fixed configuration of HfTokenizer (peft/text/hf_tokenizer.hpp), which does the work:
///   1. added/special tokens (e.g. `<|endoftext|>`) are split out of the text first
///      (leftmost-longest match; lstrip/rstrip/single_word honoured);
///   2. each remaining segment is pre-tokenized with GPT-2's regex (peft/text/pretokenizer.hpp);
///   3. each piece's bytes start as one symbol per byte, and merges are applied by rank (lowest
///      first; equal ranks left to right: HF's heap order), repeating until no pair has a merge.
/// Words are cached (bounded). decode maps ids back to bytes, so invalid UTF-8 round-trips.
/// from_tokenizer_json accepts only this GPT-2 shape (refusing others with peft::ConfigError);
/// load_tokenizer reads any supported tokenizer.json with HfTokenizer instead. encode never adds
/// BOS/EOS (GPT-2 has no post-processor that adds tokens).

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "peft/text/tokenizer.hpp"

namespace peft::text {

class HfTokenizer;

class ByteLevelBPETokenizer : public Tokenizer {
 public:
  /// A token matched verbatim before pre-tokenization (HF `added_tokens`).
  struct AddedToken {
    std::string content;
    int64_t id = 0;
    bool special = true;
    bool lstrip = false;       // also swallow whitespace before the match
    bool rstrip = false;       // also swallow whitespace after the match
    bool single_word = false;  // only match when not inside a word
  };
  struct Options {
    bool add_prefix_space = false;  // ByteLevel pre-tokenizer option (GPT-2: false)
    bool ignore_merges = false;     // BPE option: a whole word already in the vocab is one token
    std::optional<int64_t> unk_id;  // id for a byte missing from the vocab (else the byte is dropped)
  };

  /// vocab: byte-level spelling ("Ġthe") -> id. merges: pairs in rank order (rank = index).
  /// Throws peft::SerializationError when a merge names a token missing from the vocab.
  ByteLevelBPETokenizer(const std::unordered_map<std::string, int64_t>& vocab,
                        const std::vector<std::pair<std::string, std::string>>& merges,
                        const std::vector<AddedToken>& added_tokens, Options options);
  ByteLevelBPETokenizer(const std::unordered_map<std::string, int64_t>& vocab,
                        const std::vector<std::pair<std::string, std::string>>& merges,
                        const std::vector<AddedToken>& added_tokens = {})
      : ByteLevelBPETokenizer(vocab, merges, added_tokens, Options{}) {}
  ~ByteLevelBPETokenizer() override;

  /// HF tokenizer.json: model.type "BPE" with model.vocab, model.merges ("a b" strings or [a, b]
  /// pairs), added_tokens, pre_tokenizer ByteLevel (or null).
  static std::unique_ptr<ByteLevelBPETokenizer> from_tokenizer_json(const std::filesystem::path& file);
  /// GPT-2's vocab.json + merges.txt (a leading `#version` line is skipped). A vocab entry
  /// `<|endoftext|>` becomes a special added token, as transformers' GPT2Tokenizer treats it.
  static std::unique_ptr<ByteLevelBPETokenizer> from_vocab_merges(const std::filesystem::path& vocab_json,
                                                                  const std::filesystem::path& merges_txt);

  /// add_special_tokens has no effect (GPT-2 has no post-processor that adds tokens).
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const override;
  /// Added tokens decode to their content (special ones unless skip_special_tokens), other ids
  /// to their bytes.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const override;
  /// 1 + the largest id of the vocab and the added tokens.
  int64_t vocab_size() const override;
  /// `<|endoftext|>`, else `</s>`, `<|end_of_text|>`, `<eos>` (added tokens first, then vocab).
  SpecialTokenIds special_token_ids() const override;
  std::string kind() const override { return "bpe"; }
  std::uint64_t dropped_characters() const override;

  /// Byte-level spelling of an id ("Ġthe"), or the added token's content; nullopt if unknown.
  std::optional<std::string> id_to_token(int64_t id) const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  std::size_t num_merges() const;
  /// How many of the 256 single-byte tokens the vocab lacks (0 for GPT-2). Such bytes are dropped
  /// by encode, as HF does without an unk_token; the file readers warn (peft::warn) when > 0.
  int missing_byte_tokens() const;

 private:
  explicit ByteLevelBPETokenizer(std::unique_ptr<HfTokenizer> hf);
  static std::unique_ptr<HfTokenizer> build(const std::unordered_map<std::string, int64_t>& vocab,
                                            const std::vector<std::pair<std::string, std::string>>& merges,
                                            const std::vector<AddedToken>& added_tokens, Options options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::text
