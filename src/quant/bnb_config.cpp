// BitsAndBytesConfig (quant/bnb_config.hpp).
#include "peft/quant/bnb_config.hpp"

#include "peft/error.hpp"

namespace peft {
namespace {

ConfigError bad(const std::string& field, const std::string& value, const std::string& problem,
                const std::string& hint, ConfigError::Kind kind = ConfigError::Kind::InvalidValue) {
  return ConfigError::about("BitsAndBytesConfig", field, value, problem, hint, kind);
}

}  // namespace

void BitsAndBytesConfig::validate() const {
  if (load_in_8bit)
    throw bad("load_in_8bit", "true", "8-bit loading (LLM.int8) is not implemented by peft-cpp",
              "use load_in_4bit: true", ConfigError::Kind::NotImplemented);
  if (!load_in_4bit) return;
  if (bnb_4bit_quant_type != "nf4" && bnb_4bit_quant_type != "fp4")
    throw bad("bnb_4bit_quant_type", "'" + bnb_4bit_quant_type + "'", "bitsandbytes' 4-bit types are 'nf4' and 'fp4'",
              "use 'nf4' (QLoRA's choice)");
  const auto& c = bnb_4bit_compute_dtype;
  if (c != "float32" && c != "bfloat16" && c != "float16" && c != "torch.float32" && c != "torch.bfloat16" &&
      c != "torch.float16")
    throw bad("bnb_4bit_compute_dtype", "'" + c + "'", "not a floating dtype", "use bfloat16, float16 or float32");
  if (bnb_4bit_quant_storage != "uint8")
    throw bad("bnb_4bit_quant_storage", "'" + bnb_4bit_quant_storage + "'",
              "peft-cpp stores 4-bit codes as uint8 only", "remove the key (uint8 is the default)",
              ConfigError::Kind::NotImplemented);
  bool ok = false;
  for (std::int64_t b = 32; b <= 4096; b *= 2) ok = ok || b == blocksize;
  if (!ok)
    throw bad("blocksize", std::to_string(blocksize), "bitsandbytes supports 32, 64, ..., 4096", "use 64");
  if (llm_int8_skip_modules)
    for (const auto& m : *llm_int8_skip_modules)
      if (m.empty()) throw bad("llm_int8_skip_modules", "''", "an empty name would match every module", "remove it");
}

std::vector<std::string> BitsAndBytesConfig::skip_modules() const {
  return llm_int8_skip_modules ? *llm_int8_skip_modules : std::vector<std::string>{"lm_head"};
}

BitsAndBytesConfig BitsAndBytesConfig::from_json(const JsonValue& j, const std::string& source) {
  if (!j.is_object()) throw SerializationError(source + ": quantization_config must be an object");
  BitsAndBytesConfig c;
  if (const auto* m = j.find("quant_method"); m && !(m->is_string() && m->as_string() == "bitsandbytes"))
    throw bad("quant_method", m->dump(), "only bitsandbytes quantisation is implemented",
              "use a bitsandbytes (*-bnb-4bit) checkpoint or a dense one", ConfigError::Kind::NotImplemented)
        .located(source);
  auto flag = [&](const char* key, const char* alt, bool& out) {
    for (const char* k : {key, alt}) {
      if (!k) continue;
      if (const auto* v = j.find(k)) {
        if (!v->is_bool()) throw bad(k, v->dump(), "must be true or false", "").located(source);
        out = v->as_bool();
      }
    }
  };
  auto text = [&](const char* key, std::string& out) {
    if (const auto* v = j.find(key); v && !v->is_null()) {
      if (!v->is_string()) throw bad(key, v->dump(), "must be a string", "").located(source);
      out = v->as_string();
    }
  };
  flag("_load_in_4bit", "load_in_4bit", c.load_in_4bit);
  flag("_load_in_8bit", "load_in_8bit", c.load_in_8bit);
  flag("bnb_4bit_use_double_quant", nullptr, c.bnb_4bit_use_double_quant);
  text("bnb_4bit_quant_type", c.bnb_4bit_quant_type);
  text("bnb_4bit_compute_dtype", c.bnb_4bit_compute_dtype);
  text("bnb_4bit_quant_storage", c.bnb_4bit_quant_storage);
  if (const auto* v = j.find("llm_int8_skip_modules"); v && !v->is_null()) {
    if (!v->is_array()) throw bad("llm_int8_skip_modules", v->dump(), "must be a list of names", "").located(source);
    std::vector<std::string> names;
    for (const auto& e : v->as_array()) {
      if (!e.is_string()) throw bad("llm_int8_skip_modules", v->dump(), "must be a list of names", "").located(source);
      names.push_back(e.as_string());
    }
    c.llm_int8_skip_modules = names;
  }
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw e.located(source);
  }
  return c;
}

JsonValue BitsAndBytesConfig::to_json() const {
  JsonValue j = JsonValue::object();
  j.set("_load_in_4bit", load_in_4bit);
  j.set("_load_in_8bit", load_in_8bit);
  j.set("bnb_4bit_compute_dtype", bnb_4bit_compute_dtype);
  j.set("bnb_4bit_quant_storage", bnb_4bit_quant_storage);
  j.set("bnb_4bit_quant_type", bnb_4bit_quant_type);
  j.set("bnb_4bit_use_double_quant", bnb_4bit_use_double_quant);
  j.set("llm_int8_enable_fp32_cpu_offload", false);
  j.set("llm_int8_has_fp16_weight", false);
  if (llm_int8_skip_modules) {
    JsonValue::Array a;
    for (const auto& m : *llm_int8_skip_modules) a.emplace_back(m);
    j.set("llm_int8_skip_modules", JsonValue(a));
  } else {
    j.set("llm_int8_skip_modules", nullptr);
  }
  j.set("llm_int8_threshold", 6.0);
  j.set("load_in_4bit", load_in_4bit);
  j.set("load_in_8bit", load_in_8bit);
  j.set("quant_method", "bitsandbytes");
  return j;
}

}  // namespace peft
