// GenerationConfig: validation and reading generation_config.json / config.json
// (models/generation_config.hpp).

#include "peft/models/generation_config.hpp"

#include <cmath>
#include <system_error>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/warnings.hpp"

namespace peft::models {

namespace {

using Kind = ConfigError::Kind;
constexpr const char* kSubject = "GenerationConfig";

std::string number_text(double v) {
  if (std::isfinite(v) && std::floor(v) == v && std::abs(v) < 1e15) return std::to_string(static_cast<long long>(v)) + ".0";
  return JsonValue(v).dump();
}

[[noreturn]] void invalid(const std::string& field, const std::string& value, const std::string& problem,
                          const std::string& hint = "") {
  throw ConfigError::about(kSubject, field, value, problem, hint);
}

/// Typed reads of one JSON object; errors name `source`.
class Reader {
 public:
  Reader(const JsonValue& json, std::string source) : json_(json), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const JsonValue& v, const std::string& problem) const {
    throw ConfigError::about(kSubject, key, v.dump(), problem, "", Kind::WrongType).located(source_);
  }
  /// The value of `key`; nullptr when absent or null.
  const JsonValue* get(const std::string& key) const {
    const JsonValue* v = json_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  std::optional<std::int64_t> integer(const std::string& key) const {
    const JsonValue* v = get(key);
    if (!v) return std::nullopt;
    if (v->is_int()) return v->as_int();
    if (v->is_float() && std::floor(v->as_double()) == v->as_double() && std::abs(v->as_double()) < 1e15)
      return static_cast<std::int64_t>(v->as_double());
    fail(key, *v, "must be an integer");
  }
  std::optional<double> number(const std::string& key) const {
    const JsonValue* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(key, *v, "must be a number");
    return v->as_double();
  }
  std::optional<bool> boolean(const std::string& key) const {
    const JsonValue* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_bool()) fail(key, *v, "must be true or false");
    return v->as_bool();
  }
  /// eos_token_id: an integer or a list of integers.
  std::optional<std::vector<std::int64_t>> id_list(const std::string& key) const {
    const JsonValue* v = get(key);
    if (!v) return std::nullopt;
    std::vector<std::int64_t> out;
    auto one = [&](const JsonValue& x) {
      if (!x.is_int()) fail(key, *v, "must be an integer or a list of integers");
      out.push_back(x.as_int());
    };
    if (v->is_array()) {
      for (const auto& x : v->as_array()) one(x);
    } else {
      one(*v);
    }
    return out;
  }

 private:
  const JsonValue& json_;
  std::string source_;
};

/// Settings generate() does not implement, with the value that means "off" (as JSON).
struct Unimplemented {
  const char* key;
  JsonValue off;
};

void warn_unimplemented(const JsonValue& json, const std::string& source) {
  const Unimplemented list[] = {
      {"num_beams", JsonValue(1)},          {"num_beam_groups", JsonValue(1)}, {"penalty_alpha", JsonValue(nullptr)},
      {"min_p", JsonValue(nullptr)},        {"typical_p", JsonValue(1.0)},     {"epsilon_cutoff", JsonValue(0.0)},
      {"eta_cutoff", JsonValue(0.0)},       {"no_repeat_ngram_size", JsonValue(0)},
      {"encoder_repetition_penalty", JsonValue(1.0)}, {"length_penalty", JsonValue(1.0)},
      {"min_length", JsonValue(0)},         {"min_new_tokens", JsonValue(nullptr)}, {"bad_words_ids", JsonValue(nullptr)},
      {"suppress_tokens", JsonValue(nullptr)}, {"begin_suppress_tokens", JsonValue(nullptr)},
      {"forced_bos_token_id", JsonValue(nullptr)}, {"forced_eos_token_id", JsonValue(nullptr)},
      {"sequence_bias", JsonValue(nullptr)}, {"guidance_scale", JsonValue(nullptr)}, {"stop_strings", JsonValue(nullptr)},
      {"max_time", JsonValue(nullptr)},     {"num_return_sequences", JsonValue(1)}};
  for (const auto& u : list) {
    const JsonValue* v = json.find(u.key);
    if (!v || v->is_null() || *v == u.off) continue;
    warn(source + ": " + kSubject + "." + u.key + " = " + v->dump() +
         " is not implemented by peft::models::generate and is ignored");
  }
}

/// Token ids of config.json still unset in `c`: top level first, then text_config.
void fill_token_ids(GenerationConfig& c, const JsonValue& config_json, const std::string& source) {
  for (const JsonValue* obj : {&config_json, config_json.find("text_config")}) {
    if (!obj || !obj->is_object()) continue;
    Reader r(*obj, source);
    if (c.eos_token_id.empty())
      if (auto v = r.id_list("eos_token_id")) c.eos_token_id = *v;
    if (!c.pad_token_id) c.pad_token_id = r.integer("pad_token_id");
    if (!c.bos_token_id) c.bos_token_id = r.integer("bos_token_id");
  }
}

}  // namespace

void GenerationConfig::validate() const {
  if (max_new_tokens && *max_new_tokens <= 0)
    invalid("max_new_tokens", std::to_string(*max_new_tokens), "`max_new_tokens` must be greater than 0",
            "ask for at least one new token");
  if (!max_new_tokens && max_length <= 0)
    invalid("max_length", std::to_string(max_length), "`max_length` must be greater than 0",
            "or set max_new_tokens");
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty))
    invalid("repetition_penalty", number_text(repetition_penalty), "`penalty` has to be a strictly positive float",
            "1.0 turns the penalty off");
  if (do_sample) {
    if (!(temperature > 0.0) || !std::isfinite(temperature))
      invalid("temperature", number_text(temperature), "`temperature` has to be a strictly positive float",
              "for greedy decoding set do_sample = false instead of temperature 0");
    if (top_k < 0) invalid("top_k", std::to_string(top_k), "`top_k` has to be a strictly positive integer", "0 turns it off");
    if (!(top_p >= 0.0 && top_p <= 1.0))
      invalid("top_p", number_text(top_p), "`top_p` has to be a float > 0 and < 1", "1.0 turns it off");
  }
  for (const auto id : eos_token_id)
    if (id < 0) invalid("eos_token_id", std::to_string(id), "token ids are >= 0");
  if (pad_token_id && *pad_token_id < 0) invalid("pad_token_id", std::to_string(*pad_token_id), "token ids are >= 0");
}

GenerationConfig generation_config_from_json(const JsonValue& json, GenerationConfig base, const std::string& source) {
  if (!json.is_object())
    throw ConfigError::about(kSubject, "<root>", json.dump(), "must be a JSON object", "", Kind::WrongType).located(source);
  Reader r(json, source);
  GenerationConfig c = std::move(base);
  if (auto v = r.integer("max_new_tokens")) c.max_new_tokens = *v;
  if (auto v = r.integer("max_length")) c.max_length = *v;
  if (auto v = r.boolean("do_sample")) c.do_sample = *v;
  if (auto v = r.number("temperature")) c.temperature = *v;
  if (auto v = r.integer("top_k")) c.top_k = *v;
  if (auto v = r.number("top_p")) c.top_p = *v;
  if (auto v = r.number("repetition_penalty")) c.repetition_penalty = *v;
  if (auto v = r.id_list("eos_token_id")) c.eos_token_id = *v;
  if (auto v = r.integer("pad_token_id")) c.pad_token_id = *v;
  if (auto v = r.integer("bos_token_id")) c.bos_token_id = *v;
  if (auto v = r.boolean("use_cache")) c.use_cache = *v;
  warn_unimplemented(json, source);
  return c;
}

GenerationConfig generation_config_from_json_text(const std::string& text, GenerationConfig base,
                                                  const std::string& source) {
  JsonValue json;
  try {
    json = JsonValue::parse(text);
  } catch (const SerializationError& e) {
    throw SerializationError(source + ": " + e.what());
  }
  return generation_config_from_json(json, std::move(base), source);
}

GenerationConfig load_generation_config(const std::string& dir_or_builtin) {
  GenerationConfig c;
  if (dir_or_builtin.rfind("builtin:", 0) == 0) {
    const auto model = make_builtin(dir_or_builtin);
    const JsonValue config = JsonValue::parse(model->config_json());
    fill_token_ids(c, config, dir_or_builtin + " config.json");
    c.validate();
    return c;
  }
  const std::filesystem::path dir(dir_or_builtin);
  const auto gen_path = dir / "generation_config.json", config_path = dir / "config.json";
  std::error_code ec;
  const bool has_gen = std::filesystem::is_regular_file(gen_path, ec);
  const bool has_config = std::filesystem::is_regular_file(config_path, ec);
  JsonValue config;
  if (has_config) {
    try {
      config = JsonValue::parse(read_text_file(config_path));
    } catch (const SerializationError& e) {
      throw SerializationError(config_path.string() + ": " + e.what());
    }
  }
  if (has_gen)
    c = generation_config_from_json_text(read_text_file(gen_path), c, gen_path.string());
  else if (has_config && config.is_object())
    c = generation_config_from_json(config, c, config_path.string());
  if (has_config && config.is_object()) fill_token_ids(c, config, config_path.string());
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw e.located((has_gen ? gen_path : config_path).string());
  }
  return c;
}

}  // namespace peft::models
