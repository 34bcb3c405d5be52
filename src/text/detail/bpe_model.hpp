#pragma once
// The BPE model of HF tokenizers (tokenizers/src/models/bpe/): vocab + ranked merges, applied
// lowest rank first (ties: leftmost), with byte_fallback (<0xNN> tokens), unk_token/fuse_unk,
// ignore_merges, continuing_subword_prefix and end_of_word_suffix. A bounded word cache.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "json_fields.hpp"

namespace peft::text::detail {

struct BpeOptions {
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  /// Throws SerializationError (`where: merge "a b": ...`) when a merge names a token, or makes
  /// one, that is not in the vocab; a later duplicate merge overrides the earlier (HF's HashMap).
  BpeModel(const std::unordered_map<std::string, int64_t>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);
  ~BpeModel();

  /// Appends the ids of one pre-tokenized word. Characters without a token are byte-fallen-back,
  /// else unk (fused runs if fuse_unk), else dropped, exactly as HF. Thread-safe.
  void tokenize(std::string_view word, std::vector<int64_t>& out) const;
  /// Characters tokenize() dropped so far (no token, no byte fallback, no unk).
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  std::optional<int64_t> token_to_id(std::string_view token) const;
  /// nullptr for an id the vocab does not have.
  const std::string* id_to_token(int64_t id) const;
  /// 1 + the largest id.
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  std::size_t num_merges() const { return num_merges_; }
  /// The number of vocab entries (HF's get_vocab_size, where added tokens get their ids from).
  std::size_t vocab_entries() const { return vocab_.size(); }

  /// Reads tokenizer.json's "model" object (type BPE); refuses dropout and unknown fields' values.
  static std::unique_ptr<BpeModel> from_json(const JsonValue& model, const JsonPlace& at);

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  const Merge* find_merge(int32_t a, int32_t b) const;
  void insert_merge(uint64_t key, Merge m);

  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::vector<std::unique_ptr<std::string>> extra_tokens_;  // tokens sharing an id with another
  std::unordered_map<std::string_view, int32_t> vocab_;  // views into id_to_token_ / extra_tokens_
  // Merges in an open-addressing table (linear probing, power-of-two size): one cache miss per
  // lookup instead of a node chain, which is most of the time on long words.
  struct Slot {
    uint64_t key = ~uint64_t{0};
    Merge merge{};
  };
  std::vector<Slot> merge_table_;
  std::size_t num_merges_ = 0;
  std::unordered_map<uint32_t, int32_t> char_ids_;  // single-character tokens by code point (speed)
  BpeOptions options_;
  mutable std::atomic<std::uint64_t> dropped_{0};
  std::optional<int32_t> unk_id_;
  int32_t byte_ids_[256];
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

}  // namespace peft::text::detail
