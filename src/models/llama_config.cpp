// config.json of the Llama family (models/model_config.hpp: LlamaConfig): llama, mistral, qwen2,
// qwen3, gemma and phi3, each with transformers' defaults for its model_type (4.47 and 5.x
// spellings), typed errors, and writing as transformers' save_pretrained does.

#include <algorithm>
#include <cmath>
#include <string>

#include "detail/config_fields.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {

using namespace detail;  // NOLINT: this file's helpers
using Kind = ConfigError::Kind;

namespace {

struct FamilyInfo {
  const char* model_type;
  const char* config_class;
  const char* causal_lm_class;
};
const FamilyInfo kFamilies[] = {
    {"llama", "LlamaConfig", "LlamaForCausalLM"},   {"mistral", "MistralConfig", "MistralForCausalLM"},
    {"qwen2", "Qwen2Config", "Qwen2ForCausalLM"},   {"qwen3", "Qwen3Config", "Qwen3ForCausalLM"},
    {"gemma", "GemmaConfig", "GemmaForCausalLM"},   {"phi3", "Phi3Config", "Phi3ForCausalLM"},
};

const FamilyInfo* family(const std::string& model_type) {
  for (const auto& f : kFamilies)
    if (model_type == f.model_type) return &f;
  return nullptr;
}

bool is_rope_type(const std::string& t, const std::string& model_type) {
  return t == "default" || t == "linear" || t == "llama3" || (t == "longrope" && model_type == "phi3");
}

std::string rope_hint(const std::string& model_type) {
  return model_type == "phi3" ? "supported: default (null), linear, llama3, longrope"
                              : "supported: default (null), linear, llama3";
}

void validate_llama(const LlamaConfig& c, const Owner& o) {
  if (!family(c.model_type))
    fail(o, "model_type", "\"" + c.model_type + "\"", "not a Llama-family model type",
         "one of llama, mistral, qwen2, qwen3, gemma, phi3", Kind::NotImplemented);
  positive(o, "vocab_size", c.vocab_size);
  positive(o, "hidden_size", c.hidden_size);
  positive(o, "intermediate_size", c.intermediate_size);
  positive(o, "num_hidden_layers", c.num_hidden_layers);
  positive(o, "num_attention_heads", c.num_attention_heads);
  positive(o, "max_position_embeddings", c.max_position_embeddings);
  if (c.num_key_value_heads < 0)
    fail(o, "num_key_value_heads", std::to_string(c.num_key_value_heads), "must be positive or null", "");
  if (c.num_attention_heads % c.kv_heads() != 0)
    fail(o, "num_key_value_heads", std::to_string(c.kv_heads()),
         "does not divide num_attention_heads = " + std::to_string(c.num_attention_heads), "");
  if (c.head_dim < 0) fail(o, "head_dim", std::to_string(c.head_dim), "must be positive or null", "");
  if (c.head_dim == 0 && c.hidden_size % c.num_attention_heads != 0)
    fail(o, "num_attention_heads", std::to_string(c.num_attention_heads),
         "does not divide hidden_size = " + std::to_string(c.hidden_size), "or set head_dim");
  if (!(c.partial_rotary_factor > 0.0 && c.partial_rotary_factor <= 1.0))
    fail(o, "partial_rotary_factor", fmt(c.partial_rotary_factor), "must be in (0, 1]", "");
  if (c.rotary_dim() % 2 != 0 || c.rotary_dim() == 0)
    fail(o, c.partial_rotary_factor == 1.0 ? "head_dim" : "partial_rotary_factor",
         c.partial_rotary_factor == 1.0 ? std::to_string(c.attn_head_dim()) : fmt(c.partial_rotary_factor),
         "the rotary dimension " + std::to_string(c.rotary_dim()) + " must be even and positive", "");
  activation(o, c.model_type == "gemma" ? "hidden_activation" : "hidden_act", c.hidden_act);
  probability(o, "attention_dropout", c.attention_dropout);
  probability(o, "resid_pdrop", c.resid_pdrop);
  if (!(c.rms_norm_eps > 0.0)) fail(o, "rms_norm_eps", fmt(c.rms_norm_eps), "must be positive", "");
  if (!(c.rope_theta > 0.0)) fail(o, "rope_theta", fmt(c.rope_theta), "must be positive", "");
  if (!is_rope_type(c.rope_type, c.model_type))
    fail(o, "rope_scaling.rope_type", "\"" + c.rope_type + "\"", "unsupported RoPE scaling", rope_hint(c.model_type),
         Kind::NotImplemented);
  if ((c.rope_type == "linear" || c.rope_type == "llama3") && !(c.rope_factor > 0.0))
    fail(o, "rope_scaling.factor", fmt(c.rope_factor), "must be positive", "");
  if (c.rope_type == "llama3" && !(c.rope_high_freq_factor > c.rope_low_freq_factor && c.rope_low_freq_factor > 0.0))
    fail(o, "rope_scaling.high_freq_factor", fmt(c.rope_high_freq_factor),
         "must be greater than low_freq_factor = " + fmt(c.rope_low_freq_factor) + " > 0", "");
  if (c.rope_type == "llama3" || c.rope_type == "longrope")
    positive(o, c.rope_type == "llama3" ? "rope_scaling.original_max_position_embeddings" : "original_max_position_embeddings",
             c.rope_original_max_position_embeddings);
  if (c.rope_type == "longrope") {
    const auto half = static_cast<std::size_t>(c.rotary_dim() / 2);
    for (const auto* f : {&c.rope_short_factor, &c.rope_long_factor})
      if (f->size() != half || std::any_of(f->begin(), f->end(), [](double v) { return !(v > 0.0); }))
        fail(o, f == &c.rope_short_factor ? "rope_scaling.short_factor" : "rope_scaling.long_factor",
             std::to_string(f->size()) + " values", "needs " + std::to_string(half) + " positive values (rotary dim / 2)", "");
  }
  if (c.sliding_window < 0) fail(o, "sliding_window", std::to_string(c.sliding_window), "must be positive or null", "");
  if (!c.layer_types.empty()) {
    if (static_cast<std::int64_t>(c.layer_types.size()) != c.num_hidden_layers)
      fail(o, "layer_types", std::to_string(c.layer_types.size()) + " entries",
           "needs one entry per layer (num_hidden_layers = " + std::to_string(c.num_hidden_layers) + ")", "");
    for (const auto& t : c.layer_types)
      if (t != "full_attention" && t != "sliding_attention")
        fail(o, "layer_types", "\"" + t + "\"", "unknown layer type", "full_attention or sliding_attention",
             Kind::NotImplemented);
  }
}

std::vector<double> read_factors(FieldReader& r, const JsonValue& obj, const std::string& key) {
  std::vector<double> out;
  const JsonValue* v = r.get(key, true);
  if (!v->is_array()) r.fail(key, v, "must be a list of numbers", "", Kind::WrongType);
  for (const auto& x : v->as_array()) {
    if (!x.is_number()) r.fail(key, v, "must be a list of numbers", "", Kind::WrongType);
    out.push_back(x.as_double());
  }
  (void)obj;
  return out;
}

/// A field that changes results and that these models do not implement: refused unless absent,
/// null or `off` (its neutral value).
void refuse_if_set(FieldReader& r, const JsonValue& json, const std::string& key, const std::string& why) {
  const JsonValue* v = json.find(key);
  if (!v || v->is_null() || *v == JsonValue(false)) return;
  r.fail(key, v, why, "not implemented by the reference models; remove it only if the checkpoint never used it",
         Kind::NotImplemented);
}

}  // namespace

const std::vector<std::string>& llama_family_model_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> t;
    for (const auto& f : kFamilies) t.emplace_back(f.model_type);
    return t;
  }();
  return types;
}

std::string LlamaConfig::config_class() const {
  const FamilyInfo* f = family(model_type);
  return f ? f->config_class : "LlamaConfig";
}
std::string LlamaConfig::causal_lm_class() const {
  const FamilyInfo* f = family(model_type);
  return f ? f->causal_lm_class : "LlamaForCausalLM";
}

void LlamaConfig::validate() const { validate_llama(*this, {config_class(), ""}); }

LlamaConfig llama_config_from_json(const JsonValue& json, const std::string& source) {
  if (!json.is_object())
    throw ModelConfigError("config", "<root>", json.dump(), "config.json must be a JSON object", "", Kind::WrongType)
        .located(source);
  const JsonValue* t = json.find("model_type");
  const FamilyInfo* fam = t && t->is_string() ? family(t->as_string()) : nullptr;
  if (!fam)
    throw ModelConfigError("config", "model_type", t ? t->dump() : "",
                           t ? "not a Llama-family model type" : "missing from config.json",
                           "one of llama, mistral, qwen2, qwen3, gemma, phi3", Kind::NotImplemented)
        .located(source);
  LlamaConfig c;
  const std::string mt = fam->model_type;
  c.model_type = mt;
  // transformers' per-type defaults for the fields whose defaults differ.
  if (mt == "phi3") c.rms_norm_eps = 1e-5;
  if (mt == "gemma") {
    c.head_dim = 256;
    c.tie_word_embeddings = true;
    c.hidden_act = "gelu_pytorch_tanh";
    c.unit_offset_norm = c.scale_embeddings = true;
  }
  if (mt == "phi3") c.fused_projections = true;
  if (mt == "qwen3") c.qk_norm = true;
  if (mt == "phi3") c.rope_original_max_position_embeddings = 4096;

  FieldReader r(json, fam->config_class, source);
  r.read("vocab_size", c.vocab_size, true);
  r.read("hidden_size", c.hidden_size, true);
  r.read("intermediate_size", c.intermediate_size, true);
  r.read("num_hidden_layers", c.num_hidden_layers, true);
  r.read("num_attention_heads", c.num_attention_heads, true);
  r.read("num_key_value_heads", c.num_key_value_heads);
  r.read("head_dim", c.head_dim);
  r.read("max_position_embeddings", c.max_position_embeddings);
  r.read("rms_norm_eps", c.rms_norm_eps);
  r.read("rope_theta", c.rope_theta);
  r.read("attention_dropout", c.attention_dropout);
  r.read("initializer_range", c.initializer_range);
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  if (mt == "llama" || mt == "gemma" || mt == "qwen3") r.read("attention_bias", c.attention_bias);
  if (mt == "llama") r.read("mlp_bias", c.mlp_bias);
  r.get("pretraining_tp", false);  // tensor-parallel slicing in HF: the same math; regenerated as 1
  if (mt == "gemma") {
    // GemmaMLP uses hidden_activation, or gelu_pytorch_tanh when it is null: hidden_act is legacy.
    r.get("hidden_act", false);
    r.read("hidden_activation", c.hidden_act);
    refuse_if_set(r, json, "attn_logit_softcapping", "logit soft-capping (Gemma 2) changes the attention scores");
    refuse_if_set(r, json, "final_logit_softcapping", "logit soft-capping (Gemma 2) changes the logits");
    refuse_if_set(r, json, "query_pre_attn_scalar", "Gemma 2's query scaling changes the attention scores");
  } else {
    r.read("hidden_act", c.hidden_act);
  }
  if (mt == "phi3") {
    r.read("resid_pdrop", c.resid_pdrop);
    r.get("embd_pdrop", false);  // defined but never applied by transformers' Phi3Model
    r.read("original_max_position_embeddings", c.rope_original_max_position_embeddings);
    r.read("partial_rotary_factor", c.partial_rotary_factor);
  }
  // Sliding window: mistral and phi3 use sliding_window when set; qwen2/qwen3 only with
  // use_sliding_window (transformers 4.47 then masks every layer in eager attention; 5.x names
  // the sliding layers in layer_types, which wins when present).
  if (mt == "mistral" || mt == "phi3" || mt == "qwen2" || mt == "qwen3") {
    // Absent: the type's default (MistralConfig, Qwen2Config, Qwen3Config: 4096; Phi3Config: None).
    std::int64_t window = mt == "phi3" ? 0 : 4096;
    r.read("sliding_window", window);
    if (json.find("sliding_window") && json.find("sliding_window")->is_null()) window = 0;
    bool use = true;
    if (mt == "qwen2" || mt == "qwen3") {
      use = false;
      r.read("use_sliding_window", use);
      r.get("max_window_layers", false);
    }
    c.sliding_window = use ? window : 0;
    if (const JsonValue* lt = r.get("layer_types", false)) {
      if (!lt->is_array()) r.fail("layer_types", lt, "must be a list of strings", "", Kind::WrongType);
      for (const auto& e : lt->as_array()) {
        if (!e.is_string()) r.fail("layer_types", lt, "must be a list of strings", "", Kind::WrongType);
        c.layer_types.push_back(e.as_string());
      }
    }
  } else {
    refuse_if_set(r, json, "sliding_window", "sliding-window attention is not part of this model type");
  }
  refuse_if_set(r, json, "attn_logit_softcapping", "logit soft-capping changes the attention scores");
  refuse_if_set(r, json, "final_logit_softcapping", "logit soft-capping changes the logits");

  // RoPE: transformers 4 writes rope_theta + rope_scaling; 5 writes rope_parameters (theta inside).
  const JsonValue* params = r.get("rope_parameters", false);
  const JsonValue* scaling = r.get("rope_scaling", false);
  if (params && !params->is_object()) r.fail("rope_parameters", params, "must be an object", "", Kind::WrongType);
  if (scaling && !scaling->is_object()) r.fail("rope_scaling", scaling, "must be an object or null", "", Kind::WrongType);
  if (params && params->find("rope_theta")) {
    FieldReader p(*params, fam->config_class + std::string(".rope_parameters"), source);
    p.read("rope_theta", c.rope_theta);
  }
  if (params && params->find("partial_rotary_factor")) {
    FieldReader p(*params, fam->config_class + std::string(".rope_parameters"), source);
    p.read("partial_rotary_factor", c.partial_rotary_factor);
  }
  const JsonValue* rope = (scaling && (scaling->find("rope_type") || scaling->find("type"))) ? scaling : params;
  if (rope) {
    const std::string name = fam->config_class + std::string(rope == scaling ? ".rope_scaling" : ".rope_parameters");
    FieldReader p(*rope, name, source);
    if (rope->find("rope_type")) p.read("rope_type", c.rope_type);
    else p.read("type", c.rope_type);
    if (mt == "phi3" && (c.rope_type == "su" || c.rope_type == "yarn")) c.rope_type = "longrope";  // Phi3Config's renaming
    if (!is_rope_type(c.rope_type, mt))
      p.fail("rope_type", rope->find("rope_type") ? rope->find("rope_type") : rope->find("type"),
             "unsupported RoPE scaling", rope_hint(mt), Kind::NotImplemented);
    if (c.rope_type == "linear" || c.rope_type == "llama3") p.read("factor", c.rope_factor, true);
    if (c.rope_type == "llama3") {
      p.read("low_freq_factor", c.rope_low_freq_factor, true);
      p.read("high_freq_factor", c.rope_high_freq_factor, true);
      p.read("original_max_position_embeddings", c.rope_original_max_position_embeddings, true);
    }
    if (c.rope_type == "longrope") {
      c.rope_short_factor = read_factors(p, *rope, "short_factor");
      c.rope_long_factor = read_factors(p, *rope, "long_factor");
      if (rope->find("original_max_position_embeddings"))
        p.read("original_max_position_embeddings", c.rope_original_max_position_embeddings);
    }
  }
  c.extra = r.rest(kRegenerated);
  validate_llama(c, {fam->config_class, source});
  return c;
}

std::string llama_config_to_json(const LlamaConfig& c, torch::Dtype dtype) {
  const std::string& mt = c.model_type;
  JsonValue j = JsonValue::object();
  j.set("model_type", mt);
  j.set("architectures", JsonValue::Array{JsonValue(c.causal_lm_class())});
  j.set("vocab_size", c.vocab_size);
  j.set("hidden_size", c.hidden_size);
  j.set("intermediate_size", c.intermediate_size);
  j.set("num_hidden_layers", c.num_hidden_layers);
  j.set("num_attention_heads", c.num_attention_heads);
  j.set("num_key_value_heads", c.kv_heads());
  j.set("head_dim", c.attn_head_dim());
  j.set("max_position_embeddings", c.max_position_embeddings);
  j.set("rms_norm_eps", c.rms_norm_eps);
  j.set("hidden_act", c.hidden_act);
  if (mt == "gemma") j.set("hidden_activation", c.hidden_act);
  j.set("attention_dropout", c.attention_dropout);
  j.set("initializer_range", c.initializer_range);
  j.set("tie_word_embeddings", c.tie_word_embeddings);
  if (mt == "llama" || mt == "gemma" || mt == "qwen3") j.set("attention_bias", c.attention_bias);
  if (mt == "llama") {
    j.set("mlp_bias", c.mlp_bias);
    j.set("pretraining_tp", 1);
  }
  if (mt == "phi3") {
    j.set("resid_pdrop", c.resid_pdrop);
    j.set("original_max_position_embeddings", c.rope_original_max_position_embeddings);
    if (c.partial_rotary_factor != 1.0) j.set("partial_rotary_factor", c.partial_rotary_factor);
  }
  if (mt == "mistral" || mt == "phi3" || mt == "qwen2" || mt == "qwen3") {
    j.set("sliding_window", c.sliding_window > 0 ? JsonValue(c.sliding_window) : JsonValue());
    if (mt == "qwen2" || mt == "qwen3") j.set("use_sliding_window", c.sliding_window > 0);
    if (!c.layer_types.empty()) {
      JsonValue::Array types;
      for (const auto& t : c.layer_types) types.emplace_back(t);
      j.set("layer_types", JsonValue(types));
    }
  }
  // Both spellings, so transformers 4 (rope_theta + rope_scaling) and 5 (rope_parameters) agree.
  JsonValue scaling;
  if (c.rope_type != "default") {
    scaling = JsonValue::object();
    scaling.set(mt == "phi3" ? "type" : "rope_type", c.rope_type);
    if (c.rope_type == "linear" || c.rope_type == "llama3") scaling.set("factor", c.rope_factor);
    if (c.rope_type == "llama3") {
      scaling.set("low_freq_factor", c.rope_low_freq_factor);
      scaling.set("high_freq_factor", c.rope_high_freq_factor);
      scaling.set("original_max_position_embeddings", c.rope_original_max_position_embeddings);
    }
    if (c.rope_type == "longrope") {
      JsonValue::Array s, l;
      for (double v : c.rope_short_factor) s.emplace_back(v);
      for (double v : c.rope_long_factor) l.emplace_back(v);
      scaling.set("short_factor", JsonValue(s));
      scaling.set("long_factor", JsonValue(l));
    }
  }
  j.set("rope_theta", c.rope_theta);
  j.set("rope_scaling", scaling);
  // Phi3Config (4.x) insists on exactly three rope_scaling keys, so it gets no rope_parameters.
  if (mt != "phi3") {
    JsonValue params = scaling.is_null() ? JsonValue::object() : scaling;
    if (scaling.is_null()) params.set("rope_type", "default");
    params.set("rope_theta", c.rope_theta);
    j.set("rope_parameters", params);
  }
  return dump_config(std::move(j), c.extra, dtype);
}

}  // namespace peft::models
