#pragma once
/// The Llama family as in transformers (LlamaForCausalLM and the model types sharing its layout:
/// Mistral, Qwen2, Qwen3, Gemma, Phi-3; model_config.hpp lists the switches), from peft::Linear
/// layers, with HF's parameter names in HF's state_dict order:
///
///   model.embed_tokens.weight [V, d]
///   model.layers.<i>.self_attn.{q,k,v,o}_proj.weight   q/o [H*hd, d] / [d, H*hd], k/v [KV*hd, d]
///     phi3: self_attn.qkv_proj.weight [(H + 2 KV) hd, d] (q, k, v rows in that order)
///     qwen3: self_attn.q_norm.weight, k_norm.weight [hd]
///   model.layers.<i>.mlp.{gate,up,down}_proj.weight    [I, d], [I, d], [d, I]
///     phi3: mlp.gate_up_proj.weight [2 I, d] (gate rows, then up rows)
///   model.layers.<i>.input_layernorm.weight [d], post_attention_layernorm.weight [d]
///   model.norm.weight [d]
///   lm_head.weight [V, d]   unless tie_word_embeddings (then logits = x @ embed_tokens^T)
///   (+ .bias on q/k/v(/o) and the MLP where the config says so; qwen2: q/k/v)
///
/// Layer: x += o_proj(attn(rope(q), rope(k), v)) of input_layernorm(x); x += mlp(post_attention_layernorm(x));
/// attn: causal (and sliding-window where configured), scores q k^T / sqrt(hd), H query heads
/// sharing KV key/value heads; rope: HF's rotate_half on the first rotary_dim features;
/// mlp: down_proj(act(gate) * up). Gemma scales the embeddings by sqrt(d) and its RMSNorm uses
/// (1 + weight). RoPE frequencies are recomputed in each forward on the input's device (no
/// inv_freq buffer). A tied lm_head is not a module; embed_tokens is a peft::Embedding, whose
/// active token rows the tied head uses too.

#include <torch/nn/modules/container/modulelist.h>

#include <cmath>
#include <tuple>

#include "peft/error.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/checkpointing.hpp"
#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"
#include "peft/models/rope.hpp"

namespace peft::models {

/// RMSNorm with a learned scale: [..., d] -> [..., d]. Llama: weight * normed(x) cast to x's
/// dtype first; unit_offset (Gemma): normed(x) * (1 + weight) in fp32, then cast.
class LlamaRMSNormImpl : public torch::nn::Module {
 public:
  LlamaRMSNormImpl(std::int64_t hidden_size, double epsilon, bool unit_offset_ = false)
      : eps(epsilon), unit_offset(unit_offset_) {
    // Under a SkipInitScope: uninitialised, in the scope's dtype and device (to be loaded).
    weight = register_parameter("weight", new_filled_parameter_tensor({hidden_size}, unit_offset ? 0.0 : 1.0));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (!unit_offset) return rms_norm(x, weight, eps);
    auto h = x.to(torch::kFloat32);
    h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
    return (h * (1.0 + weight.to(torch::kFloat32))).to(x.scalar_type());
  }

  double eps;
  bool unit_offset;
  torch::Tensor weight;
};
TORCH_MODULE(LlamaRMSNorm);

/// What every layer of one forward shares: rotary tables, the attention masks, the cache.
struct LlamaLayerInputs {
  torch::Tensor cos, sin;         ///< [P, 1, T, rotary_dim]
  torch::Tensor allowed;          ///< attention_allowed() without a window; undefined = plain causal
  torch::Tensor allowed_window;   ///< the same with the config's sliding window (when any layer slides)
  KVCache* cache = nullptr;
};

/// Grouped-query attention with rotary positions: x [B, T, d] -> [B, T, d].
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const LlamaConfig& c, std::int64_t layer_index)
      : heads(c.num_attention_heads), kv_heads(c.kv_heads()), head_dim(c.attn_head_dim()),
        layer_idx(layer_index), window(c.layer_window(layer_index)), dropout(c.attention_dropout) {
    auto proj = [&](std::int64_t in, std::int64_t out, bool bias) {
      return peft::Linear(torch::nn::LinearOptions(in, out).bias(bias));
    };
    if (c.fused_projections) {
      qkv_proj = register_module("qkv_proj", proj(c.hidden_size, (heads + 2 * kv_heads) * head_dim, c.qkv_bias()));
    } else {
      q_proj = register_module("q_proj", proj(c.hidden_size, heads * head_dim, c.qkv_bias()));
      k_proj = register_module("k_proj", proj(c.hidden_size, kv_heads * head_dim, c.qkv_bias()));
      v_proj = register_module("v_proj", proj(c.hidden_size, kv_heads * head_dim, c.qkv_bias()));
    }
    o_proj = register_module("o_proj", proj(heads * head_dim, c.hidden_size, c.o_bias()));
    if (c.qk_norm) {
      q_norm = register_module("q_norm", LlamaRMSNorm(head_dim, c.rms_norm_eps));
      k_norm = register_module("k_norm", LlamaRMSNorm(head_dim, c.rms_norm_eps));
    }
  }

  torch::Tensor forward(const torch::Tensor& x, const LlamaLayerInputs& in) {
    const auto B = x.size(0), T = x.size(1);
    torch::Tensor q, k, v;
    if (qkv_proj) {
      auto qkv = qkv_proj(x);
      q = qkv.narrow(-1, 0, heads * head_dim);
      k = qkv.narrow(-1, heads * head_dim, kv_heads * head_dim);
      v = qkv.narrow(-1, (heads + kv_heads) * head_dim, kv_heads * head_dim);
    } else {
      q = q_proj(x);
      k = k_proj(x);
      v = v_proj(x);
    }
    // [B, T, n * hd] -> [B, n, T, hd]; Qwen3 normalises each head before the rotation.
    auto split = [&](const torch::Tensor& t, std::int64_t n, LlamaRMSNorm& norm) {
      auto h = t.reshape({B, T, n, head_dim});
      if (norm) h = norm(h);
      return h.transpose(1, 2);
    };
    LlamaRMSNorm none{nullptr};
    q = apply_rotary(split(q, heads, q_norm), in.cos, in.sin);
    k = apply_rotary(split(k, kv_heads, k_norm), in.cos, in.sin);
    v = split(v, kv_heads, none);
    if (in.cache) std::tie(k, v) = in.cache->append(static_cast<std::size_t>(layer_idx), k, v);
    const auto n_rep = heads / kv_heads;
    auto out = causal_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), 1.0 / std::sqrt(static_cast<double>(head_dim)),
                                dropout, is_training(), window > 0 ? in.allowed_window : in.allowed);
    return o_proj(out.transpose(1, 2).reshape({B, T, heads * head_dim}));
  }

  std::int64_t heads, kv_heads, head_dim, layer_idx, window;
  double dropout;
  peft::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, qkv_proj{nullptr}, o_proj{nullptr};
  LlamaRMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(LlamaAttention);

/// Gated MLP: down_proj(act(gate) * up), gate/up from gate_proj/up_proj or the halves of
/// Phi-3's gate_up_proj. [B, T, d] -> [B, T, d].
class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c) : hidden_act(c.hidden_act) {
    auto proj = [&](std::int64_t in, std::int64_t out) {
      return peft::Linear(torch::nn::LinearOptions(in, out).bias(c.mlp_bias));
    };
    if (c.fused_projections) {
      gate_up_proj = register_module("gate_up_proj", proj(c.hidden_size, 2 * c.intermediate_size));
    } else {
      gate_proj = register_module("gate_proj", proj(c.hidden_size, c.intermediate_size));
      up_proj = register_module("up_proj", proj(c.hidden_size, c.intermediate_size));
    }
    down_proj = register_module("down_proj", proj(c.intermediate_size, c.hidden_size));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (gate_up_proj) {
      auto gu = gate_up_proj(x).chunk(2, -1);
      return down_proj(gu[1] * act(hidden_act, gu[0]));
    }
    return down_proj(act(hidden_act, gate_proj(x)) * up_proj(x));
  }

  std::string hidden_act;
  peft::Linear gate_proj{nullptr}, up_proj{nullptr}, gate_up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

/// One decoder layer (pre-norm, two residual branches; Phi-3: dropout resid_pdrop on both).
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const LlamaConfig& c, std::int64_t layer_index) : resid_pdrop(c.resid_pdrop) {
    self_attn = register_module("self_attn", LlamaAttention(c, layer_index));
    mlp = register_module("mlp", LlamaMLP(c));
    input_layernorm = register_module("input_layernorm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps, c.unit_offset_norm));
    post_attention_layernorm =
        register_module("post_attention_layernorm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps, c.unit_offset_norm));
  }
  torch::Tensor forward(torch::Tensor x, const LlamaLayerInputs& in) {
    auto branch = [&](torch::Tensor y) { return resid_pdrop > 0.0 ? torch::dropout(y, resid_pdrop, is_training()) : y; };
    x = x + branch(self_attn->forward(input_layernorm(x), in));
    return x + branch(mlp(post_attention_layernorm(x)));
  }

  double resid_pdrop;
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  LlamaRMSNorm input_layernorm{nullptr};
  LlamaRMSNorm post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

/// transformers' LlamaModel ("model"): ids [B, T] -> normed hidden states [B, T, d].
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c) : config(c), rope(c) {
    embed_tokens = register_module("embed_tokens", peft::Embedding(c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c, i));
    norm = register_module("norm", LlamaRMSNorm(c.hidden_size, c.rms_norm_eps, c.unit_offset_norm));
  }

  torch::Tensor forward(const torch::Tensor& input_ids, const ForwardArgs& args = {}) {
    auto x = embed_tokens(input_ids);
    // Gemma: the normaliser is a tensor of the hidden states' dtype (rounded like transformers').
    if (config.scale_embeddings)
      x = x * torch::scalar_tensor(std::sqrt(static_cast<double>(config.hidden_size)), x.options());
    const auto T = input_ids.size(1);
    const auto past = args.cache ? args.cache->length() : 0;
    auto positions = args.position_ids.defined() ? args.position_ids.to(x.device(), torch::kInt64)
                                                 : default_position_ids(past, T, args.attention_mask, x.device());
    LlamaLayerInputs in;
    std::tie(in.cos, in.sin) = rope.cos_sin(positions, x.scalar_type());
    in.cos = in.cos.unsqueeze(1);
    in.sin = in.sin.unsqueeze(1);
    in.cache = args.cache;
    const bool plain = !args.attention_mask.defined() && past == 0;
    if (!plain) in.allowed = attention_allowed(past, T, args.attention_mask, 0, x.device());
    if (config.sliding_window > 0 && past + T > config.sliding_window)
      in.allowed_window = attention_allowed(past, T, args.attention_mask, config.sliding_window, x.device());
    else
      in.allowed_window = in.allowed;
    for (const auto& module : *layers) {
      auto* layer = module->as<LlamaDecoderLayerImpl>();
      if (gradient_checkpointing && is_training() && !args.cache)
        x = checkpoint([layer, in](const torch::Tensor& h) { return layer->forward(h, in); }, x);
      else
        x = layer->forward(x, in);
    }
    return norm(x);
  }

  LlamaConfig config;
  LlamaRope rope;  ///< rotary frequencies (recomputed per forward; nothing registered)
  bool gradient_checkpointing = false;  ///< set by CausalLMImpl::set_gradient_checkpointing
  peft::Embedding embed_tokens{nullptr};  ///< a peft layer: LoRA / trainable tokens attach in place
  torch::nn::ModuleList layers{nullptr};
  LlamaRMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

/// LlamaForCausalLM (and MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
/// GemmaForCausalLM, Phi3ForCausalLM by config.model_type): input_ids [B, T] int64 -> logits
/// [B, T, vocab_size].
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
  /// RMSNorm weights 1 (Gemma's (1 + w) norms: 0). `gen`: a seeded CPU generator, or the global RNG.
  void init_weights(c10::optional<at::Generator> gen = c10::nullopt) {
    if (skip_init_active()) return;  // built to be loaded (layers/skip_init.hpp)
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      const auto& key = p.key();
      auto& t = p.value();
      if (key.find("norm.weight") != std::string::npos) t.fill_(config.unit_offset_norm && key.find("_norm.") == std::string::npos ? 0.0 : 1.0);
      else if (key.compare(key.size() - 5, 5, ".bias") == 0) t.zero_();
      else t.normal_(0.0, config.initializer_range, gen);
    }
  }

  torch::Tensor forward(const torch::Tensor& input_ids) override { return forward(input_ids, ForwardArgs{}); }
  torch::Tensor forward(const torch::Tensor& input_ids, const ForwardArgs& args) override {
    auto hidden = hidden_states(input_ids, args);
    // Tied: the embedding weight is the head, with its active trainable-token rows (as PEFT ties them).
    return lm_head ? lm_head(hidden) : model->embed_tokens->tied_output(hidden);
  }
  std::optional<HiddenAndHead> forward_hidden(const torch::Tensor& input_ids, const ForwardArgs& args) override {
    peft::LoraLayer& head = lm_head ? static_cast<peft::LoraLayer&>(*lm_head) : *model->embed_tokens;
    if (!head.plain() || head.base_weight().requires_grad()) return std::nullopt;
    return HiddenAndHead{hidden_states(input_ids, args), head.base_weight()};
  }

  void set_gradient_checkpointing(bool on) override { model->gradient_checkpointing = on; }
  bool gradient_checkpointing() const override { return model->gradient_checkpointing; }
  std::string model_type() const override { return config.model_type; }
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
      if (config.fused_projections) {
        add(l + "self_attn.qkv_proj", config.qkv_bias());
      } else {
        for (const char* p : {"q_proj", "k_proj", "v_proj"}) add(l + "self_attn." + p, config.qkv_bias());
      }
      add(l + "self_attn.o_proj", config.o_bias());
      if (config.qk_norm) {
        add(l + "self_attn.q_norm", false);
        add(l + "self_attn.k_norm", false);
      }
      if (config.fused_projections) {
        add(l + "mlp.gate_up_proj", config.mlp_bias);
      } else {
        for (const char* p : {"gate_proj", "up_proj"}) add(l + "mlp." + p, config.mlp_bias);
      }
      add(l + "mlp.down_proj", config.mlp_bias);
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

 private:
  /// input_ids checked, then the decoder body: [B, T, d] after the final norm.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const ForwardArgs& args) {
    if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64)
      throw Error(config.causal_lm_class() + ".forward: input_ids must be [batch, seq] int64, got " +
                  std::string(input_ids.toString()) + " of " + std::to_string(input_ids.dim()) + " dims");
    return model->forward(input_ids, args);
  }
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace peft::models
