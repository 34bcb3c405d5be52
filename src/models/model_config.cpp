// config.json of the reference decoders (models/model_config.hpp): reading with transformers'
// defaults and typed errors, writing as transformers' save_pretrained does (sorted keys, indent 2).

#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {
namespace {

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
const std::set<std::string> kRegenerated = {"model_type", "architectures", "torch_dtype", "dtype",
                                            "transformers_version"};

void check_model_type(const JsonValue& json, const std::string& want, const std::string& source) {
  if (!json.is_object())
    throw ModelConfigError("config", "<root>", json.dump(), "config.json must be a JSON object", "", Kind::WrongType)
        .located(source);
  const JsonValue* t = json.find("model_type");
  if (!t || !t->is_string() || t->as_string() != want)
    throw ModelConfigError("config", "model_type", t ? t->dump() : "", "expected \"" + want + "\"",
                           "the reference models are gpt2 and llama")
        .located(source);
}

std::string fmt(double v) { return JsonValue(v).dump(); }

/// The config a validation error is about, and the file it came from ("" when built in code).
struct Owner {
  std::string subject;
  std::string where;
};

[[noreturn]] void fail(const Owner& o, const std::string& field, const std::string& value, const std::string& problem,
                       const std::string& hint, Kind kind = Kind::InvalidValue) {
  const ModelConfigError e(o.subject, field, value, problem, hint, kind);
  if (o.where.empty()) throw e;
  throw e.located(o.where);
}

void positive(const Owner& owner, const std::string& field, std::int64_t v) {
  if (v <= 0) fail(owner, field, std::to_string(v), "must be positive", "");
}
void probability(const Owner& owner, const std::string& field, double v) {
  if (!(v >= 0.0 && v < 1.0)) fail(owner, field, fmt(v), "must be in [0, 1)", "");
}
void activation(const Owner& owner, const std::string& field, const std::string& name) {
  if (!is_supported_activation(name))
    fail(owner, field, "\"" + name + "\"", "unsupported activation",
         "use gelu_new, gelu, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu or swish", Kind::NotImplemented);
}

std::string dump_config(JsonValue fields, const JsonValue& extra, torch::Dtype dtype) {
  for (const auto& [k, v] : extra.as_object())
    if (!fields.find(k)) fields.set(k, v);
  fields.set("torch_dtype", torch_dtype_name(dtype));
  return fields.dump(2, /*sort_keys=*/true) + "\n";
}

}  // namespace

std::string torch_dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    case torch::kFloat64: return "float64";
    default: throw ModelConfigError("config", "torch_dtype", c10::toString(dtype), "not a floating-point model dtype", "");
  }
}

// ---------------------------------------------------------------- GPT-2

namespace {

void validate_gpt2(const GPT2Config& c, const Owner& o) {
  positive(o, "vocab_size", c.vocab_size);
  positive(o, "n_positions", c.n_positions);
  positive(o, "n_embd", c.n_embd);
  positive(o, "n_layer", c.n_layer);
  positive(o, "n_head", c.n_head);
  if (c.n_inner < 0) fail(o, "n_inner", std::to_string(c.n_inner), "must be positive or null", "");
  if (c.n_embd % c.n_head != 0)
    fail(o, "n_head", std::to_string(c.n_head),
                           "does not divide n_embd = " + std::to_string(c.n_embd), "");
  activation(o, "activation_function", c.activation_function);
  probability(o, "resid_pdrop", c.resid_pdrop);
  probability(o, "embd_pdrop", c.embd_pdrop);
  probability(o, "attn_pdrop", c.attn_pdrop);
  if (!(c.layer_norm_epsilon > 0.0))
    fail(o, "layer_norm_epsilon", fmt(c.layer_norm_epsilon), "must be positive", "");
}

}  // namespace

void GPT2Config::validate() const { validate_gpt2(*this, {"GPT2Config", ""}); }

GPT2Config gpt2_config_from_json(const JsonValue& json, const std::string& source) {
  check_model_type(json, "gpt2", source);
  GPT2Config c;
  FieldReader r(json, "GPT2Config", source);
  r.read("vocab_size", c.vocab_size, true);
  if (!json.find("n_positions") && json.find("n_ctx")) r.read("n_ctx", c.n_positions, true);
  else r.read("n_positions", c.n_positions, true);
  r.get("n_ctx", false);  // legacy duplicate of n_positions: written back from n_positions
  r.read("n_embd", c.n_embd, true);
  r.read("n_layer", c.n_layer, true);
  r.read("n_head", c.n_head, true);
  r.read("n_inner", c.n_inner);
  r.read("activation_function", c.activation_function);
  r.read("resid_pdrop", c.resid_pdrop);
  r.read("embd_pdrop", c.embd_pdrop);
  r.read("attn_pdrop", c.attn_pdrop);
  r.read("layer_norm_epsilon", c.layer_norm_epsilon);
  r.read("initializer_range", c.initializer_range);
  r.read("scale_attn_weights", c.scale_attn_weights);
  r.read("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  r.read("reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  if (json.find("add_cross_attention") && *json.find("add_cross_attention") == JsonValue(true))
    r.fail("add_cross_attention", json.find("add_cross_attention"), "cross-attention is not supported",
           "the reference GPT-2 is decoder-only", Kind::NotImplemented);
  c.extra = r.rest(kRegenerated);
  validate_gpt2(c, {"GPT2Config", source});
  return c;
}

std::string gpt2_config_to_json(const GPT2Config& c, torch::Dtype dtype) {
  JsonValue j = JsonValue::object();
  j.set("model_type", "gpt2");
  j.set("architectures", JsonValue::Array{JsonValue("GPT2LMHeadModel")});
  j.set("vocab_size", c.vocab_size);
  j.set("n_positions", c.n_positions);
  j.set("n_ctx", c.n_positions);
  j.set("n_embd", c.n_embd);
  j.set("n_layer", c.n_layer);
  j.set("n_head", c.n_head);
  j.set("n_inner", c.n_inner > 0 ? JsonValue(c.n_inner) : JsonValue());
  j.set("activation_function", c.activation_function);
  j.set("resid_pdrop", c.resid_pdrop);
  j.set("embd_pdrop", c.embd_pdrop);
  j.set("attn_pdrop", c.attn_pdrop);
  j.set("layer_norm_epsilon", c.layer_norm_epsilon);
  j.set("initializer_range", c.initializer_range);
  j.set("scale_attn_weights", c.scale_attn_weights);
  j.set("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  j.set("reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  j.set("tie_word_embeddings", c.tie_word_embeddings);
  return dump_config(std::move(j), c.extra, dtype);
}

// ---------------------------------------------------------------- Llama

namespace {

void validate_llama(const LlamaConfig& c, const Owner& o) {
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
  if (c.attn_head_dim() % 2 != 0)
    fail(o, "head_dim", std::to_string(c.attn_head_dim()), "must be even for rotary embeddings", "");
  activation(o, "hidden_act", c.hidden_act);
  probability(o, "attention_dropout", c.attention_dropout);
  if (!(c.rms_norm_eps > 0.0)) fail(o, "rms_norm_eps", fmt(c.rms_norm_eps), "must be positive", "");
  if (!(c.rope_theta > 0.0)) fail(o, "rope_theta", fmt(c.rope_theta), "must be positive", "");
  if (c.rope_type != "default" && c.rope_type != "linear" && c.rope_type != "llama3")
    fail(o, "rope_scaling.rope_type", "\"" + c.rope_type + "\"", "unsupported RoPE scaling",
                           "supported: default (null), linear, llama3", Kind::NotImplemented);
  if (c.rope_type != "default" && !(c.rope_factor > 0.0))
    fail(o, "rope_scaling.factor", fmt(c.rope_factor), "must be positive", "");
  if (c.rope_type == "llama3" && !(c.rope_high_freq_factor > c.rope_low_freq_factor && c.rope_low_freq_factor > 0.0))
    fail(o, "rope_scaling.high_freq_factor", fmt(c.rope_high_freq_factor),
                           "must be greater than low_freq_factor = " + fmt(c.rope_low_freq_factor) + " > 0", "");
  if (c.rope_type == "llama3") positive(o, "rope_scaling.original_max_position_embeddings", c.rope_original_max_position_embeddings);
}

}  // namespace

void LlamaConfig::validate() const { validate_llama(*this, {"LlamaConfig", ""}); }

LlamaConfig llama_config_from_json(const JsonValue& json, const std::string& source) {
  check_model_type(json, "llama", source);
  LlamaConfig c;
  FieldReader r(json, "LlamaConfig", source);
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
  r.read("hidden_act", c.hidden_act);
  r.read("attention_dropout", c.attention_dropout);
  r.read("initializer_range", c.initializer_range);
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  r.read("attention_bias", c.attention_bias);
  r.read("mlp_bias", c.mlp_bias);
  r.get("pretraining_tp", false);  // tensor-parallel slicing in HF: the same math; regenerated as 1
  // RoPE: transformers 4 writes rope_theta + rope_scaling; 5 writes rope_parameters (theta inside).
  const JsonValue* params = r.get("rope_parameters", false);
  const JsonValue* scaling = r.get("rope_scaling", false);
  if (params && !params->is_object()) r.fail("rope_parameters", params, "must be an object", "", Kind::WrongType);
  if (scaling && !scaling->is_object()) r.fail("rope_scaling", scaling, "must be an object or null", "", Kind::WrongType);
  if (params && params->find("rope_theta")) {
    FieldReader p(*params, "LlamaConfig.rope_parameters", source);
    p.read("rope_theta", c.rope_theta);
  }
  const JsonValue* rope = (scaling && (scaling->find("rope_type") || scaling->find("type"))) ? scaling : params;
  if (rope) {
    const std::string name = rope == scaling ? "LlamaConfig.rope_scaling" : "LlamaConfig.rope_parameters";
    FieldReader p(*rope, name, source);
    if (rope->find("rope_type")) p.read("rope_type", c.rope_type);
    else p.read("type", c.rope_type);
    if (c.rope_type != "default" && c.rope_type != "linear" && c.rope_type != "llama3")
      p.fail("rope_type", rope->find("rope_type") ? rope->find("rope_type") : rope->find("type"),
             "unsupported RoPE scaling", "supported: default (null), linear, llama3", Kind::NotImplemented);
    if (c.rope_type != "default") p.read("factor", c.rope_factor, true);
    if (c.rope_type == "llama3") {
      p.read("low_freq_factor", c.rope_low_freq_factor, true);
      p.read("high_freq_factor", c.rope_high_freq_factor, true);
      p.read("original_max_position_embeddings", c.rope_original_max_position_embeddings, true);
    }
  }
  c.extra = r.rest(kRegenerated);
  validate_llama(c, {"LlamaConfig", source});
  return c;
}

std::string llama_config_to_json(const LlamaConfig& c, torch::Dtype dtype) {
  JsonValue j = JsonValue::object();
  j.set("model_type", "llama");
  j.set("architectures", JsonValue::Array{JsonValue("LlamaForCausalLM")});
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
  j.set("attention_dropout", c.attention_dropout);
  j.set("initializer_range", c.initializer_range);
  j.set("tie_word_embeddings", c.tie_word_embeddings);
  j.set("attention_bias", c.attention_bias);
  j.set("mlp_bias", c.mlp_bias);
  j.set("pretraining_tp", 1);
  // Both spellings, so transformers 4 (rope_theta + rope_scaling) and 5 (rope_parameters) agree.
  JsonValue scaling;
  if (c.rope_type != "default") {
    scaling = JsonValue::object();
    scaling.set("rope_type", c.rope_type);
    scaling.set("factor", c.rope_factor);
    if (c.rope_type == "llama3") {
      scaling.set("low_freq_factor", c.rope_low_freq_factor);
      scaling.set("high_freq_factor", c.rope_high_freq_factor);
      scaling.set("original_max_position_embeddings", c.rope_original_max_position_embeddings);
    }
  }
  JsonValue params = scaling.is_null() ? JsonValue::object() : scaling;
  if (scaling.is_null()) params.set("rope_type", "default");
  params.set("rope_theta", c.rope_theta);
  j.set("rope_theta", c.rope_theta);
  j.set("rope_scaling", scaling);
  j.set("rope_parameters", params);
  return dump_config(std::move(j), c.extra, dtype);
}

}  // namespace peft::models
