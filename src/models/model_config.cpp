// config.json of GPT-2 (models/model_config.hpp): reading with transformers' defaults and typed
// errors, writing as transformers' save_pretrained does (sorted keys, indent 2). The Llama family
// is in llama_config.cpp; the shared field reader in detail/config_fields.hpp.

#include <string>

#include "detail/config_fields.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {

using namespace detail;  // NOLINT: this file's helpers
using Kind = ConfigError::Kind;

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


}  // namespace peft::models
