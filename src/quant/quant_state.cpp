// QuantState4bit: bnb's QuantState, its packed JSON and its checkpoint entries, read with every
// size and range checked before use (quant/quant_state.hpp).
#include "peft/quant/quant_state.hpp"

#include <torch/torch.h>

#include <cmath>
#include <cstring>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/quant/quantize_4bit.hpp"

namespace peft {
namespace {

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return "unsupported";
  }
}

[[noreturn]] void bad(const std::string& source, const std::string& key, const std::string& problem) {
  throw SerializationError(source + ": " + key + ": " + problem +
                           " (hint: the file is not a bitsandbytes 4-bit checkpoint written by transformers, "
                           "or it is damaged)");
}

std::string shape_text(const torch::Tensor& t) {
  std::string s = std::string(c10::toString(t.scalar_type())) + " [";
  for (std::int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void expect_tensor(const torch::Tensor& t, torch::ScalarType type, std::int64_t numel, const std::string& source,
                   const std::string& key) {
  if (t.scalar_type() != type || t.dim() != 1 || t.numel() != numel)
    bad(source, key,
        "is " + shape_text(t) + ", expected " + c10::toString(type) + " [" + std::to_string(numel) + "]");
}

torch::ScalarType parse_dtype(const JsonValue* v, const std::string& source, const std::string& key) {
  if (v && v->is_string()) {
    const auto& s = v->as_string();
    if (s == "float32") return torch::kFloat32;
    if (s == "float16") return torch::kFloat16;
    if (s == "bfloat16") return torch::kBFloat16;
  }
  bad(source, key, "must be \"float32\", \"float16\" or \"bfloat16\"");
}

std::int64_t parse_int(const JsonValue* v, std::int64_t lo, std::int64_t hi, const std::string& source,
                       const std::string& key) {
  if (!v || !v->is_int() || v->as_int() < lo || v->as_int() > hi)
    bad(source, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v->as_int();
}

}  // namespace

const char* to_string(QuantType4bit t) { return t == QuantType4bit::nf4 ? "nf4" : "fp4"; }

QuantType4bit parse_quant_type_4bit(const std::string& s, const std::string& subject, const std::string& field) {
  if (s == "nf4") return QuantType4bit::nf4;
  if (s == "fp4") return QuantType4bit::fp4;
  throw ConfigError::about(subject, field, "'" + s + "'", "bitsandbytes' 4-bit types are 'nf4' and 'fp4'",
                           "use 'nf4' (QLoRA's choice)");
}

std::int64_t QuantState4bit::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

torch::Tensor QuantState4bit::absmax_float() const {
  if (!nested()) return absmax.to(torch::kFloat32);
  // bnb: dequantize_blockwise(absmax, state2) + offset, float32 throughout.
  return dequantize_blockwise_8bit(absmax, nested_absmax.to(torch::kFloat32), nested_quant_map, nested_blocksize) +
         static_cast<double>(nested_offset);
}

std::int64_t QuantState4bit::state_bytes() const {
  std::int64_t b = 0;
  for (const auto* t : {&absmax, &quant_map, &nested_absmax, &nested_quant_map})
    if (t->defined()) b += t->numel() * static_cast<std::int64_t>(t->element_size());
  return b;
}

QuantState4bit QuantState4bit::to(const torch::Device& device) const {
  QuantState4bit s = *this;
  for (auto* t : {&s.absmax, &s.quant_map, &s.nested_absmax, &s.nested_quant_map})
    if (t->defined()) *t = t->to(device);
  return s;
}

QuantState4bit QuantState4bit::clone() const {
  QuantState4bit s = *this;
  for (auto* t : {&s.absmax, &s.quant_map, &s.nested_absmax, &s.nested_quant_map})
    if (t->defined()) *t = t->clone();
  return s;
}

std::string QuantState4bit::json() const {
  // json.dumps of QuantState.as_dict's non-tensor items, in bnb's key order.
  JsonValue::Array dims;
  for (auto d : shape) dims.emplace_back(d);
  JsonValue j = JsonValue::object();
  j.set("quant_type", to_string(quant_type));
  j.set("blocksize", blocksize);
  j.set("dtype", dtype_name(dtype));
  j.set("shape", JsonValue(dims));
  if (nested()) {
    j.set("nested_blocksize", nested_blocksize);
    j.set("nested_dtype", dtype_name(nested_dtype));
    j.set("nested_offset", static_cast<double>(nested_offset));
  }
  return j.dump();
}

std::vector<std::pair<std::string, torch::Tensor>> QuantState4bit::state_dict_entries(
    const std::string& weight_key) const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.emplace_back(weight_key + ".absmax", absmax);
  out.emplace_back(weight_key + ".quant_map", quant_map);
  if (nested()) {
    out.emplace_back(weight_key + ".nested_absmax", nested_absmax);
    out.emplace_back(weight_key + ".nested_quant_map", nested_quant_map);
  }
  const std::string j = json();
  auto bytes = torch::empty({static_cast<std::int64_t>(j.size())}, torch::kUInt8);
  std::memcpy(bytes.data_ptr<std::uint8_t>(), j.data(), j.size());
  out.emplace_back(weight_key + ".quant_state.bitsandbytes__" + to_string(quant_type), bytes);
  return out;
}

QuantState4bit QuantState4bit::from_entries(const std::map<std::string, torch::Tensor>& entries,
                                            const torch::Tensor& packed, const std::string& weight_key,
                                            const std::string& source) {
  auto get = [&](const std::string& suffix) -> const torch::Tensor* {
    auto it = entries.find(suffix);
    return it == entries.end() ? nullptr : &it->second;
  };
  // Exactly one packed quant_state, as bnb's QuantState.from_dict demands.
  const torch::Tensor* qs = nullptr;
  std::string qs_type;
  for (const char* t : {"nf4", "fp4"})
    if (const auto* p = get(std::string("quant_state.bitsandbytes__") + t)) {
      if (qs) bad(source, weight_key + ".quant_state", "has both bitsandbytes__nf4 and bitsandbytes__fp4");
      qs = p;
      qs_type = t;
    }
  if (!qs) bad(source, weight_key + ".quant_state.bitsandbytes__nf4", "is missing (no 4-bit quant state)");
  const std::string qs_key = weight_key + ".quant_state.bitsandbytes__" + qs_type;
  if (qs->scalar_type() != torch::kUInt8 || qs->dim() != 1 || qs->numel() > (1 << 16))
    bad(source, qs_key, "is " + shape_text(*qs) + ", expected the U8 bytes of a JSON object (at most 64 KiB)");
  const auto bytes = qs->contiguous();
  const JsonValue j = [&] {
    try {
      return JsonValue::parse(std::string(reinterpret_cast<const char*>(bytes.data_ptr<std::uint8_t>()),
                                          static_cast<std::size_t>(bytes.numel())));
    } catch (const SerializationError& e) {
      bad(source, qs_key, std::string("is not valid JSON: ") + e.what());
    }
  }();
  if (!j.is_object()) bad(source, qs_key, "is not a JSON object");
  for (const auto& kv : j.as_object())
    if (kv.first != "quant_type" && kv.first != "blocksize" && kv.first != "dtype" && kv.first != "shape" &&
        kv.first != "nested_blocksize" && kv.first != "nested_dtype" && kv.first != "nested_offset")
      bad(source, qs_key, "has an unknown key '" + kv.first + "'");

  QuantState4bit s;
  const JsonValue* qt = j.find("quant_type");
  if (!qt || !qt->is_string() || qt->as_string() != qs_type)
    bad(source, qs_key + ".quant_type", "must be \"" + qs_type + "\" (the key's suffix)");
  s.quant_type = qs_type == "nf4" ? QuantType4bit::nf4 : QuantType4bit::fp4;
  s.blocksize = parse_int(j.find("blocksize"), 32, 4096, source, qs_key + ".blocksize");
  if (s.blocksize & (s.blocksize - 1)) bad(source, qs_key + ".blocksize", "must be a power of two in [32, 4096]");
  s.dtype = parse_dtype(j.find("dtype"), source, qs_key + ".dtype");
  const JsonValue* shape = j.find("shape");
  if (!shape || !shape->is_array() || shape->as_array().empty() || shape->as_array().size() > 8)
    bad(source, qs_key + ".shape", "must be a list of 1 to 8 dimensions");
  std::int64_t n = 1;
  for (const auto& d : shape->as_array()) {
    if (!d.is_int() || d.as_int() <= 0 || d.as_int() > (std::int64_t{1} << 40) / n)
      bad(source, qs_key + ".shape", "must hold positive sizes whose product is at most 2^40");
    n *= d.as_int();
    s.shape.push_back(d.as_int());
  }
  if (packed.scalar_type() != torch::kUInt8 || packed.numel() != (n + 1) / 2)
    bad(source, weight_key,
        "is " + shape_text(packed) + ", expected U8 with (numel + 1) / 2 = " + std::to_string((n + 1) / 2) +
            " bytes for shape " + shape->dump());
  const std::int64_t blocks = (n + s.blocksize - 1) / s.blocksize;

  const auto* qmap = get("quant_map");
  if (!qmap) bad(source, weight_key + ".quant_map", "is missing");
  expect_tensor(*qmap, torch::kFloat32, 16, source, weight_key + ".quant_map");
  // bnb dequantises with its own code and ignores the stored map; a different one is refused
  // rather than silently ignored.
  if (!torch::equal(*qmap, code_4bit(s.quant_type)))
    bad(source, weight_key + ".quant_map", std::string("differs from bitsandbytes' ") + to_string(s.quant_type) + " code");
  s.quant_map = *qmap;

  const auto* absmax = get("absmax");
  if (!absmax) bad(source, weight_key + ".absmax", "is missing");
  const bool nested = j.find("nested_offset") || j.find("nested_blocksize") || j.find("nested_dtype");
  if (nested) {
    expect_tensor(*absmax, torch::kUInt8, blocks, source, weight_key + ".absmax");
    s.absmax = *absmax;
    s.nested_blocksize = parse_int(j.find("nested_blocksize"), 1, 1 << 20, source, qs_key + ".nested_blocksize");
    s.nested_dtype = parse_dtype(j.find("nested_dtype"), source, qs_key + ".nested_dtype");
    const JsonValue* off = j.find("nested_offset");
    if (!off || !off->is_number() || !std::isfinite(off->as_double()))
      bad(source, qs_key + ".nested_offset", "must be a finite number");
    s.nested_offset = static_cast<float>(off->as_double());
    const auto* nabs = get("nested_absmax");
    const auto* nmap = get("nested_quant_map");
    if (!nabs) bad(source, weight_key + ".nested_absmax", "is missing (the quant state is nested)");
    if (!nmap) bad(source, weight_key + ".nested_quant_map", "is missing (the quant state is nested)");
    expect_tensor(*nabs, torch::kFloat32, (blocks + s.nested_blocksize - 1) / s.nested_blocksize, source,
                  weight_key + ".nested_absmax");
    expect_tensor(*nmap, torch::kFloat32, 256, source, weight_key + ".nested_quant_map");
    if (!torch::isfinite(*nabs).all().item<bool>() || !torch::isfinite(*nmap).all().item<bool>())
      bad(source, weight_key + ".nested_absmax", "holds NaN or infinite values");
    s.nested_absmax = *nabs;
    s.nested_quant_map = *nmap;
  } else {
    for (const char* k : {"nested_absmax", "nested_quant_map"})
      if (get(k)) bad(source, weight_key + "." + k, "is present but the quant state is not nested");
    expect_tensor(*absmax, torch::kFloat32, blocks, source, weight_key + ".absmax");
    if (!torch::isfinite(*absmax).all().item<bool>() || (*absmax < 0).any().item<bool>())
      bad(source, weight_key + ".absmax", "holds negative, NaN or infinite values");
    s.absmax = *absmax;
  }
  return s;
}

}  // namespace peft
