#pragma once
/// DoRA (weight-decomposed LoRA, docs/dora.md#dora) for Linear-like layers: the adapted weight is
/// re-normalised per output feature and scaled by a trainable magnitude m [out]:
///
///   W' = m ⊙ (W + s·BA) / ‖W + s·BA‖_row          (the norm is treated as a constant: detached)
///   y  = k ⊙ (W x) + b + k ⊙ s·B A x,   k = m / ‖W + s·BA‖_row     (no dropout, or eval)
///
/// W is the base weight in its stored layout ([out, in], or [in, out] with fan_in_fan_out); every
/// function here takes that layout and transposes where PEFT does. In memory the magnitude is
/// `lora_magnitude_vector.<adapter>.weight`; on disk PEFT writes `...lora_magnitude_vector`.

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "peft/detail/copyable_mutex.hpp"
#include "peft/layers/lora_math.hpp"

namespace peft {

/// Holder of one adapter's magnitude vector (PEFT's DoraLinearLayer): parameter `weight` [out].
class DoraMagnitudeImpl : public torch::nn::Cloneable<DoraMagnitudeImpl> {
 public:
  explicit DoraMagnitudeImpl(torch::Tensor m) { weight = register_parameter("weight", std::move(m)); }
  /// For clone(): a placeholder that Cloneable replaces with a copy of the data.
  void reset() override { weight = register_parameter("weight", torch::empty({0})); }
  torch::Tensor weight;
};

/// PEFT's get_weight_norm: ‖transpose(W, fifo) + scaling·L‖₂ over dim 1 -> [out], where
/// L [out, in] is the (already scaled-or-not) low-rank weight. Plain formula, exactly PEFT's ops.
inline torch::Tensor dora_weight_norm(const torch::Tensor& W, const torch::Tensor& L, double scaling,
                                      bool fan_in_fan_out) {
  auto w = transpose_if(W, fan_in_fan_out) + scaling * L;
  return torch::linalg_norm(w, c10::nullopt, c10::IntArrayRef{1}, false, c10::nullopt).to(w.scalar_type());
}

/// The magnitude a new DoRA adapter starts from (docs/dora.md#magnitude-initialisation): ‖transpose(W,
/// fifo) + s·B@A‖ per
/// output feature; with the default init (B = 0) that is the row norm of W. fp16 factors are
/// multiplied in fp32 and the product rounded back, as PEFT does.
inline torch::Tensor dora_init_magnitude(const torch::Tensor& W, const torch::Tensor& A, const torch::Tensor& B,
                                         double scaling, bool fan_in_fan_out) {
  torch::NoGradGuard no_grad;
  torch::Tensor L;
  if (A.scalar_type() == torch::kHalf)
    L = torch::matmul(B.to(torch::kFloat32), A.to(torch::kFloat32)).to(torch::kHalf);
  else
    L = torch::matmul(B, A);
  return dora_weight_norm(W.to(A.device()), L, scaling, fan_in_fan_out);
}

/// Row norms ‖transpose(W, fifo) + s·B A‖ [out] without materialising the [out, in] sum:
///   ‖W_i + s(BA)_i‖² = ‖W_i‖² + 2s·⟨W_i A^T, B_i⟩ + s²·B_i (A A^T) B_i^T
/// Costs one (out x in x r) product and O(r²(in+out)) besides; `w_sq_rows` is ‖W_i‖² (cached by
/// the caller because W is frozen). Falls back to the plain formula when a row nearly cancels
/// (norm² < 1e-4·‖W_i‖²), where the expansion would lose digits. No autograd graph (detached).
inline torch::Tensor dora_weight_norm_fast(const torch::Tensor& W, const torch::Tensor& w_sq_rows,
                                           const torch::Tensor& A, const torch::Tensor& B, double scaling,
                                           bool fan_in_fan_out) {
  torch::NoGradGuard no_grad;
  const auto Wt = transpose_if(W, fan_in_fan_out).to(A.scalar_type());  // [out, in] (a view when same dtype)
  auto WA = torch::matmul(Wt, A.t());                                     // [out, r]
  auto cross = (WA * B).sum(1);                                           // ⟨W_i, (BA)_i⟩
  auto BAA = torch::matmul(B, torch::matmul(A, A.t()));                   // [out, r]
  auto ba_sq = (BAA * B).sum(1);                                          // ‖(BA)_i‖²
  auto sq = w_sq_rows.to(A.scalar_type()) + (2.0 * scaling) * cross + (scaling * scaling) * ba_sq;
  if ((sq < 1e-4 * w_sq_rows.to(A.scalar_type())).any().item<bool>())
    return dora_weight_norm(Wt, torch::matmul(B, A), scaling, false);
  return sq.clamp_min(0).sqrt();
}

/// ‖W_i‖² per output row of transpose(W, fifo), in fp32 or the adapter dtype `dt`.
inline torch::Tensor dora_base_row_sq(const torch::Tensor& W, bool fan_in_fan_out, torch::ScalarType dt) {
  torch::NoGradGuard no_grad;
  const auto w = W.to(dt);
  return (w * w).sum(fan_in_fan_out ? 0 : 1);
}

/// Cache of what DoRA's forward needs that does not change between steps: ‖W_i‖² of the frozen
/// base, and the whole norm while W, A, B and the scaling are unchanged (eval, or several
/// forwards between optimiser steps). Validity is checked by tensor identity and version
/// counters, so an in-place optimiser update or a merge invalidates it. Thread-safe: forwards of
/// one model from several threads (eval, no adapter changes) share it under a mutex.
class DoraNormCache {
 public:
  torch::Tensor norm(const torch::Tensor& W, const torch::Tensor& A, const torch::Tensor& B, double scaling,
                     bool fan_in_fan_out) {
    return norm(W, [&W] { return W; }, A, B, scaling, fan_in_fan_out);
  }
  /// The same keyed by `key` (the stored weight) with W produced by `dense` only when the cache
  /// misses: a quantised base dequantises only then, and no dequantised copy is kept.
  torch::Tensor norm(const torch::Tensor& key, const std::function<torch::Tensor()>& dense, const torch::Tensor& A,
                     const torch::Tensor& B, double scaling, bool fan_in_fan_out) {
    std::lock_guard<CopyableMutex> lock(mutex_);
    torch::Tensor W;
    auto weight = [&]() -> const torch::Tensor& {
      if (!W.defined()) W = dense();
      return W;
    };
    const Key w_key{key.unsafeGetTensorImpl(), key._version(), A.scalar_type()};
    if (!(w_key == w_key_) || !w_sq_.defined()) {
      w_sq_ = dora_base_row_sq(weight(), fan_in_fan_out, A.scalar_type());
      w_key_ = w_key;
      w_ = key;  // keeps the keyed tensor alive, so its address cannot be reused by another W
      norm_ = torch::Tensor();
    }
    const NormKey n_key{A.unsafeGetTensorImpl(), A._version(), B.unsafeGetTensorImpl(), B._version(), scaling};
    if (!norm_.defined() || !(n_key == n_key_)) {
      norm_ = dora_weight_norm_fast(weight(), w_sq_, A, B, scaling, fan_in_fan_out);
      n_key_ = n_key;
    }
    return norm_;
  }
  void clear() {
    std::lock_guard<CopyableMutex> lock(mutex_);
    w_ = torch::Tensor();
    w_sq_ = torch::Tensor();
    norm_ = torch::Tensor();
  }

 private:
  struct Key {
    const void* impl = nullptr;
    std::int64_t version = -1;
    torch::ScalarType dtype = torch::kFloat32;
    bool operator==(const Key& o) const { return impl == o.impl && version == o.version && dtype == o.dtype; }
  };
  struct NormKey {
    const void* a = nullptr;
    std::int64_t a_version = -1;
    const void* b = nullptr;
    std::int64_t b_version = -1;
    double scaling = 0;
    bool operator==(const NormKey& o) const {
      return a == o.a && a_version == o.a_version && b == o.b && b_version == o.b_version && scaling == o.scaling;
    }
  };
  CopyableMutex mutex_;
  Key w_key_;
  NormKey n_key_;
  torch::Tensor w_, w_sq_, norm_;
};

/// DoRA's contribution for one adapter, added to `result` (the running layer output, which
/// holds the base output + bias + earlier adapters), docs/dora.md#forward:
///   result + (k-1)·base + k·s·B(A(xd)),   k = m / norm,
/// with base = result - bias when `base` is undefined (no active dropout: the base output is
/// reused, no second matmul), or the caller's W·dropout(x) otherwise. Computed as
///   addcmul(B'(A(xd)) + (1-k)·bias, result, k)   with B' = B·diag(k·s)
/// (no dropout), i.e. one fused [tokens, out] pass besides the two skinny matmuls.
inline torch::Tensor dora_apply(const torch::Tensor& result, const torch::Tensor& xd, const torch::Tensor& base,
                                const torch::Tensor& bias, const torch::Tensor& A, const torch::Tensor& B,
                                const torch::Tensor& magnitude, const torch::Tensor& norm, double scaling) {
  const auto k = magnitude / norm;                         // [out]
  const auto Bk = B * (k * scaling).unsqueeze(1);          // [out, r]
  const auto h = torch::linear(xd, A);                      // [..., r]
  if (!base.defined()) {
    // result_new = k·(result - bias) + bias + k·s·lora = k·result + (1-k)·bias + lora'
    const auto lin = bias.defined() ? torch::linear(h, Bk, (1 - k) * bias.to(k.scalar_type())) : torch::linear(h, Bk);
    return torch::addcmul(lin, result, k);
  }
  return result + torch::addcmul(torch::linear(h, Bk), base, k - 1);
}

/// PEFT's DoRA merge factor: m / ‖transpose(W,fifo) + transpose(Δ,fifo)‖, shaped to multiply W in
/// its stored layout ([out,1], or [1,out] with fan_in_fan_out). Also returns the norm, which
/// unmerge needs (it cannot be recomputed from the merged weight).
inline std::pair<torch::Tensor, torch::Tensor> dora_merge_factor(const torch::Tensor& W, const torch::Tensor& delta,
                                                                 const torch::Tensor& magnitude,
                                                                 bool fan_in_fan_out) {
  auto norm = dora_weight_norm(W, transpose_if(delta, fan_in_fan_out), 1.0, fan_in_fan_out).detach();
  auto f = transpose_if((magnitude / norm).view({-1, 1}), fan_in_fan_out);
  return {f, norm};
}

}  // namespace peft
