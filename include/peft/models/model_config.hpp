#pragma once
/// The config.json of the reference decoders: Hugging Face's GPT2Config and LlamaConfig with
/// transformers' field names and defaults. Reading and writing live in src/models/model_config.cpp.
///
/// Reading (decisions): `model_type` must be "gpt2" or "llama". The size fields (GPT-2:
/// vocab_size, n_positions (or the legacy n_ctx), n_embd, n_layer, n_head; Llama: vocab_size,
/// hidden_size, intermediate_size, num_hidden_layers, num_attention_heads) are required, although
/// transformers would default them: a config.json without them is not a checkpoint's, and the
/// defaults (GPT-2 small, Llama-7B) would only fail later as a shape mismatch. Every other field
/// takes transformers' default when absent or null. Fields the models do not use (token ids,
/// generation settings, `_name_or_path` ...) are kept in `extra` and written back unchanged.
/// Every failure is a ModelConfigError naming the field and the value.

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"

namespace peft::models {

/// A config.json field holds a value the reference models cannot use (wrong type, out of range,
/// unsupported model_type / activation / rope type). A peft::ConfigError whose subject() is the
/// config ("GPT2Config", "LlamaConfig", "LlamaConfig.rope_scaling", or "config" before the
/// model_type is known), field() the key (`n_head`, `rope_type`) and value() the offending value
/// as JSON text; with located(), what() names the file too
/// (`dir/config.json: LlamaConfig.rope_scaling.rope_type = "yarn": ...`).
class ModelConfigError : public ConfigError {
 public:
  ModelConfigError(const std::string& subject, const std::string& field, const std::string& value,
                   const std::string& problem, const std::string& hint, Kind kind = Kind::InvalidValue)
      : ConfigError(about(subject, field, value, problem, hint, kind)) {}

  /// The same error with the file in front: `dir/config.json: GPT2Config.n_head = ...`.
  ModelConfigError located(const std::string& where) const { return ModelConfigError(ConfigError::located(where)); }

 private:
  explicit ModelConfigError(const ConfigError& e) : ConfigError(e) {}
};

/// transformers' GPT2Config (defaults = GPT-2 small).
struct GPT2Config {
  std::int64_t vocab_size = 50257;
  std::int64_t n_positions = 1024;  ///< learned position embeddings (wpe rows); longest input
  std::int64_t n_embd = 768;
  std::int64_t n_layer = 12;
  std::int64_t n_head = 12;
  std::int64_t n_inner = 0;  ///< MLP width; 0 (config.json null) = 4 * n_embd
  /// gelu_new (tanh approximation), gelu, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu/swish.
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1;
  double embd_pdrop = 0.1;
  double attn_pdrop = 0.1;
  double layer_norm_epsilon = 1e-5;
  double initializer_range = 0.02;
  bool scale_attn_weights = true;                ///< scores / sqrt(head_dim)
  bool scale_attn_by_inverse_layer_idx = false;  ///< scores / (layer_idx + 1) as well
  /// Accepted: it only changes where HF upcasts; these models always softmax in fp32.
  bool reorder_and_upcast_attn = false;
  bool tie_word_embeddings = true;  ///< lm_head shares transformer.wte.weight
  JsonValue extra = JsonValue::object();  ///< other config.json fields, written back as read

  std::int64_t inner_dim() const { return n_inner > 0 ? n_inner : 4 * n_embd; }
  std::int64_t head_dim() const { return n_embd / n_head; }
  /// Throws ModelConfigError for sizes <= 0, n_embd % n_head != 0, an unknown activation,
  /// eps <= 0 or a dropout outside [0, 1).
  void validate() const;
};

/// transformers' LlamaConfig (defaults = Llama-7B). rope_scaling: rope_type "default", "linear"
/// (inv_freq / factor) and "llama3" (Llama 3.1's frequency-dependent scaling) are supported;
/// others ("dynamic", "yarn", "longrope", ...) are a ModelConfigError.
struct LlamaConfig {
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 0;  ///< 0 (null) = num_attention_heads; fewer = grouped-query
  std::int64_t head_dim = 0;             ///< 0 (null) = hidden_size / num_attention_heads
  std::int64_t max_position_embeddings = 2048;  ///< informational: RoPE needs no table
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string rope_type = "default";  ///< "default" | "linear" | "llama3"
  double rope_factor = 1.0;           ///< linear / llama3 `factor`
  double rope_low_freq_factor = 1.0;  ///< llama3
  double rope_high_freq_factor = 4.0; ///< llama3
  std::int64_t rope_original_max_position_embeddings = 8192;  ///< llama3
  std::string hidden_act = "silu";
  double attention_dropout = 0.0;
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  ///< biases on q/k/v/o_proj
  bool mlp_bias = false;        ///< biases on gate/up/down_proj
  JsonValue extra = JsonValue::object();

  std::int64_t kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
  std::int64_t attn_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  /// Throws ModelConfigError for sizes <= 0, heads % kv_heads != 0, an odd head_dim, an unknown
  /// hidden_act, eps <= 0, rope_theta <= 0 or bad rope scaling values.
  void validate() const;
};

/// "float32", "bfloat16", "float16" (config.json's torch_dtype spelling).
std::string torch_dtype_name(torch::Dtype dtype);

/// Parse a config.json object of model_type "gpt2" / "llama"; `source` names the file in errors.
GPT2Config gpt2_config_from_json(const JsonValue& json, const std::string& source = "config.json");
LlamaConfig llama_config_from_json(const JsonValue& json, const std::string& source = "config.json");

/// A real HF config.json (model_type, architectures, every field, torch_dtype, `extra`), keys
/// sorted and indented by 2 as transformers writes them, so AutoModelForCausalLM loads it.
std::string gpt2_config_to_json(const GPT2Config& config, torch::Dtype dtype);
std::string llama_config_to_json(const LlamaConfig& config, torch::Dtype dtype);

}  // namespace peft::models
