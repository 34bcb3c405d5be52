#pragma once
/// Rotary position embeddings of the Llama family (models/llama.hpp), per the config's rope_type:
///   default   inv_freq = 1 / theta^(arange(0, rd, 2) / rd)    (rd = rotary_dim())
///   linear    default / factor
///   llama3    wavelengths above original_max / low_freq_factor divided by factor, below
///             original_max / high_freq_factor kept, smoothly interpolated between
///   longrope  default / ext, ext = long_factor when max(position) + 1 > original_max else
///             short_factor (per call, as transformers' Phi3 does); cos and sin times
///             sqrt(1 + ln(max_pos / original_max) / ln(original_max)) when max_pos > original_max

#include <torch/types.h>

#include <cmath>
#include <utility>

#include "peft/models/decoder_ops.hpp"
#include "peft/models/model_config.hpp"

namespace peft::models {

/// RoPE inverse frequencies [rd/2] (fp32, CPU) for default / linear / llama3 scaling (longrope:
/// the default frequencies; LlamaRope applies its factors per call).
inline torch::Tensor llama_inv_freq(const LlamaConfig& c) {
  auto inv = rope_inv_freq(c.rotary_dim(), c.rope_theta);
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

/// The rotary tables of one config.
class LlamaRope {
 public:
  explicit LlamaRope(const LlamaConfig& c) : inv_freq_(llama_inv_freq(c)) {
    if (c.rope_type != "longrope") return;
    longrope_ = true;
    original_max_ = c.rope_original_max_position_embeddings;
    short_ = torch::tensor(c.rope_short_factor, torch::kFloat64).to(torch::kFloat32);
    long_ = torch::tensor(c.rope_long_factor, torch::kFloat64).to(torch::kFloat32);
    const double scale = static_cast<double>(c.max_position_embeddings) / static_cast<double>(original_max_);
    attention_scale_ = scale <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(original_max_)));
  }

  /// cos, sin [..., rd] for positions [...] (int64), in `dtype`.
  std::pair<torch::Tensor, torch::Tensor> cos_sin(const torch::Tensor& positions, torch::Dtype dtype) const {
    if (!longrope_) return rope_cos_sin(positions, inv_freq_, dtype);
    // transformers picks the factors from the longest position of the call (a host sync).
    const bool is_long = positions.max().item<std::int64_t>() + 1 > original_max_;
    return rope_cos_sin(positions, inv_freq_ / (is_long ? long_ : short_), dtype, attention_scale_);
  }

 private:
  torch::Tensor inv_freq_;  ///< fp32, CPU, not registered (not in checkpoints, not a buffer)
  bool longrope_ = false;
  std::int64_t original_max_ = 0;
  torch::Tensor short_, long_;
  double attention_scale_ = 1.0;
};

}  // namespace peft::models
