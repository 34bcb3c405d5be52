#pragma once
/// BaseLayer: what LoraLayer needs from the layer it adapts (PEFT's BaseTunerLayer /
/// `base_layer` side; docs/layer.md). peft::Linear, peft::Conv1D, peft::Embedding and
/// peft::Conv1d/2d/3d implement it; LoraLayer derives from it and never asks which kind of layer
/// it is.
///
/// A new base layer provides
///   * the frozen layer:  base_forward(x) -> y,  base_weight() (stored layout: [out, in], or
///     [in, out] when fan_in_fan_out()), base_bias() (undefined when none), in/out_features();
///   * dense access (defaults fit a dense floating weight): dense_weight() is W as a floating
///     tensor in the stored layout, read by merging, DoRA norms and the base-rewriting inits;
///     write_dense_weight(W') stores a merged / rewritten W' (a quantised layer requantises);
///   * the adapter geometry (defaults: Linear's, which Conv1D shares):
///       create_lora_factors(r, lora_bias)  A = Linear(in, r, no bias), B = Linear(r, out, bias)
///                                          on the CPU in fp32, constructor draws A then B;
///                                          registered as `lora_A.<a>` / `lora_B.<a>`
///       reset_lora_parameters(s, f, eigens) the init (init/lora_init.hpp: kaiming A, B = 0, ...)
///       lora_input(x, f)                   x in the adapter dtype (cast once, reused)
///       lora_branch(x, f, dropout)         B(A(dropout(x))) + b_B                 [..., out]
///       add_lora_branch(result, ...)       result += s · lora_branch  (fused addmm for Linear)
///       fused_lora_forward(x, f, s, p)     base + s · lora_branch as one autograd node, or {}
///       lora_delta(f, s)                   transpose(B @ A, fan_in_fan_out) · s   W's layout
///       resolve_lora_variant(settings)     plain LoRA, or DoRA for use_dora (variants/)
///   * the layer's identity and limits: layer_type() (PEFT's class name), check_adapter_settings
///     (what an adapter may use here, checked before anything changes), check_mergeable(),
///     base_forward_with(x, W, b) (the plain forward with other tensors: trainable tokens, DoRA).
///
/// The layer types (PEFT's class names in layer_type()):
///   * Linear (peft::Linear) and GPT-2 Conv1D (peft::Conv1D, W stored [in, out]): the defaults;
///   * Embedding (peft::Embedding, W [num_embeddings, dim] = [in, out], so fan_in_fan_out()):
///     bare parameters `lora_embedding_A.<a>` [r, num] / `lora_embedding_B.<a>` [dim, r], init
///     A = 0, B ~ N(0, 1); lora_input() keeps the ids; lora_branch = embedding(ids, Aᵀ) @ Bᵀ with
///     the base's padding_idx/max_norm, never dropout; the default delta (B @ A)ᵀ · s; DoRA
///     scales the whole output (variants/dora_embedding.hpp); trainable tokens;
///   * Conv1d/2d/3d (peft::Conv1d, ...; layers/conv.hpp): A = Conv(in, r) with the base's kernel,
///     stride, padding and dilation, B = Conv(r, out, 1x1, groups); Δ = (B.view(out, r) @
///     A.view(r, -1)).view(W.shape) · s; DoRA norms over all dims but the output channel
///     (variants/dora_conv.hpp); no merge with groups > 1.
/// A 4-bit Linear would plug in the same way: base_weight() the packed storage (not floating, so
/// adapters stay fp32 on its device, like PEFT), dense_weight() dequantises, write_dense_weight()
/// requantises, base_forward runs the quantised matmul.

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "peft/init/corda_eigens.hpp"

namespace torch::nn {
class DropoutImpl;
}  // namespace torch::nn

namespace peft {

struct AdapterSettings;
class LoraVariant;

/// One entry of a per-adapter container: a module (a ModuleDict entry: `<dict>.<a>.weight`) or
/// a bare parameter (a ParameterDict entry: `<dict>.<a>`). Exactly one is set.
struct AdapterEntry {
  std::shared_ptr<torch::nn::Module> module;
  torch::Tensor parameter;
};

/// One adapter's factors as created by BaseLayer::create_lora_factors (not registered yet).
struct LoraFactorEntries {
  AdapterEntry A;
  AdapterEntry B;
};

/// Handles to the parameters of one adapter's factors (they share the registered tensors), as
/// the forward and merge math sees them: Linear A [r, in], B [out, r], B_bias [out] or undefined.
struct LoraFactors {
  torch::Tensor A;
  torch::Tensor B;
  torch::Tensor B_bias;
};

/// One adapter's input dropout (PEFT's lora_dropout[a]): the fused inverted dropout of
/// layers/lora_dropout.hpp with the module's p and mode; identity when the adapter has none.
struct AdapterDropout {
  torch::nn::DropoutImpl* module = nullptr;
  torch::Tensor operator()(const torch::Tensor& x) const;
};

/// PEFT's container names for the two factors.
struct LoraFactorNames {
  const char* A = "lora_A";
  const char* B = "lora_B";
};

class BaseLayer : public torch::nn::Module {
 public:
  // ---- the frozen layer (every base layer provides these) ----
  /// The plain layer's output (no adapter).
  virtual torch::Tensor base_forward(const torch::Tensor& x) = 0;
  /// The base weight as stored ([out, in], or [in, out] when fan_in_fan_out(); packed for a
  /// quantised layer). Adapters are created on its device, in its dtype when floating.
  virtual torch::Tensor& base_weight() = 0;
  /// The base bias (undefined when the layer has none).
  virtual torch::Tensor& base_bias() = 0;
  virtual bool fan_in_fan_out() const = 0;
  virtual std::int64_t in_features() const = 0;
  virtual std::int64_t out_features() const = 0;

  // ---- dense access (merging, DoRA norms, base-rewriting inits) ----
  /// W as a floating tensor in the stored layout. Default: base_weight() itself, so in-place
  /// changes reach the layer; a quantised layer returns a dequantised copy.
  virtual torch::Tensor dense_weight() { return base_weight(); }
  /// Store W' (stored layout, dense): default copies it into base_weight() unless it is that
  /// tensor already (then there is nothing to do); a quantised layer requantises.
  virtual void write_dense_weight(const torch::Tensor& w);

  // ---- adapter geometry (defaults: Linear's; see the file comment) ----
  virtual LoraFactorNames lora_factor_names() const { return {}; }
  /// New factors for rank r on the CPU in fp32, drawn from the global generator as PEFT's
  /// constructors do (A first), so inits that draw afterwards see PEFT's stream.
  virtual LoraFactorEntries create_lora_factors(std::int64_t r, bool lora_bias) const;
  /// Initialises new factors for settings.init (PEFT's reset_lora_parameters); default:
  /// init_lora_factors of init/lora_init.hpp. A "corda" init consumes `eigens`.
  virtual void reset_lora_parameters(const AdapterSettings& settings, const LoraFactors& f,
                                     std::optional<CordaEigens>& eigens);
  /// The input of the adapter branches: x cast to the adapter dtype (the forward reuses it for
  /// the following adapters).
  virtual torch::Tensor lora_input(const torch::Tensor& x, const LoraFactors& f) const;
  /// B(A(dropout(x))) + b_B, unscaled, [..., out].
  virtual torch::Tensor lora_branch(const torch::Tensor& x, const LoraFactors& f,
                                    const AdapterDropout& dropout) const;
  /// result += scaling · lora_branch(x, f, dropout) (B's bias is scaled too). Linear's default
  /// is one addmm (in place on 2-D outputs); a geometry that overrides lora_branch overrides this.
  virtual void add_lora_branch(torch::Tensor& result, const torch::Tensor& x, const LoraFactors& f,
                               const AdapterDropout& dropout, double scaling) const;
  /// base_forward(x) + scaling · lora_branch(x, f) as one autograd node (no B bias; the LoRA
  /// dropout with probability dropout_p, 0 = none, runs inside it), or an undefined tensor where
  /// this layer has no such node or it does not apply (then the variant's forward runs).
  /// Default: none; Linear and Conv1D use layers/detail/fused_lora_linear.hpp.
  virtual torch::Tensor fused_lora_forward(const torch::Tensor& x, const LoraFactors& f, double scaling,
                                           double dropout_p) {
    (void)x, (void)f, (void)scaling, (void)dropout_p;
    return {};
  }
  /// Δ = transpose(B @ A, fan_in_fan_out) · scaling, in W's stored layout.
  virtual torch::Tensor lora_delta(const LoraFactors& f, double scaling) const;
  /// The variant of a new adapter (PEFT's resolve_lora_variant): plain LoRA, or DoRA for Linear
  /// when settings.use_dora.
  virtual std::unique_ptr<LoraVariant> resolve_lora_variant(const AdapterSettings& settings) const;

  // ---- identity and limits ----
  /// PEFT's name of the torch class this layer stands for: "Linear", "Conv1D", "Embedding",
  /// "Conv1d", "Conv2d", "Conv3d" (PEFT's wrapper is "lora.<type>").
  virtual const char* layer_type() const { return "Linear"; }
  /// Throws ConfigError for settings this layer cannot create an adapter with (rank, init,
  /// lora_bias, ...), before anything changes. Default: Linear's rules (check_lora_settings and
  /// the checks of an init that rewrites the base, init/lora_init.hpp).
  virtual void check_adapter_settings(const AdapterSettings& settings, const CordaEigens* eigens);
  /// Throws Error when adapters cannot be merged into this layer (a grouped convolution).
  virtual void check_mergeable() const {}
  /// The plain forward with `weight` (stored layout) and `bias` (may be undefined) in place of
  /// the layer's own. Default: x @ transpose(weight, fan_in_fan_out)ᵀ + bias.
  virtual torch::Tensor base_forward_with(const torch::Tensor& x, const torch::Tensor& weight,
                                          const torch::Tensor& bias);
  /// Whether trainable tokens (rows of the weight replaced per adapter) apply: Embedding only.
  virtual bool supports_trainable_tokens() const { return false; }
};

}  // namespace peft
