// The LibTorch-free half of the safetensors reader (see safetensors_header.hpp). The header is
// checked in two steps: a SAX pass over the raw JSON (syntax, nesting depth, duplicate keys — a
// DOM keeps only one of two equal keys — and the key order), then a DOM built from the
// already-checked text. The DOM is a plain nlohmann::json (std::map objects) read back in the
// recorded key order: an ordered_json object finds keys by linear search while it is built,
// which makes a 100 MB header of tiny entries quadratic.

#include "peft/format/safetensors_header.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/safetensors_dtype.hpp"

namespace peft {
namespace {

using json = nlohmann::json;

/// The Python library's limit on the header length.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
/// Root object -> tensor entry object -> shape / data_offsets array.
constexpr int kMaxDepth = 3;

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw SerializationError(source + ": " + problem);
}

using detail::in_quotes;

/// First pass over the header text: syntax, nesting depth and duplicate keys; records the
/// top-level keys and the keys of __metadata__ in file order.
class HeaderScanner : public nlohmann::json_sax<json> {
 public:
  std::string error;
  std::vector<std::string> top_keys;
  std::vector<std::string> metadata_keys;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }

  bool start_object(std::size_t) override {
    if (!enter()) return false;
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      error = depth_ == 1 ? "duplicate tensor name " + in_quotes(k)
                          : "duplicate key " + in_quotes(k) + " in the entry " +
                                in_quotes(top_keys.empty() ? std::string() : top_keys.back());
      return false;
    }
    if (depth_ == 1) top_keys.push_back(k);
    if (depth_ == 2 && !top_keys.empty() && top_keys.back() == "__metadata__")
      metadata_keys.push_back(k);
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = std::string("header is not valid JSON (") + ex.what() + ")";
    return false;
  }

 private:
  bool enter() {
    if (depth_ >= kMaxDepth) {
      error = "header nests objects/arrays deeper than a safetensors header can (" +
              std::to_string(kMaxDepth) + " levels)";
      return false;
    }
    ++depth_;
    return true;
  }
  int depth_ = 0;
  std::vector<std::unordered_set<std::string>> keys_;
};

/// A JSON integer >= 0 (`-0` included), as uint64; nullopt-like via the bool.
bool non_negative_integer(const json& v, std::uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<std::int64_t>() == 0) {  // "-0"
    out = 0;
    return true;
  }
  return false;
}

std::string describe(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return "negative " + v.dump();
  if (v.is_number_float()) return "non-integer " + v.dump();
  return std::string(v.type_name()) + " " + v.dump();
}

SafetensorsEntry parse_entry(const std::string& source, const std::string& name, const json& entry,
                       std::uint64_t data_size) {
  const std::string what = "tensor " + in_quotes(name);
  if (!entry.is_object()) fail(source, "entry " + in_quotes(name) + " is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end()) fail(source, what + " has no \"dtype\"");
  if (shape_it == entry.end()) fail(source, what + " has no \"shape\"");
  if (offsets_it == entry.end()) fail(source, what + " has no \"data_offsets\"");

  SafetensorsEntry spec;
  spec.name = name;
  if (!dtype_it->is_string()) fail(source, what + ": \"dtype\" is not a string");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  spec.dtype = dtype_name;
  spec.dtype_size = safetensors_dtype_size(dtype_name);
  if (spec.dtype_size == 0) {
    for (const char* known : kUnsupportedSafetensorsDtypes)
      if (dtype_name == known)
        fail(source, what + " has dtype " + dtype_name + ", which peft-cpp does not support");
    fail(source, what + " has unknown dtype " + in_quotes(dtype_name));
  }

  if (!shape_it->is_array()) fail(source, what + ": \"shape\" is not an array");
  // `span` (the product with zeros counted as 1) bounds the element count and the largest
  // stride, so a zero-element shape whose strides would overflow int64 is rejected too.
  std::uint64_t numel = 1, span = 1;
  constexpr auto kMaxI64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (const json& d : *shape_it) {
    std::uint64_t dim = 0;
    if (!non_negative_integer(d, dim))
      fail(source, what + ": shape dimension " + describe(d) +
                       " is not a non-negative integer");
    if (dim > kMaxI64 || __builtin_mul_overflow(span, std::max<std::uint64_t>(dim, 1), &span) ||
        span > kMaxI64)
      fail(source, what + ": the element count of shape " + shape_it->dump() + " overflows");
    numel *= dim;
    spec.shape.push_back(static_cast<std::int64_t>(dim));
  }
  std::uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(spec.dtype_size), &nbytes))
    fail(source, what + ": the byte size of shape " + shape_it->dump() + " overflows");

  const json& off = *offsets_it;
  if (!off.is_array() || off.size() != 2 || !non_negative_integer(off[0], spec.begin) ||
      !non_negative_integer(off[1], spec.end))
    fail(source, what + ": \"data_offsets\" " + off.dump() +
                     " is not two non-negative integers [begin, end]");
  if (spec.end < spec.begin)
    fail(source, what + ": data_offsets " + off.dump() + " end before they begin");
  if (spec.end > data_size)
    fail(source, what + ": data_offsets " + off.dump() + " reach beyond the data buffer (" +
                     std::to_string(data_size) + " bytes)");
  if (spec.end - spec.begin != nbytes)
    fail(source, what + ": data_offsets " + off.dump() + " span " +
                     std::to_string(spec.end - spec.begin) + " bytes but " + dtype_name +
                     " with shape " + shape_it->dump() + " needs " + std::to_string(nbytes));
  return spec;
}

void parse_metadata(const std::string& source, const json& meta,
                    const std::vector<std::string>& keys,
                    std::vector<std::pair<std::string, std::string>>& out) {
  if (!meta.is_object())
    fail(source, "\"__metadata__\" is a JSON " + std::string(meta.type_name()) +
                     ", not an object of strings");
  for (const std::string& k : keys) {
    const json& v = meta.at(k);
    if (!v.is_string())
      fail(source, "\"__metadata__\" value of " + in_quotes(k) + " is a JSON " +
                       std::string(v.type_name()) + ", not a string");
    out.emplace_back(k, v.get<std::string>());
  }
}

}  // namespace

std::size_t safetensors_dtype_size(const std::string& dtype) {
  const SafetensorsDtype* d = find_safetensors_dtype(dtype);
  return d ? d->size : 0;
}

std::uint64_t safetensors_header_length(const char* first_bytes, std::uint64_t file_size,
                                        const std::string& src) {
  if (file_size < 8)
    fail(src, "file is " + std::to_string(file_size) +
                  " bytes, shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<unsigned char>(first_bytes[static_cast<std::size_t>(i)]);
  if (header_len > kMaxHeaderBytes)
    fail(src, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                  std::to_string(kMaxHeaderBytes) + " bytes");
  const std::uint64_t rest = file_size - 8;
  if (header_len > rest)
    fail(src, "header length " + std::to_string(header_len) + " is larger than the " +
                  std::to_string(rest) + " bytes that follow it");
  return header_len;
}

void check_safetensors_bool_data(const SafetensorsEntry& entry, const char* data, std::uint64_t first_element,
                                 std::uint64_t count, const std::string& src) {
  if (entry.dtype != "BOOL") return;
  for (std::uint64_t i = 0; i < count; ++i)
    if (static_cast<unsigned char>(data[i]) > 1)
      fail(src, "tensor " + in_quotes(entry.name) + " (BOOL) holds byte " +
                    std::to_string(static_cast<unsigned char>(data[i])) + " at element " +
                    std::to_string(first_element + i) + "; only 0 and 1 are valid");
}

SafetensorsHeader parse_safetensors_header(const char* base, std::size_t size,
                                           const std::string& src) {
  const std::uint64_t header_len = safetensors_header_length(base, size, src);
  const std::uint64_t data_size = size - 8 - header_len;
  SafetensorsHeader out = parse_safetensors_header_text(base + 8, static_cast<std::size_t>(header_len), data_size, src);
  const char* data = base + 8 + header_len;
  for (const auto& s : out.entries) check_safetensors_bool_data(s, data + s.begin, 0, s.end - s.begin, src);
  return out;
}

SafetensorsHeader parse_safetensors_header_text(const char* text, std::size_t header_len, std::uint64_t data_size,
                                                const std::string& src) {
  if (header_len > kMaxHeaderBytes)
    fail(src, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                  std::to_string(kMaxHeaderBytes) + " bytes");
  const std::string header_text(text, header_len);

  // nlohmann's lexer takes a NUL byte for the end of the input, which would let anything after
  // "{...}\0" through; a JSON text can only hold one as a (rejected) raw control character.
  const auto nul = header_text.find('\0');
  if (nul != std::string::npos)
    fail(src, "header is not valid JSON (NUL byte at header offset " + std::to_string(nul) + ")");

  HeaderScanner scan;
  bool ok = false;
  try {
    ok = json::sax_parse(header_text, &scan);
  } catch (const json::exception& e) {
    fail(src, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!ok) fail(src, scan.error.empty() ? "header is not valid JSON" : scan.error);
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail(src, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object())
    fail(src, "header is a JSON " + std::string(header.type_name()) + ", not an object");

  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<SafetensorsEntry> specs;
  specs.reserve(scan.top_keys.size());
  for (const std::string& name : scan.top_keys) {
    const json& entry = header.at(name);
    if (name == "__metadata__")
      parse_metadata(src, entry, scan.metadata_keys, metadata);
    else
      specs.push_back(parse_entry(src, name, entry, data_size));
  }

  // Overlaps: sorted by (begin, end), each range must start at or after every earlier end.
  std::vector<const SafetensorsEntry*> by_offset;
  by_offset.reserve(specs.size());
  for (const auto& s : specs) by_offset.push_back(&s);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const SafetensorsEntry* furthest = nullptr;
  for (const SafetensorsEntry* s : by_offset) {
    if (furthest && s->begin < furthest->end)
      fail(src, "tensors " + in_quotes(furthest->name) + " and " + in_quotes(s->name) +
                    " overlap in the data buffer");
    if (!furthest || s->end > furthest->end) furthest = s;
  }

  SafetensorsHeader out;
  out.entries = std::move(specs);
  out.metadata = std::move(metadata);
  out.data_start = 8 + header_len;
  out.data_size = data_size;
  return out;
}

}  // namespace peft
