// PythonRegex on PCRE2 (8-bit code units, UTF + UCP): see peft/detail/regex.hpp.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "peft/detail/regex.hpp"
#include "peft/detail/shortened.hpp"
#include "peft/error.hpp"

namespace peft {

struct PythonRegex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  ~Code() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

namespace {

// Python's `\Z` is "end of string" (PCRE2's `\z`); PCRE2's `\Z` also matches before a final
// newline. Every other escape is spelled the same in both dialects.
std::string to_pcre2(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      out += '\\';
      out += pattern[i + 1] == 'Z' ? 'z' : pattern[i + 1];
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buffer));
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

PythonRegex::PythonRegex(const std::string& pattern, const std::string& field) : pattern_(pattern), field_(field) {
  const std::string translated = to_pcre2(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  // MATCH_INVALID_UTF: a key that is not valid UTF-8 simply does not match across the bad bytes
  // (Python would never see such a key: module names are str).
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  if (!code)
    throw ConfigError(field, quoted(pattern),
                      "is not a valid regular expression (" + pcre2_message(error) + " at offset " +
                          std::to_string(offset) + ")",
                      "patterns use Python `re` syntax, e.g. \".*\\\\.(q|v)_proj\"");
  auto holder = std::make_shared<Code>();
  holder->code = code;
  holder->context = pcre2_match_context_create(nullptr);
  if (!holder->context) throw Error("PCRE2: cannot allocate a match context");
  pcre2_set_match_limit(holder->context, kMatchLimit);
  code_ = std::move(holder);
}

bool PythonRegex::fullmatch(std::string_view s) const { return run(s, true, nullptr); }

bool PythonRegex::match(std::string_view s, std::vector<std::string>* groups) const { return run(s, false, groups); }

bool PythonRegex::run(std::string_view s, bool full, std::vector<std::string>* groups) const {
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), pcre2_match_data_free);
  if (!data) throw Error("PCRE2: cannot allocate match data");
  // ANCHORED = re.match; ANCHORED | ENDANCHORED = re.fullmatch (backtracks until a match ends at
  // the end of the subject, as Python's fullmatch does).
  const uint32_t options = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0u);
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, options, data.get(),
                             code_->context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
    throw ConfigError(field_, quoted(pattern_),
                      "gave up on the key \"" + detail::shortened(s, 120) + "\" after " + std::to_string(kMatchLimit) +
                          " backtracking steps (catastrophic backtracking)",
                      "simplify the pattern: avoid nested quantifiers such as (a+)+ or (.*)*");
  if (rc < 0) throw ConfigError(field_, quoted(pattern_), "failed to match: " + pcre2_message(rc), "simplify the pattern");
  if (groups) {
    groups->clear();
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    const uint32_t n = pcre2_get_ovector_count(data.get());
    for (uint32_t g = 1; g < n; ++g) {
      if (static_cast<int>(g) >= rc || ov[2 * g] == PCRE2_UNSET) groups->emplace_back();
      else groups->emplace_back(s.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
    }
  }
  return true;
}

}  // namespace peft
