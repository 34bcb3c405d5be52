#pragma once
/// The math shared by the reference decoders, as free functions so tests can check each against
/// hand-computed values: activations by transformers' ACT2FN name, RMSNorm, rotary position
/// embeddings (HF's rotate_half convention), grouped-query key/value repetition and causal
/// attention. Device- and dtype-agnostic; reductions that lose precision in bf16 run in fp32.

#include <torch/nn/functional/activation.h>
#include <torch/types.h>

#include <cmath>
#include <limits>
#include <string>

namespace peft::models {

/// gelu_new / gelu_pytorch_tanh / gelu_fast (GPT-2's tanh approximation):
///   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
inline torch::Tensor gelu_new(const torch::Tensor& x) {
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + torch::tanh(c * (x + 0.044715 * torch::pow(x, 3.0))));
}

/// True for the activation names act() knows.
inline bool is_supported_activation(const std::string& name) {
  for (const char* n : {"gelu_new", "gelu", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu", "swish"})
    if (name == n) return true;
  return false;
}

/// transformers' ACT2FN[name](x): gelu = exact erf GELU; quick_gelu = x sigmoid(1.702 x);
/// silu = swish = x sigmoid(x); gelu_new, gelu_pytorch_tanh, gelu_fast = the tanh approximation.
inline torch::Tensor act(const std::string& name, const torch::Tensor& x) {
  if (name == "silu" || name == "swish") return torch::silu(x);
  // PyTorch's fused tanh GELU is gelu_new's formula in one kernel (2x faster here, ~1 ulp apart).
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return torch::gelu(x, "tanh");
  if (name == "gelu") return torch::gelu(x);
  if (name == "relu") return torch::relu(x);
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  TORCH_CHECK(false, "unsupported activation ", name);  // configs are validated before building
}

/// Llama's RMSNorm, like HF: y = weight * (x / sqrt(mean(x^2, -1) + eps)), the normalisation in
/// fp32 and cast back to x's dtype before the weight multiplies. x [..., d], weight [d].
inline torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto h = x.to(torch::kFloat32);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

/// RoPE inverse frequencies [dim/2] in fp32 on the CPU: 1 / theta^(arange(0, dim, 2) / dim).
inline torch::Tensor rope_inv_freq(std::int64_t dim, double theta) {
  auto exponent = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  return torch::reciprocal(torch::pow(theta, exponent));
}

/// cos, sin [..., dim] for positions [...] (int64; [T] or [B, T]): angles = positions (x) inv_freq,
/// duplicated as cat(angles, angles) (HF's layout), computed in fp32, times `attention_scale`
/// (LongRoPE's attention factor; 1 otherwise) and cast to `dtype`.
inline std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& positions,
                                                           const torch::Tensor& inv_freq, torch::Dtype dtype,
                                                           double attention_scale = 1.0) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(positions.device());
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  if (attention_scale != 1.0) {
    cos = cos * attention_scale;
    sin = sin * attention_scale;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

/// rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]).
inline torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

/// x * cos + rotate_half(x) * sin; x [B, H, T, dim], cos/sin [T, dim] or [B or 1, 1, T, dim]
/// (broadcast). With cos/sin narrower than x (partial rotary, Phi-3's partial_rotary_factor),
/// only the first cos.size(-1) features rotate and the rest pass through, as in transformers.
inline torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto rot = cos.size(-1);
  if (rot == x.size(-1)) return x * cos + rotate_half(x) * sin;
  auto head = x.narrow(-1, 0, rot);
  return torch::cat({head * cos + rotate_half(head) * sin, x.narrow(-1, rot, x.size(-1) - rot)}, -1);
}

/// HF's repeat_kv: [B, KV, T, d] -> [B, KV * n_rep, T, d], each key/value head used by n_rep
/// consecutive query heads (query head h reads kv head h / n_rep).
inline torch::Tensor repeat_kv(const torch::Tensor& x, std::int64_t n_rep) {
  if (n_rep == 1) return x;
  const auto B = x.size(0), KV = x.size(1), T = x.size(2), D = x.size(3);
  return x.unsqueeze(2).expand({B, KV, n_rep, T, D}).reshape({B, KV * n_rep, T, D});
}

/// Which keys each query may attend to: bool [B or 1, 1, T, past + T]. Query i sits at absolute
/// position past + i; key j is allowed when j <= past + i, when it is within the sliding window
/// (past + i - j < window; window 0 = none; transformers' sliding_attend_mask) and when
/// attention_mask [B, past + T] (nonzero = real token; undefined = all real) marks it real.
inline torch::Tensor attention_allowed(std::int64_t past, std::int64_t T, const torch::Tensor& attention_mask,
                                       std::int64_t sliding_window, torch::Device device) {
  const auto S = past + T;
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto query = torch::arange(past, S, opts).unsqueeze(1);
  auto key = torch::arange(S, opts).unsqueeze(0);
  auto allowed = key.le(query);
  if (sliding_window > 0) allowed = allowed.logical_and(key.gt(query - sliding_window));
  allowed = allowed.view({1, 1, T, S});
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(1) == S, "attention_mask must be [batch, ", S,
                "] (cached + new positions), got ", attention_mask.sizes());
    allowed = allowed.logical_and(attention_mask.to(device).ne(0).view({attention_mask.size(0), 1, 1, S}));
  }
  return allowed;
}

/// Position ids [B or 1, T] of the T new tokens after `past` cached ones: without a mask
/// past + arange(T); with attention_mask [B, past + T] transformers' generate rule
/// cumsum(mask) - 1 with 1 at padding, last T columns.
inline torch::Tensor default_position_ids(std::int64_t past, std::int64_t T, const torch::Tensor& attention_mask,
                                          torch::Device device) {
  if (!attention_mask.defined())
    return torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(0);
  auto mask = attention_mask.to(device).ne(0);
  auto pos = mask.to(torch::kInt64).cumsum(-1) - 1;
  pos.masked_fill_(mask.logical_not(), 1);
  return pos.narrow(1, pos.size(1) - T, T);
}

/// Scaled dot-product attention: softmax(q k^T * scale + mask) v, the softmax in fp32 (cast back
/// to q's dtype), dropout p on the weights in training. q [B, H, T, d], k, v [B, H, S, d] ->
/// [B, H, T, d]. `allowed` (attention_allowed) undefined: plain causal attention (S == T).
/// Disallowed scores get the lowest finite float, as transformers' eager attention, so a query
/// with nothing to attend to yields finite values instead of NaN. matmul + mask (no fused
/// kernel) so it behaves the same on LibTorch 1.13 and 2.x.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      double scale, double dropout_p = 0.0, bool training = false,
                                      const torch::Tensor& allowed = {}) {
  const auto T = q.size(-2);
  // Scaling q ([T, d]) instead of the scores ([T, S]) is cheaper; the mask is written in place
  // (matmul's backward does not need its output).
  auto scores = torch::matmul(scale != 1.0 ? q * scale : q, k.transpose(-1, -2)).to(torch::kFloat32);
  if (allowed.defined()) {
    scores.masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());
  } else {
    auto future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
    scores.masked_fill_(future, -std::numeric_limits<float>::infinity());
  }
  auto weights = torch::softmax(scores, -1).to(q.scalar_type());
  if (dropout_p > 0.0 && training) weights = torch::dropout(weights, dropout_p, /*train=*/true);
  return torch::matmul(weights, v);
}

}  // namespace peft::models
