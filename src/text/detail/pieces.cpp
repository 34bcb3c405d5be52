// HF's SplitDelimiterBehavior (tokenizers/src/tokenizer/normalizer.rs, NormalizedString::split).

#include "pieces.hpp"

#include <algorithm>

namespace peft::text::detail {

void spans_from_matches(std::size_t text_size, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                        std::vector<Span>& out) {
  out.clear();
  std::size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev != text_size) out.push_back({prev, text_size, false});
}

void split_piece(const Piece& piece, std::vector<Span>& spans, SplitBehavior behavior, bool invert,
                 std::vector<Piece>& out) {
  if (invert)
    for (auto& s : spans) s.is_match = !s.is_match;
  // (span, remove) pairs, built exactly as HF's folds so that empty matches behave the same.
  std::vector<std::pair<std::pair<std::size_t, std::size_t>, bool>> parts;
  parts.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const auto& s : spans) parts.push_back({{s.begin, s.end}, s.is_match});
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : spans) parts.push_back({{s.begin, s.end}, false});
      break;
    case SplitBehavior::Contiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.is_match == prev_match && !parts.empty()) parts.back().first.second = s.end;
        else parts.push_back({{s.begin, s.end}, false});
        prev_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !prev_match && !parts.empty()) parts.back().first.second = s.end;
        else parts.push_back({{s.begin, s.end}, false});
        prev_match = s.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !prev_match && !parts.empty()) parts.back().first.first = it->begin;
        else parts.push_back({{it->begin, it->end}, false});
        prev_match = it->is_match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
    }
  }
  for (const auto& [range, remove] : parts) {
    if (remove || range.first == range.second) continue;
    Piece p;
    p.text = piece.text.substr(range.first, range.second - range.first);
    p.at_start = piece.at_start && range.first == 0;
    out.push_back(std::move(p));
  }
}

}  // namespace peft::text::detail
