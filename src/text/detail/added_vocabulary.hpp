#pragma once
// tokenizer.json `added_tokens`, matched as HF's AddedVocabulary: tokens with normalized=false on
// the raw text first (leftmost-longest), then normalized=true tokens (their content normalized)
// on each normalized remaining segment; single_word, lstrip and rstrip as HF.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "normalizers.hpp"
#include "pieces.hpp"

namespace peft::text::detail {

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;  // HF's default for non-special tokens
};

class AddedVocabulary {
 public:
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  /// The input split into added-token pieces (id >= 0) and normalized text pieces (id < 0);
  /// empty pieces are dropped, as HF's PreTokenizedString.
  std::vector<Piece> extract_and_normalize(std::string_view text, const Normalizer* normalizer) const;

  const AddedToken* by_id(int64_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  /// Reads tokenizer.json's added_tokens array.
  static std::vector<AddedToken> parse(const JsonValue& list, const JsonPlace& at);

 private:
  struct Matcher {
    // Patterns bucketed by first byte, longest first: leftmost-longest by scanning positions.
    std::vector<std::pair<std::string, std::size_t>> buckets[256];  // (pattern, token index)
    bool empty = true;
    void add(std::string pattern, std::size_t token);
    void finish();
  };
  void split(const Piece& piece, const Matcher& m, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int64_t, std::size_t> by_id_;
  std::unordered_map<std::string, std::size_t> by_content_;
  Matcher raw_, normalized_;
};

}  // namespace peft::text::detail
