#pragma once
/// BaseLayer: what LoraLayer needs from the layer it adapts (PEFT's BaseTunerLayer /
/// `base_layer` side; docs/layer.md). peft::Linear and peft::Conv1D implement it; LoraLayer
/// derives from it and never asks which kind of layer it is.
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
///       lora_delta(f, s)                   transpose(B @ A, fan_in_fan_out) · s   W's layout
///       resolve_lora_variant(settings)     plain LoRA, or DoRA for use_dora (variants/)
///
/// How the layers peft-cpp does not have yet plug in (no change to LoraLayer):
///   * Embedding (W [num_embeddings, dim]): lora_factor_names() = {"lora_embedding_A",
///     "lora_embedding_B"}; create_lora_factors returns bare parameters A [r, num_embeddings],
///     B [dim, r] (AdapterEntry::parameter: a ParameterDict, so the names carry no `.weight`);
///     reset_lora_parameters gives A = 0, B ~ N(0, 1) for true and "gaussian" (PEFT's), else
///     the default; lora_input returns the ids uncast; lora_branch = embedding(x, Aᵀ) @ Bᵀ with the base's
///     padding_idx/max_norm, ignoring dropout; lora_delta = (B @ A)ᵀ · s; its DoRA variant
///     normalises per embedding column.
///   * Conv1d/2d/3d: create_lora_factors returns A = Conv(in, r) with the base's kernel, stride,
///     padding, dilation and B = Conv(r, out, 1x1, groups); lora_branch = B(A(dropout(x)));
///     add_lora_branch adds s · branch; lora_delta is the conv composition of docs/layer.md
///     "Forward: torch convolutions"; its DoRA variant takes norms over all dims but 0.
///   * 4-bit Linear: base_weight() is the packed storage (not floating, so adapters stay fp32 on
///     its device, like PEFT); dense_weight() dequantises; write_dense_weight() requantises;
///     base_forward runs the quantised matmul; the geometry is Linear's.

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
  /// Δ = transpose(B @ A, fan_in_fan_out) · scaling, in W's stored layout.
  virtual torch::Tensor lora_delta(const LoraFactors& f, double scaling) const;
  /// The variant of a new adapter (PEFT's resolve_lora_variant): plain LoRA, or DoRA for Linear
  /// when settings.use_dora.
  virtual std::unique_ptr<LoraVariant> resolve_lora_variant(const AdapterSettings& settings) const;
};

}  // namespace peft
