// PCRE2 wrapper: compile once with UTF | UCP and JIT; find_all loops pcre2_match.

#define PCRE2_CODE_UNIT_WIDTH 8
#include "pcre2_regex.hpp"

#include <pcre2.h>

#include <stdexcept>

#include "unicode.hpp"

namespace peft::text::detail {

struct Pcre2Regex::Impl {
  pcre2_code* code = nullptr;
};

Pcre2Regex::Pcre2Regex(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // UCP: \s \w \d and POSIX classes use Unicode properties, as Oniguruma does for UTF-8 strings.
  // NO_UTF_CHECK is safe because find_all hands PCRE2 valid UTF-8 only.
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                              &err, &err_off, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw std::invalid_argument(std::string(reinterpret_cast<char*>(buf)) + " at offset " + std::to_string(err_off));
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
}

Pcre2Regex::~Pcre2Regex() { pcre2_code_free(impl_->code); }

void Pcre2Regex::find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  out.clear();
  std::string sanitized;
  if (!is_valid_utf8(text)) {
    // Same length, so offsets stay valid for the caller's original text.
    sanitized = replace_invalid_utf8_bytes(text, '\x7f');
    text = sanitized;
  }
  struct MatchData {
    pcre2_match_data* md;
    ~MatchData() { pcre2_match_data_free(md); }
  } data{pcre2_match_data_create_from_pattern(impl_->code, nullptr)};
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH (or a resource limit: no further matches)
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const std::size_t b = ov[0], e = ov[1];
    out.emplace_back(b, e);
    if (e > b) {
      pos = e;
    } else {
      if (b >= text.size()) break;
      pos = b + utf8_char_len(text, b);
    }
  }
}

}  // namespace peft::text::detail
