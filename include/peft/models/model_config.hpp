#pragma once
/// The config.json of the reference decoders: Hugging Face's GPT2Config and the Llama family's
/// configs (LlamaConfig below) with
/// transformers' field names and defaults. Reading and writing live in src/models/model_config.cpp.
///
/// Reading (decisions): `model_type` must be "gpt2" or one of llama_family_model_types(). The size fields (GPT-2:
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
#include <vector>

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

/// The config.json of the Llama family, one struct for the six model types that share
/// LlamaForCausalLM's layout (models/llama.hpp): "llama", "mistral", "qwen2", "qwen3", "gemma" and
/// "phi3", with transformers' field names and, per model_type, transformers' defaults. What differs
/// between them is a switch here, set from model_type when read (config_class() names the
/// transformers class in errors):
///   qwen2: q/k/v biases (o_proj none); qwen3: per-head RMSNorm of q and k before rotary;
///   gemma: embeddings * sqrt(hidden_size), RMSNorm weight used as (1 + w) in fp32,
///          act = hidden_activation (null = gelu_pytorch_tanh; hidden_act ignored, as transformers);
///   phi3: fused qkv_proj [(H + 2 KV) hd, d] and gate_up_proj [2 I, d], partial_rotary_factor,
///         LongRoPE scaling; mistral, qwen2/3, phi3: sliding-window attention.
/// RoPE scaling: "default", "linear", "llama3", and "longrope" (phi3); others ("dynamic", "yarn")
/// are a ModelConfigError, as are logit soft-capping fields: nothing that changes results is
/// ignored.
struct LlamaConfig {
  std::string model_type = "llama";  ///< llama | mistral | qwen2 | qwen3 | gemma | phi3
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 0;  ///< 0 (null) = num_attention_heads; fewer = grouped-query
  std::int64_t head_dim = 0;             ///< 0 (null) = hidden_size / num_attention_heads
  std::int64_t max_position_embeddings = 2048;  ///< informational except for LongRoPE's factor
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string rope_type = "default";  ///< "default" | "linear" | "llama3" | "longrope"
  double rope_factor = 1.0;           ///< linear / llama3 `factor`
  double rope_low_freq_factor = 1.0;  ///< llama3
  double rope_high_freq_factor = 4.0; ///< llama3
  /// llama3's rope_scaling.original_max_position_embeddings; phi3's top-level field (LongRoPE).
  std::int64_t rope_original_max_position_embeddings = 8192;
  std::vector<double> rope_short_factor, rope_long_factor;  ///< longrope: [rotary dim / 2] each
  double partial_rotary_factor = 1.0;  ///< phi3: the first head_dim * factor features rotate
  std::string hidden_act = "silu";
  double attention_dropout = 0.0;
  double resid_pdrop = 0.0;  ///< phi3: dropout on both residual branches in training
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  ///< biases on q/k/v/o_proj (qwen2: q/k/v always, o never)
  bool mlp_bias = false;        ///< biases on gate/up/down_proj
  bool qk_norm = false;             ///< qwen3: q_norm / k_norm [head_dim] before rotary
  bool unit_offset_norm = false;    ///< gemma: RMSNorm scale (1 + weight), in fp32
  bool scale_embeddings = false;    ///< gemma: embeddings * sqrt(hidden_size) in the model dtype
  bool fused_projections = false;   ///< phi3: qkv_proj and gate_up_proj
  /// Sliding-window attention span (0 = none): a query attends to the last `sliding_window`
  /// positions (itself included), on the layers layer_uses_window() names.
  std::int64_t sliding_window = 0;
  /// transformers 5's per-layer "full_attention" / "sliding_attention"; empty = every layer
  /// slides when sliding_window is set (transformers 4.47's eager attention).
  std::vector<std::string> layer_types;
  JsonValue extra = JsonValue::object();

  std::int64_t kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
  std::int64_t attn_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  /// Features of each head that rotate: head_dim * partial_rotary_factor (all by default).
  std::int64_t rotary_dim() const {
    return static_cast<std::int64_t>(static_cast<double>(attn_head_dim()) * partial_rotary_factor);
  }
  bool qkv_bias() const { return attention_bias || model_type == "qwen2"; }
  bool o_bias() const { return attention_bias && model_type != "qwen2"; }
  std::int64_t layer_window(std::int64_t layer) const {
    if (sliding_window <= 0) return 0;
    if (layer_types.empty()) return sliding_window;
    return layer_types[static_cast<std::size_t>(layer)] == "sliding_attention" ? sliding_window : 0;
  }
  /// "LlamaConfig", "MistralConfig", "Qwen2Config", "Qwen3Config", "GemmaConfig", "Phi3Config".
  std::string config_class() const;
  /// "LlamaForCausalLM", "MistralForCausalLM", ... (config.json's architectures).
  std::string causal_lm_class() const;
  /// Throws ModelConfigError for sizes <= 0, heads % kv_heads != 0, an odd rotary dim, an unknown
  /// hidden_act or model_type, eps <= 0, rope_theta <= 0 or bad rope scaling values.
  void validate() const;
};

/// The model_types LlamaConfig covers.
const std::vector<std::string>& llama_family_model_types();

/// "float32", "bfloat16", "float16" (config.json's torch_dtype spelling).
std::string torch_dtype_name(torch::Dtype dtype);

/// Parse a config.json object of model_type "gpt2" / "llama"; `source` names the file in errors.
GPT2Config gpt2_config_from_json(const JsonValue& json, const std::string& source = "config.json");
/// Any model_type of llama_family_model_types(), with that type's defaults.
LlamaConfig llama_config_from_json(const JsonValue& json, const std::string& source = "config.json");

/// A real HF config.json (model_type, architectures, every field, torch_dtype, `extra`), keys
/// sorted and indented by 2 as transformers writes them, so AutoModelForCausalLM loads it.
std::string gpt2_config_to_json(const GPT2Config& config, torch::Dtype dtype);
std::string llama_config_to_json(const LlamaConfig& config, torch::Dtype dtype);

}  // namespace peft::models
