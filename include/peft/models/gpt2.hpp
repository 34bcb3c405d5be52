#pragma once
/// GPT2LMHeadModel as in transformers, from peft::Conv1D layers (weights stored [in, out]), with
/// HF's parameter names (named_parameters() order = HF's state_dict order):
///
///   transformer.wte.weight [V, d]   transformer.wpe.weight [P, d]
///   transformer.h.<i>.ln_1.{weight,bias}          LayerNorm(d, layer_norm_epsilon)
///   transformer.h.<i>.attn.c_attn.{weight,bias}   Conv1D [d, 3d]: q | k | v
///   transformer.h.<i>.attn.c_proj.{weight,bias}   Conv1D [d, d]
///   transformer.h.<i>.ln_2.{weight,bias}
///   transformer.h.<i>.mlp.c_fc.{weight,bias}      Conv1D [d, inner]
///   transformer.h.<i>.mlp.c_proj.{weight,bias}    Conv1D [inner, d]
///   transformer.ln_f.{weight,bias}
///   lm_head.weight [V, d]   only when tie_word_embeddings is false
///
/// Block: x += attn(ln_1(x)); x += mlp(ln_2(x)); attn = causal multi-head attention with scores
/// q k^T / sqrt(head_dim); mlp = c_proj(act(c_fc(x))). logits = ln_f(x) @ wte^T (tied).
/// Decision: a tied lm_head is not a module here (PyTorch's named_parameters() also lists the
/// shared tensor once); so it cannot carry LoRA, and optimisers never see it twice. wte and wpe
/// are peft::Embedding (LoRA and trainable tokens attach in place); the tied head uses wte's
/// weight with the active adapter's token rows (EmbeddingImpl::tied_output), as PEFT ties a
/// TrainableTokensWrapper on lm_head to the embedding's.

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <tuple>
#include <optional>

#include "peft/error.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/checkpointing.hpp"
#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {

/// Causal self-attention: x [B, T, d] -> [B, T, d].
class GPT2AttentionImpl : public torch::nn::Module {
 public:
  GPT2AttentionImpl(const GPT2Config& c, std::int64_t layer_index) : config(c), layer_idx(layer_index) {
    c_attn = register_module("c_attn", peft::Conv1D(3 * c.n_embd, c.n_embd));
    c_proj = register_module("c_proj", peft::Conv1D(c.n_embd, c.n_embd));
  }

  /// x [B, T, d]; allowed: attention_allowed() or undefined (plain causal); cache: appended.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& allowed = {}, KVCache* cache = nullptr) {
    const auto B = x.size(0), T = x.size(1), H = config.n_head, D = config.head_dim();
    auto qkv = c_attn(x).split(config.n_embd, -1);  // 3 x [B, T, d]
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, D}).transpose(1, 2); };
    double scale = 1.0;
    if (config.scale_attn_weights) scale /= std::sqrt(static_cast<double>(D));
    if (config.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(layer_idx + 1);
    auto k = heads(qkv[1]), v = heads(qkv[2]);
    if (cache) std::tie(k, v) = cache->append(static_cast<std::size_t>(layer_idx), k, v);
    auto out = causal_attention(heads(qkv[0]), k, v, scale, config.attn_pdrop, is_training(), allowed);
    out = c_proj(out.transpose(1, 2).reshape({B, T, config.n_embd}));
    return torch::dropout(out, config.resid_pdrop, is_training());
  }

  GPT2Config config;
  std::int64_t layer_idx;
  peft::Conv1D c_attn{nullptr};
  peft::Conv1D c_proj{nullptr};
};
TORCH_MODULE(GPT2Attention);

/// c_proj(act(c_fc(x))) with dropout: [B, T, d] -> [B, T, d].
class GPT2MLPImpl : public torch::nn::Module {
 public:
  explicit GPT2MLPImpl(const GPT2Config& c) : config(c) {
    c_fc = register_module("c_fc", peft::Conv1D(c.inner_dim(), c.n_embd));
    c_proj = register_module("c_proj", peft::Conv1D(c.n_embd, c.inner_dim()));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::dropout(c_proj(act(config.activation_function, c_fc(x))), config.resid_pdrop, is_training());
  }

  GPT2Config config;
  peft::Conv1D c_fc{nullptr};
  peft::Conv1D c_proj{nullptr};
};
TORCH_MODULE(GPT2MLP);

/// Pre-LayerNorm transformer block.
class GPT2BlockImpl : public torch::nn::Module {
 public:
  GPT2BlockImpl(const GPT2Config& c, std::int64_t layer_idx) {
    auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd}).eps(c.layer_norm_epsilon)); };
    ln_1 = register_module("ln_1", ln());
    attn = register_module("attn", GPT2Attention(c, layer_idx));
    ln_2 = register_module("ln_2", ln());
    mlp = register_module("mlp", GPT2MLP(c));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& allowed = {}, KVCache* cache = nullptr) {
    x = x + attn->forward(ln_1(x), allowed, cache);
    return x + mlp(ln_2(x));
  }

  torch::nn::LayerNorm ln_1{nullptr};
  GPT2Attention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
  GPT2MLP mlp{nullptr};
};
TORCH_MODULE(GPT2Block);

/// transformers' GPT2Model ("transformer"): ids [B, T] -> hidden states [B, T, d] after ln_f.
class GPT2ModelImpl : public torch::nn::Module {
 public:
  explicit GPT2ModelImpl(const GPT2Config& c) : config(c) {
    wte = register_module("wte", peft::Embedding(c.vocab_size, c.n_embd));
    wpe = register_module("wpe", peft::Embedding(c.n_positions, c.n_embd));
    h = register_module("h", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < c.n_layer; ++i) h->push_back(GPT2Block(c, i));
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.n_embd}).eps(c.layer_norm_epsilon)));
  }

  torch::Tensor forward(const torch::Tensor& input_ids, const ForwardArgs& args = {}) {
    const auto T = input_ids.size(1);
    const auto past = args.cache ? args.cache->length() : 0;
    auto positions = args.position_ids.defined() ? args.position_ids.to(input_ids.device(), torch::kInt64)
                                                 : default_position_ids(past, T, args.attention_mask, input_ids.device());
    if (args.position_ids.defined() && positions.numel() > 0 && positions.max().item<std::int64_t>() >= config.n_positions)
      throw Error("GPT2LMHeadModel.forward: position " + std::to_string(positions.max().item<std::int64_t>()) +
                  " is beyond n_positions = " + std::to_string(config.n_positions));
    auto x = torch::dropout(wte(input_ids) + wpe(positions), config.embd_pdrop, is_training());
    torch::Tensor allowed;
    if (args.attention_mask.defined() || past > 0)
      allowed = attention_allowed(past, T, args.attention_mask, 0, input_ids.device());
    for (const auto& module : *h) {
      auto* block = module->as<GPT2BlockImpl>();
      if (gradient_checkpointing && is_training() && !args.cache)
        x = checkpoint([block, allowed](const torch::Tensor& y) { return block->forward(y, allowed); }, x);
      else
        x = block->forward(x, allowed, args.cache);
    }
    return ln_f(x);
  }

  GPT2Config config;
  bool gradient_checkpointing = false;  ///< set by CausalLMImpl::set_gradient_checkpointing
  peft::Embedding wte{nullptr};  ///< peft layers: LoRA / trainable tokens attach in place
  peft::Embedding wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};
};
TORCH_MODULE(GPT2Model);

/// GPT2LMHeadModel: input_ids [B, T] int64 (T <= n_positions) -> logits [B, T, vocab_size].
class GPT2LMHeadModelImpl : public CausalLMImpl {
 public:
  /// Validates `c` (ModelConfigError) and initialises like transformers (init_weights).
  explicit GPT2LMHeadModelImpl(const GPT2Config& c) : config((c.validate(), c)) {
    transformer = register_module("transformer", GPT2Model(c));
    if (!c.tie_word_embeddings)
      lm_head = register_module("lm_head", peft::Linear(torch::nn::LinearOptions(c.n_embd, c.vocab_size).bias(false)));
    init_weights();
  }

  /// transformers' _init_weights: weights N(0, initializer_range), biases 0, LayerNorm (1, 0),
  /// every c_proj weight N(0, initializer_range / sqrt(2 n_layer)). `gen`: a seeded CPU
  /// generator (the parameters must be on the CPU then), or the global RNG.
  void init_weights(c10::optional<at::Generator> gen = c10::nullopt) {
    if (skip_init_active()) return;  // built to be loaded (layers/skip_init.hpp)
    torch::NoGradGuard no_grad;
    const double std_ = config.initializer_range;
    const double proj_std = std_ / std::sqrt(2.0 * static_cast<double>(config.n_layer));
    for (auto& p : named_parameters()) {
      const auto& key = p.key();
      auto& t = p.value();
      const bool is_norm = key.find(".ln_") != std::string::npos || key.rfind("transformer.ln_f", 0) == 0;
      if (is_norm) {
        (key.size() >= 7 && key.compare(key.size() - 7, 7, ".weight") == 0) ? t.fill_(1.0) : t.zero_();
      } else if (key.compare(key.size() - 5, 5, ".bias") == 0) {
        t.zero_();
      } else if (key.find("c_proj.weight") != std::string::npos) {
        t.normal_(0.0, proj_std, gen);
      } else {
        t.normal_(0.0, std_, gen);
      }
    }
  }

  torch::Tensor forward(const torch::Tensor& input_ids) override { return forward(input_ids, ForwardArgs{}); }
  torch::Tensor forward(const torch::Tensor& input_ids, const ForwardArgs& args) override {
    auto hidden = hidden_states(input_ids, args);
    // Tied: wte's weight is the head, with its active trainable-token rows (PEFT ties them too).
    return lm_head ? lm_head(hidden) : transformer->wte->tied_output(hidden);
  }
  std::optional<HiddenAndHead> forward_hidden(const torch::Tensor& input_ids, const ForwardArgs& args) override {
    peft::LoraLayer& head = lm_head ? static_cast<peft::LoraLayer&>(*lm_head) : *transformer->wte;
    if (!head.plain() || head.base_weight().requires_grad()) return std::nullopt;
    return HiddenAndHead{hidden_states(input_ids, args), head.base_weight()};
  }

  void set_gradient_checkpointing(bool on) override { transformer->gradient_checkpointing = on; }
  bool gradient_checkpointing() const override { return transformer->gradient_checkpointing; }
  std::string model_type() const override { return "gpt2"; }
  std::string input_embeddings_key() const override { return "transformer.wte"; }
  std::string output_embeddings_key() const override { return lm_head ? "lm_head" : ""; }
  bool tie_word_embeddings() const override { return config.tie_word_embeddings; }
  int64_t vocab_size() const override { return config.vocab_size; }
  int64_t max_positions() const override { return config.n_positions; }
  std::string config_json() const override {
    return gpt2_config_to_json(config, transformer->wte->weight.scalar_type());
  }
  std::vector<std::string> checkpoint_keys() const override {
    std::vector<std::string> keys = {"transformer.wte.weight", "transformer.wpe.weight"};
    for (std::int64_t i = 0; i < config.n_layer; ++i) {
      const std::string b = "transformer.h." + std::to_string(i) + ".";
      for (const char* m : {"ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"})
        for (const char* p : {".weight", ".bias"}) keys.push_back(b + m + p);
    }
    keys.push_back("transformer.ln_f.weight");
    keys.push_back("transformer.ln_f.bias");
    if (!config.tie_word_embeddings) keys.push_back("lm_head.weight");
    return keys;
  }

  GPT2Config config;
  GPT2Model transformer{nullptr};
  peft::Linear lm_head{nullptr};  ///< empty when tied

 private:
  /// input_ids checked, then the transformer body: [B, T, d] after ln_f.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const ForwardArgs& args) {
    if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64)
      throw Error("GPT2LMHeadModel.forward: input_ids must be [batch, seq] int64, got " +
                  std::string(input_ids.toString()) + " of " + std::to_string(input_ids.dim()) + " dims");
    const auto past = args.cache ? args.cache->length() : 0;
    if (past + input_ids.size(1) > config.n_positions)
      throw Error("GPT2LMHeadModel.forward: sequence of " + std::to_string(past + input_ids.size(1)) +
                  " tokens is longer than n_positions = " + std::to_string(config.n_positions));
    return transformer->forward(input_ids, args);
  }
};
TORCH_MODULE(GPT2LMHeadModel);

}  // namespace peft::models
