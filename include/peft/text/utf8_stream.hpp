#pragma once
/// UTF-8 helpers for printing generated text as it comes: a token of a byte-level tokenizer can
/// end in the middle of a multi-byte character, so a streamer holds such a tail back until the
/// next token completes it (Utf8Stream). Header-only, no LibTorch.

#include <cstddef>
#include <string>
#include <string_view>

namespace peft::text {

/// Length of the longest prefix of `bytes` that does not end inside an incomplete UTF-8
/// sequence: a trailing lead byte (and the continuation bytes after it) that still misses
/// continuation bytes is excluded. Invalid bytes count as complete (they are never held back).
inline std::size_t utf8_complete_prefix(std::string_view bytes) {
  const std::size_t n = bytes.size();
  std::size_t i = n;
  // The last byte that is not a continuation byte (10xxxxxx), at most 4 bytes back.
  while (i > 0 && n - i < 4 && (static_cast<unsigned char>(bytes[i - 1]) & 0xC0) == 0x80) --i;
  if (i == 0 || n - i >= 4) return n;  // only continuation bytes: invalid, passed through
  const auto lead = static_cast<unsigned char>(bytes[i - 1]);
  const std::size_t need = (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
  return n - (i - 1) < need ? i - 1 : n;
}

/// `bytes` with every invalid UTF-8 sequence replaced by U+FFFD (Python's errors="replace",
/// one replacement per maximal invalid subpart), e.g. to put generated text into JSON.
inline std::string utf8_sanitize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    std::size_t k = 1;
    for (; k < len && i + k < n; ++k) {
      const auto b = static_cast<unsigned char>(bytes[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
    }
    if (k == len) {
      out.append(bytes.substr(i, len));
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += k;
  }
  return out;
}

/// Streaming text out of token bytes: push() appends bytes and returns what can be printed now
/// (everything but an incomplete trailing character); finish() returns what is left.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes) {
    pending_.append(bytes);
    const std::size_t n = utf8_complete_prefix(pending_);
    std::string out = pending_.substr(0, n);
    pending_.erase(0, n);
    return out;
  }
  std::string finish() {
    std::string out;
    out.swap(pending_);
    return out;
  }

 private:
  std::string pending_;
};

}  // namespace peft::text
