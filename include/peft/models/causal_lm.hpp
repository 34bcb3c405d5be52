#pragma once
/// Reference decoder-only language models with Hugging Face parameter names, so a downloaded HF
/// checkpoint directory (config.json + model.safetensors or a sharded index) loads into them and
/// what save_causal_lm writes loads in transformers' AutoModelForCausalLM.
///
///   auto model = peft::models::load_causal_lm("path/to/hf_dir");        // or "builtin:tiny-gpt2"
///   auto logits = model->forward(ids);                                   // [B, T] -> [B, T, vocab]
///   auto loss = peft::models::causal_lm_loss(logits, ids);
///   peft::LoraModelOptions opts;                    // PEFT's default targets for the model_type
///   opts.plan.model_type = model->model_type();
///   opts.plan.output_layer = "lm_head";             // excluded by all-linear, as in transformers
///   opts.plan.input_embeddings = "wte";             // GPT-2: the list form of trainable_token_indices
///   auto pm = peft::get_peft_model(model, cfg, "default", opts);
///
/// Architectures: models/gpt2.hpp (GPT2LMHeadModel), models/llama.hpp (LlamaForCausalLM and the
/// Llama-layout families: Mistral, Qwen2, Qwen3, Gemma, Phi-3).

#include <torch/nn/module.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "peft/models/forward_args.hpp"
#include "peft/tuner/embedding_owner.hpp"

namespace peft::models {

/// What the chunked loss needs from a forward: the final hidden states [B, T, d] (after the
/// final norm) and the output weight [V, d] (lm_head's, or the tied embedding's).
struct HiddenAndHead {
  torch::Tensor hidden;
  torch::Tensor head_weight;
};

/// Base of the reference decoders. forward: input_ids [B, T] int64 -> logits [B, T, vocab].
/// As an EmbeddingOwner it names its embeddings like transformers' get_input_embeddings() /
/// get_output_embeddings() (save_embedding_layers acts on them, as in PEFT).
struct CausalLMImpl : torch::nn::Module, EmbeddingOwner {
  virtual ~CausalLMImpl() = default;
  virtual torch::Tensor forward(const torch::Tensor& input_ids) = 0;
  /// The same with an attention mask, position ids and/or a KV cache (models/forward_args.hpp):
  /// input_ids [B, T] -> logits [B, T, vocab] for the T new positions.
  virtual torch::Tensor forward(const torch::Tensor& input_ids, const ForwardArgs& args) = 0;
  /// forward without the output layer: the hidden states and the head's weight, or nullopt when
  /// the head is not a plain frozen linear map (it carries an adapter, a modules_to_save copy or
  /// trainable tokens, or its weight trains); then forward's logits are the way. Default: nullopt.
  virtual std::optional<HiddenAndHead> forward_hidden(const torch::Tensor& input_ids, const ForwardArgs& args) {
    (void)input_ids, (void)args;
    return std::nullopt;
  }
  /// Gradient checkpointing per decoder block in training (models/checkpointing.hpp): the same
  /// loss and gradients with only each block's input kept alive. Off by default.
  virtual void set_gradient_checkpointing(bool on) = 0;
  virtual bool gradient_checkpointing() const = 0;
  /// HF config.json model_type: "gpt2", or a Llama-family type ("llama", "mistral", "qwen2",
  /// "qwen3", "gemma", "phi3").
  virtual std::string model_type() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_positions() const = 0;    ///< n_positions / max_position_embeddings
  virtual std::string config_json() const = 0;  ///< HF config.json text for this model (its dtype)
  /// The keys of an HF checkpoint of this model, in state_dict order: the base weights only
  /// (no LoRA tensors), a tied lm_head left out as save_pretrained does.
  virtual std::vector<std::string> checkpoint_keys() const = 0;
};
using CausalLM = std::shared_ptr<CausalLMImpl>;

/// The builtin models: "tiny-gpt2" and "tiny-llama" (see make_builtin).
std::vector<std::string> builtin_names();

/// A builtin model, randomly initialised like transformers does (N(0, 0.02) weights; GPT-2's
/// c_proj with std 0.02 / sqrt(2 n_layer)) from its own generator seeded with `seed` (the global
/// torch RNG is untouched). Names: "tiny-gpt2" / "tiny-llama", with or without "builtin:".
///
/// Both: vocab 257 (ByteTokenizer: 256 bytes + <|endoftext|> = 256, also bos/eos), 256
/// positions, d_model 64, 2 layers, 4 heads, no dropout, tied embeddings; tiny-gpt2: MLP 256,
/// 132,928 parameters; tiny-llama: 2 kv heads (GQA), SwiGLU width 192, rope_theta 10000,
/// 115,072 parameters. One training step, batch 8 x 128 tokens, AdamW on every weight, fp32,
/// LibTorch 1.13 CPU (1 intra-op thread): 89-127 ms CPU time (gpt2 96-123, llama 89-128),
/// 220-300 ms wall, measured while the 2-core machine ran ~10 compiler jobs (load 10), so the
/// unloaded figure is lower; 4 layers measured 150-180 ms CPU, hence 2 (ModelsBench test).
CausalLM make_builtin(const std::string& name, uint64_t seed = 0);

/// "builtin:tiny-gpt2" | "builtin:tiny-llama" (make_builtin with seed 0), or an HF checkpoint
/// directory: config.json (model_type gpt2 / llama) + model.safetensors or
/// model.safetensors.index.json. Checkpoint keys without the base-model prefix (the original
/// gpt2 files: `h.0.attn.c_attn.weight`) are accepted, GPT-2's old `attn.bias`/`attn.masked_bias`
/// buffers and `rotary_emb.inv_freq` are skipped, a tied lm_head.weight is ignored; any other
/// missing or unexpected key or any shape mismatch is a SerializationError (ModelConfigError for
/// config.json). The model is returned on `device` in `dtype` — default: config.json's `dtype`
/// (transformers 5) or `torch_dtype` (4.x), float32 when absent; builtins: float32 — in training
/// mode, all parameters trainable. A directory is built uninitialised in the target dtype on the
/// device (layers/skip_init.hpp) and streamed in by load_checkpoint: peak memory is about the
/// model plus one 32 MiB chunk (CPU), nothing is drawn from the RNG.
CausalLM load_causal_lm(const std::string& dir_or_builtin, torch::Device device = torch::kCPU,
                        std::optional<torch::Dtype> dtype = std::nullopt);

/// Write config.json + model.safetensors (metadata format=pt) into `dir` (created), each file
/// atomically: the base weights of checkpoint_keys() in the model's dtype (unmerged LoRA adapters
/// are not included: merge_and_unload first to bake them in). A tied lm_head is not duplicated.
void save_causal_lm(CausalLMImpl& model, const std::filesystem::path& dir);

/// Mean next-token cross entropy, computed in fp32: logits[:, :-1] against labels[:, 1:], label
/// -100 ignored (PyTorch: NaN when every label is ignored). `labels` is usually the input ids.
/// logits [B, T, V], labels [B, T] int64 -> scalar fp32.
torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& input_ids);

/// The same loss from hidden states [B, T, d] and the head weight [V, d] without the [B, T, V]
/// logits: rows of `chunk_rows` tokens (0: about 32 MiB of fp32 logits per chunk) are projected,
/// reduced to the loss and, when autograd records, to d loss / d hidden at once (softmax minus
/// the one-hot, over the count of labels; the head weight gets no gradient). Per chunk the
/// logits are formed in hidden's dtype and upcast to fp32, as transformers does. Peak memory
/// is one chunk of logits plus [B·T, d] instead of three [B·T, V] tensors.
torch::Tensor chunked_causal_lm_loss(const torch::Tensor& hidden, const torch::Tensor& head_weight,
                                     const torch::Tensor& labels, std::int64_t chunk_rows = 0);

/// causal_lm_loss of `model` on input_ids: chunked_causal_lm_loss when model.forward_hidden
/// gives hidden states, otherwise of model.forward's logits. labels [B, T] (usually input_ids).
torch::Tensor causal_lm_loss(CausalLMImpl& model, const torch::Tensor& input_ids, const torch::Tensor& labels,
                             const ForwardArgs& args = {});

}  // namespace peft::models
