// HF's AddedVocabulary::extract_and_normalize / find_matches (tokenizer/added_vocabulary.rs).

#include "added_vocabulary.hpp"

#include <algorithm>

#include "unicode.hpp"

namespace peft::text::detail {

void AddedVocabulary::Matcher::add(std::string pattern, std::size_t token) {
  if (pattern.empty()) return;
  const auto first = static_cast<unsigned char>(pattern[0]);
  buckets[first].emplace_back(std::move(pattern), token);
  empty = false;
}

void AddedVocabulary::Matcher::finish() {
  for (auto& b : buckets)
    std::stable_sort(b.begin(), b.end(), [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = i;
    if (!t.normalized) {
      raw_.add(t.content, i);
    } else {
      std::string content = t.content;
      bool at_start = true;
      if (normalizer) normalizer->normalize(content, at_start);
      normalized_.add(std::move(content), i);
    }
  }
  raw_.finish();
  normalized_.finish();
}

const AddedToken* AddedVocabulary::by_id(int64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

namespace {

// The code point ending at `end` (exclusive), for \w$ tests.
uint32_t last_char(std::string_view s, std::size_t end) {
  std::size_t k = end - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80 && end - k < 4) --k;
  std::size_t len = 1;
  const uint32_t cp = utf8_decode(s, k, len);
  return k + len == end ? cp : kInvalidCodePoint;
}

}  // namespace

void AddedVocabulary::split(const Piece& piece, const Matcher& m, std::vector<Piece>& out) const {
  const std::string& s = piece.text;
  auto emit = [&](std::size_t b, std::size_t e, int64_t id) {
    if (b == e) return;
    Piece p;
    p.text = s.substr(b, e - b);
    p.id = id;
    p.at_start = piece.at_start && b == 0;
    out.push_back(std::move(p));
  };
  if (m.empty) {
    emit(0, s.size(), -1);
    return;
  }
  std::size_t start_offset = 0;
  std::size_t pos = 0;
  while (pos < s.size()) {
    // Leftmost-longest match at or after pos (non-overlapping with the previous match).
    std::size_t mb = std::string::npos, me = 0, tok = 0;
    for (std::size_t i = pos; i < s.size() && mb == std::string::npos; ++i) {
      for (const auto& [pat, idx] : m.buckets[static_cast<unsigned char>(s[i])]) {
        if (s.compare(i, pat.size(), pat) == 0) {
          mb = i, me = i + pat.size(), tok = idx;
          break;
        }
      }
    }
    if (mb == std::string::npos) break;
    pos = me;
    const AddedToken& t = tokens_[tok];
    std::size_t start = mb, stop = me;
    if (t.single_word) {
      const bool start_space = start == 0 || !is_word_char(last_char(s, start));
      std::size_t len = 1;
      const bool stop_space = stop == s.size() || !is_word_char(utf8_decode(s, stop, len));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      std::size_t b = start;
      while (b > 0) {
        std::size_t k = b - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80 && b - k < 4) --k;
        std::size_t len = 1;
        const uint32_t cp = utf8_decode(s, k, len);
        if (k + len != b || !is_whitespace(cp)) break;
        b = k;
      }
      start = std::max(b, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        std::size_t len = 1;
        if (!is_whitespace(utf8_decode(s, stop, len))) break;
        stop += len;
      }
    }
    if (start_offset < start) emit(start_offset, start, -1);
    // The token's piece keeps the matched text (with stripped spaces), but it is never re-split.
    Piece p;
    p.text = s.substr(start, stop - start);
    p.id = t.id;
    p.at_start = piece.at_start && start == 0;
    out.push_back(std::move(p));
    start_offset = stop;
  }
  if (start_offset < s.size()) emit(start_offset, s.size(), -1);
}

std::vector<Piece> AddedVocabulary::extract_and_normalize(std::string_view text, const Normalizer* normalizer) const {
  std::vector<Piece> first;
  Piece whole;
  whole.text.assign(text);
  whole.at_start = true;
  split(whole, raw_, first);
  std::vector<Piece> out;
  out.reserve(first.size());
  for (auto& p : first) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    if (normalizer) normalizer->normalize(p.text, p.at_start);
    if (p.text.empty()) continue;
    split(p, normalized_, out);
  }
  return out;
}

std::vector<AddedToken> AddedVocabulary::parse(const JsonValue& list, const JsonPlace& at) {
  std::vector<AddedToken> out;
  if (list.is_null()) return out;
  if (!list.is_array()) bad_field(at, "an array", &list);
  for (std::size_t i = 0; i < list.as_array().size(); ++i) {
    const JsonValue& a = list.as_array()[i];
    const JsonPlace ai = at.item(i);
    if (!a.is_object()) bad_field(ai, "an object", &a);
    AddedToken t;
    t.id = get_int(a, "id", ai, -1);
    if (t.id < 0) bad_field(ai.child("id"), "a non-negative integer", a.find("id"));
    t.content = get_string(a, "content", ai, "");
    if (t.content.empty()) bad_field(ai.child("content"), "a non-empty string", a.find("content"));
    t.special = get_bool(a, "special", ai, false);
    t.single_word = get_bool(a, "single_word", ai, false);
    t.lstrip = get_bool(a, "lstrip", ai, false);
    t.rstrip = get_bool(a, "rstrip", ai, false);
    t.normalized = get_bool(a, "normalized", ai, !t.special);
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace peft::text::detail
