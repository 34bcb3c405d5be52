#pragma once
// Internal: the config.json field reader and validation helpers shared by the GPT-2 and Llama
// family config readers (src/models/model_config.cpp, src/models/llama_config.cpp).

#include <cmath>
#include <set>
#include <string>

#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models::detail {


using Kind = ConfigError::Kind;

/// Reads typed fields of one config.json object; every field it reads is remembered, so the
/// rest can be kept in `extra`.
class FieldReader {
 public:
  FieldReader(const JsonValue& json, std::string owner, std::string source)
      : json_(json), owner_(std::move(owner)), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const JsonValue* v, const std::string& problem,
                         const std::string& hint, Kind kind = Kind::InvalidValue) const {
    throw ModelConfigError(owner_, field, v ? v->dump() : "", problem, hint, kind).located(source_);
  }

  /// The field's value, nullptr when absent or null. `required`: absent/null is an error.
  const JsonValue* get(const std::string& key, bool required) {
    seen_.insert(key);
    const JsonValue* v = json_.find(key);
    if (v && v->is_null()) v = nullptr;
    if (!v && required)
      fail(key, nullptr, "missing from config.json", "a checkpoint's config.json names every size field", Kind::WrongType);
    return v;
  }
  void read(const std::string& key, std::int64_t& out, bool required = false) {
    if (const JsonValue* v = get(key, required)) {
      if (v->is_int()) out = v->as_int();
      else if (v->is_float() && std::floor(v->as_double()) == v->as_double() && std::abs(v->as_double()) < 1e15)
        out = static_cast<std::int64_t>(v->as_double());
      else fail(key, v, "must be an integer", "", Kind::WrongType);
    }
  }
  void read(const std::string& key, double& out, bool required = false) {
    if (const JsonValue* v = get(key, required)) {
      if (!v->is_number()) fail(key, v, "must be a number", "", Kind::WrongType);
      out = v->as_double();
    }
  }
  void read(const std::string& key, bool& out) {
    if (const JsonValue* v = get(key, false)) {
      if (!v->is_bool()) fail(key, v, "must be true or false", "", Kind::WrongType);
      out = v->as_bool();
    }
  }
  void read(const std::string& key, std::string& out) {
    if (const JsonValue* v = get(key, false)) {
      if (!v->is_string()) fail(key, v, "must be a string", "", Kind::WrongType);
      out = v->as_string();
    }
  }
  /// Every field not read (nor in `drop`), in file order.
  JsonValue rest(const std::set<std::string>& drop) const {
    JsonValue out = JsonValue::object();
    for (const auto& [k, v] : json_.as_object())
      if (!seen_.count(k) && !drop.count(k)) out.set(k, v);
    return out;
  }

 private:
  const JsonValue& json_;
  std::string owner_;
  std::string source_;
  std::set<std::string> seen_;
};

// Written by us (or by transformers) and recomputed on every save: not kept in `extra`.
inline const std::set<std::string> kRegenerated = {"model_type", "architectures", "torch_dtype", "dtype",
                                            "transformers_version"};

inline void check_model_type(const JsonValue& json, const std::string& want, const std::string& source) {
  if (!json.is_object())
    throw ModelConfigError("config", "<root>", json.dump(), "config.json must be a JSON object", "", Kind::WrongType)
        .located(source);
  const JsonValue* t = json.find("model_type");
  if (!t || !t->is_string() || t->as_string() != want)
    throw ModelConfigError("config", "model_type", t ? t->dump() : "", "expected \"" + want + "\"",
                           "the reference models are gpt2 and llama")
        .located(source);
}

inline std::string fmt(double v) { return JsonValue(v).dump(); }

/// The config a validation error is about, and the file it came from ("" when built in code).
struct Owner {
  std::string subject;
  std::string where;
};

[[noreturn]] inline void fail(const Owner& o, const std::string& field, const std::string& value, const std::string& problem,
                       const std::string& hint, Kind kind = Kind::InvalidValue) {
  const ModelConfigError e(o.subject, field, value, problem, hint, kind);
  if (o.where.empty()) throw e;
  throw e.located(o.where);
}

inline void positive(const Owner& owner, const std::string& field, std::int64_t v) {
  if (v <= 0) fail(owner, field, std::to_string(v), "must be positive", "");
}
inline void probability(const Owner& owner, const std::string& field, double v) {
  if (!(v >= 0.0 && v < 1.0)) fail(owner, field, fmt(v), "must be in [0, 1)", "");
}
inline void activation(const Owner& owner, const std::string& field, const std::string& name) {
  if (!is_supported_activation(name))
    fail(owner, field, "\"" + name + "\"", "unsupported activation",
         "use gelu_new, gelu, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu or swish", Kind::NotImplemented);
}

inline std::string dump_config(JsonValue fields, const JsonValue& extra, torch::Dtype dtype) {
  for (const auto& [k, v] : extra.as_object())
    if (!fields.find(k)) fields.set(k, v);
  fields.set("torch_dtype", torch_dtype_name(dtype));
  return fields.dump(2, /*sort_keys=*/true) + "\n";
}

}  // namespace peft::models::detail
