#pragma once
// The unit the tokenizer pipeline works on (HF's PreTokenizedString splits, without offsets) and
// HF's SplitDelimiterBehavior applied to a list of matches.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace peft::text::detail {

/// One split of the input: text still to tokenize (id < 0), or an added token already matched.
/// at_start: the text begins at offset 0 of the original input (Metaspace's prepend_scheme
/// "first" prepends only there, as HF's `offsets_original().0 == 0`).
struct Piece {
  std::string text;
  int64_t id = -1;
  bool at_start = false;
};

/// HF's SplitDelimiterBehavior.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// A span [begin, end) of a piece and whether it is a pattern match: HF's find_matches result,
/// which covers the whole text in order.
struct Span {
  std::size_t begin, end;
  bool is_match;
};

/// Match list from non-overlapping match ranges (gaps become non-matches).
void spans_from_matches(std::size_t text_size, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                        std::vector<Span>& out);
/// Match list where each character satisfying pred is a match of its own (HF's `Fn(char)` Pattern).
template <class Pred>
void spans_from_chars(const std::string& text, Pred pred, std::vector<Span>& out);

/// Splits `piece` by `spans` (after `invert` swaps matches and non-matches) with `behavior` and
/// appends the non-empty results to `out`, as HF's NormalizedString::split.
void split_piece(const Piece& piece, std::vector<Span>& spans, SplitBehavior behavior, bool invert,
                 std::vector<Piece>& out);

}  // namespace peft::text::detail

#include "unicode.hpp"

template <class Pred>
void peft::text::detail::spans_from_chars(const std::string& text, Pred pred, std::vector<Span>& out) {
  out.clear();
  std::size_t last = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = 1;
    const uint32_t cp = utf8_decode(text, i, len);
    if (pred(cp)) {
      if (last < i) out.push_back({last, i, false});
      out.push_back({i, i + len, true});
      last = i + len;
    }
    i += len;
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
}
