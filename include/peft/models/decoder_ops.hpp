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

/// cos, sin [T, dim] for positions [T] (int64): angles = outer(positions, inv_freq), duplicated
/// as cat(angles, angles) (HF's layout), computed in fp32 and cast to `dtype`.
inline std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& positions,
                                                           const torch::Tensor& inv_freq, torch::Dtype dtype) {
  auto freqs = torch::outer(positions.to(torch::kFloat32), inv_freq.to(positions.device()));
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

/// rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]).
inline torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

/// x * cos + rotate_half(x) * sin; x [B, H, T, dim], cos/sin [T, dim] (broadcast).
inline torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

/// HF's repeat_kv: [B, KV, T, d] -> [B, KV * n_rep, T, d], each key/value head used by n_rep
/// consecutive query heads (query head h reads kv head h / n_rep).
inline torch::Tensor repeat_kv(const torch::Tensor& x, std::int64_t n_rep) {
  if (n_rep == 1) return x;
  const auto B = x.size(0), KV = x.size(1), T = x.size(2), D = x.size(3);
  return x.unsqueeze(2).expand({B, KV, n_rep, T, D}).reshape({B, KV * n_rep, T, D});
}

/// Causal scaled dot-product attention: softmax(q k^T * scale + causal mask) v, the softmax in
/// fp32 (cast back to q's dtype), dropout p on the weights in training. q, k, v [B, H, T, d] ->
/// [B, H, T, d]. matmul + mask (no fused kernel) so it behaves the same on LibTorch 1.13 and 2.x.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      double scale, double dropout_p = 0.0, bool training = false) {
  const auto T = q.size(-2);
  // Scaling q ([T, d]) instead of the scores ([T, T]) is cheaper; the mask is written in place
  // (matmul's backward does not need its output).
  auto scores = torch::matmul(scale != 1.0 ? q * scale : q, k.transpose(-1, -2)).to(torch::kFloat32);
  auto future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  scores.masked_fill_(future, -std::numeric_limits<float>::infinity());
  auto weights = torch::softmax(scores, -1).to(q.scalar_type());
  if (dropout_p > 0.0 && training) weights = torch::dropout(weights, dropout_p, /*train=*/true);
  return torch::matmul(weights, v);
}

}  // namespace peft::models
