#pragma once
/// LlamaForCausalLM as in transformers, from peft::Linear layers, with HF's parameter names in
/// HF's state_dict order:
///
///   model.embed_tokens.weight [V, d]
///   model.layers.<i>.self_attn.{q,k,v,o}_proj.weight   q/o [H*hd, d] / [d, H*hd], k/v [KV*hd, d]
///   model.layers.<i>.mlp.{gate,up,down}_proj.weight    [I, d], [I, d], [d, I]
///   model.layers.<i>.input_layernorm.weight [d]        RMSNorm
///   model.layers.<i>.post_attention_layernorm.weight [d]
///   model.norm.weight [d]
///   lm_head.weight [V, d]   unless tie_word_embeddings (then logits = x @ embed_tokens^T)
///   (+ .bias on the projections when attention_bias / mlp_bias)
///
/// Layer: x += o_proj(attn(rope(q), rope(k), v)) of input_layernorm(x); x += mlp(post_attention_layernorm(x));
/// attn: causal, scores q k^T / sqrt(hd), H query heads sharing KV key/value heads (GQA);
/// rope: HF's rotate_half convention, cos/sin of cat(freqs, freqs), freqs = pos * inv_freq;
/// mlp (SwiGLU): down_proj(act(gate_proj(x)) * up_proj(x)), act = hidden_act (silu).
/// RoPE frequencies are recomputed in each forward on the input's device: no inv_freq buffer, so
/// nothing non-checkpoint appears in named_buffers(). A tied lm_head is not a module (gpt2.hpp);
/// embed_tokens is a peft::Embedding, whose active token rows the tied head uses too.

#include <torch/nn/modules/container/modulelist.h>

#include <cmath>

#include "peft/error.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {

/// RMSNorm with a learned scale (layers/lora_math.hpp rms_norm): [..., d] -> [..., d].
class LlamaRMSNormImpl : public torch::nn::Module {
 public:
  LlamaRMSNormImpl(std::int64_t hidden_size, double epsilon) : eps(epsilon) {
    weight = register_parameter("weight", torch::ones({hidden_size}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return rms_norm(x, weight, eps); }

  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(LlamaRMSNorm);

/// RoPE inverse frequencies [hd/2] (fp32, CPU) for the config's rope_type: default;
/// linear = default / factor; llama3 = wavelengths above original_max / low_freq_factor divided
/// by factor, below original_max / high_freq_factor kept, smoothly interpolated between.
inline torch::Tensor llama_inv_freq(const LlamaConfig& c) {
  auto inv = rope_inv_freq(c.attn_head_dim(), c.rope_theta);
  if (c.rope_type == "linear") return inv / c.rope_factor;
  if (c.rope_type != "llama3") return inv;
  const double old_len = static_cast<double>(c.rope_original_max_position_embeddings);
  const double low_wavelen = old_len / c.rope_low_freq_factor;
  const double high_wavelen = old_len / c.rope_high_freq_factor;
  auto wavelen = 2.0 * M_PI / inv;
  auto scaled = torch::where(wavelen > low_wavelen, inv / c.rope_factor, inv);
  auto smooth = (old_len / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
  auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

/// Grouped-query attention with rotary positions: x [B, T, d], cos/sin [T, hd] -> [B, T, d].
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c)
      : heads(c.num_attention_heads), kv_heads(c.kv_heads()), head_dim(c.attn_head_dim()), dropout(c.attention_dropout) {
    auto proj = [&](std::int64_t in, std::int64_t out) {
      return peft::Linear(torch::nn::LinearOptions(in, out).bias(c.attention_bias));
    };
    q_proj = register_module("q_proj", proj(c.hidden_size, heads * head_dim));
    k_proj = register_module("k_proj", proj(c.hidden_size, kv_heads * head_dim));
    v_proj = register_module("v_proj", proj(c.hidden_size, kv_heads * head_dim));
    o_proj = register_module("o_proj", proj(heads * head_dim, c.hidden_size));
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    const auto B = x.size(0), T = x.size(1);
    auto split = [&](const torch::Tensor& t, std::int64_t n) { return t.view({B, T, n, head_dim}).transpose(1, 2); };
    auto q = apply_rotary(split(q_proj(x), heads), cos, sin);
    auto k = apply_rotary(split(k_proj(x), kv_heads), cos, sin);
    auto v = split(v_proj(x), kv_heads);
    const auto n_rep = heads / kv_heads;
    auto out = causal_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep),
                                1.0 / std::sqrt(static_cast<double>(head_dim)), dropout, is_training());
    return o_proj(out.transpose(1, 2).reshape({B, T, heads * head_dim}));
  }

  std::int64_t heads, kv_heads, head_dim;
  double dropout;
  peft::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(LlamaAttention);

/// SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x)), [B, T, d] -> [B, T, d].
class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c) : hidden_act(c.hidden_act) {
    auto proj = [&](std::int64_t in, std::int64_t out) {
      return peft::Linear(torch::nn::LinearOptions(in, out).bias(c.mlp_bias));
    };
    gate_proj = register_module("gate_proj", proj(c.hidden_size, c.intermediate_size));
    up_proj = register_module("up_proj", proj(c.hidden_size, c.intermediate_size));
    down_proj = register_module("down_proj", proj(c.intermediate_size, c.hidden_size));
  }
  torch::Tensor forward(const torch::Tensor& x) { return down_proj(act(hidden_act, gate_proj(x)) * up_proj(x)); }

  std::string hidden_act;
  peft::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

/// One decoder layer (pre-norm, two residual branches). Registration order = HF's.
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c) {
    self_attn = register_module("self_attn", LlamaAttention(c));
    mlp = register_module("mlp", LlamaMLP(c));
    input_layernorm = register_module("input_layernorm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm = register_module("post_attention_layernorm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin) {
    x = x + self_attn(input_layernorm(x), cos, sin);
    return x + mlp(post_attention_layernorm(x));
  }

  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  LlamaRMSNorm input_layernorm{nullptr};
  LlamaRMSNorm post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

/// transformers' LlamaModel ("model"): ids [B, T] -> normed hidden states [B, T, d].
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c) : inv_freq(llama_inv_freq(c)) {
    embed_tokens = register_module("embed_tokens", peft::Embedding(c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c));
    norm = register_module("norm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps));
  }

  torch::Tensor forward(const torch::Tensor& input_ids) {
    auto x = embed_tokens(input_ids);
    auto positions = torch::arange(input_ids.size(1), torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
    auto [cos, sin] = rope_cos_sin(positions, inv_freq, x.scalar_type());
    for (const auto& layer : *layers) x = layer->as<LlamaDecoderLayerImpl>()->forward(x, cos, sin);
    return norm(x);
  }

  torch::Tensor inv_freq;  ///< fp32, CPU, not registered (not in checkpoints, not a buffer)
  peft::Embedding embed_tokens{nullptr};  ///< a peft layer: LoRA / trainable tokens attach in place
  torch::nn::ModuleList layers{nullptr};
  LlamaRMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

/// LlamaForCausalLM: input_ids [B, T] int64 -> logits [B, T, vocab_size].
class LlamaForCausalLMImpl : public CausalLMImpl {
 public:
  /// Validates `c` (ModelConfigError) and initialises like transformers (init_weights).
  explicit LlamaForCausalLMImpl(const LlamaConfig& c) : config((c.validate(), c)) {
    model = register_module("model", LlamaModel(c));
    if (!c.tie_word_embeddings)
      lm_head = register_module("lm_head", peft::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
    init_weights();
  }

  /// transformers' _init_weights: Linear and Embedding weights N(0, initializer_range), biases 0,
  /// RMSNorm weights 1. `gen`: a seeded CPU generator, or the global RNG.
  void init_weights(c10::optional<at::Generator> gen = c10::nullopt) {
    if (skip_init_active()) return;  // built to be loaded (layers/skip_init.hpp)
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const auto& key = p.key();
      auto& t = p.value();
      if (key.find("norm.weight") != std::string::npos) t.fill_(1.0);
      else if (key.compare(key.size() - 5, 5, ".bias") == 0) t.zero_();
      else t.normal_(0.0, config.initializer_range, gen);
    }
  }

  torch::Tensor forward(const torch::Tensor& input_ids) override {
    if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64)
      throw Error("LlamaForCausalLM.forward: input_ids must be [batch, seq] int64, got " +
                  std::string(input_ids.toString()) + " of " + std::to_string(input_ids.dim()) + " dims");
    auto hidden = model(input_ids);
    // Tied: the embedding weight is the head, with its active trainable-token rows (as PEFT ties them).
    return lm_head ? lm_head(hidden) : model->embed_tokens->tied_output(hidden);
  }

  std::string model_type() const override { return "llama"; }
  std::string input_embeddings_key() const override { return "model.embed_tokens"; }
  std::string output_embeddings_key() const override { return lm_head ? "lm_head" : ""; }
  bool tie_word_embeddings() const override { return config.tie_word_embeddings; }
  int64_t vocab_size() const override { return config.vocab_size; }
  int64_t max_positions() const override { return config.max_position_embeddings; }
  std::string config_json() const override {
    return llama_config_to_json(config, model->embed_tokens->weight.scalar_type());
  }
  std::vector<std::string> checkpoint_keys() const override {
    std::vector<std::string> keys = {"model.embed_tokens.weight"};
    auto add = [&](const std::string& m, bool bias) {
      keys.push_back(m + ".weight");
      if (bias) keys.push_back(m + ".bias");
    };
    for (std::int64_t i = 0; i < config.num_hidden_layers; ++i) {
      const std::string l = "model.layers." + std::to_string(i) + ".";
      for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) add(l + "self_attn." + p, config.attention_bias);
      for (const char* p : {"gate_proj", "up_proj", "down_proj"}) add(l + "mlp." + p, config.mlp_bias);
      add(l + "input_layernorm", false);
      add(l + "post_attention_layernorm", false);
    }
    keys.push_back("model.norm.weight");
    if (!config.tie_word_embeddings) keys.push_back("lm_head.weight");
    return keys;
  }

  LlamaConfig config;
  LlamaModel model{nullptr};
  peft::Linear lm_head{nullptr};  ///< empty when tied
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace peft::models
