#pragma once
/// The optional inputs of CausalLMImpl::forward(input_ids, args): HF's attention_mask,
/// position_ids and past_key_values, for batched prompts with padding and incremental decoding.
///
///   peft::models::KVCache cache;                          // empty: the first call fills it
///   peft::models::ForwardArgs args{mask, {}, &cache};     // mask [B, T_prompt], 1 = token
///   auto logits = model->forward(prompt_ids, args);       // [B, T_prompt, V]; cache holds T_prompt
///   args.attention_mask = torch::cat({mask, ones[B, 1]}, 1);
///   auto next = model->forward(next_ids /*[B, 1]*/, args); // attends to the cache, appends 1

#include <ATen/core/grad_mode.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace peft::models {

/// Keys and values of every decoder layer from earlier calls, after rotary embedding (what HF's
/// DynamicCache keeps): per layer [B, KV heads, length(), head_dim] in the model's dtype. A model
/// appends to it in forward(ids, args) when args.cache is set. The tensors live in buffers grown
/// by doubling along the sequence, so appending one token copies one token, not the whole cache
/// (the cost of a decoding step stays flat as the sequence grows). With autograd recording, the
/// cache concatenates instead of writing in place, so gradients through it stay correct.
class KVCache {
 public:
  /// Positions cached so far (0 before the first call).
  std::int64_t length() const { return lengths_.empty() ? 0 : lengths_[0]; }
  bool empty() const { return length() == 0; }
  std::size_t num_layers() const { return lengths_.size(); }
  void clear() {
    keys_.clear();
    values_.clear();
    lengths_.clear();
  }

  /// Layer `layer`'s keys and values with k, v [B, KV, T, hd] appended: [B, KV, length + T, hd].
  std::pair<torch::Tensor, torch::Tensor> append(std::size_t layer, const torch::Tensor& k, const torch::Tensor& v) {
    if (layer >= lengths_.size()) {
      keys_.resize(layer + 1);
      values_.resize(layer + 1);
      lengths_.resize(layer + 1, 0);
    }
    const std::int64_t old = lengths_[layer], T = k.size(2), total = old + T;
    auto& kb = keys_[layer];
    auto& vb = values_[layer];
    if (at::GradMode::is_enabled() && (k.requires_grad() || v.requires_grad())) {
      kb = old == 0 ? k : torch::cat({kb.narrow(2, 0, old), k}, 2);
      vb = old == 0 ? v : torch::cat({vb.narrow(2, 0, old), v}, 2);
    } else {
      if (!kb.defined() || kb.size(2) < total || kb.size(0) != k.size(0)) {
        auto grow = [&](const torch::Tensor& buf, const torch::Tensor& like) {
          auto sizes = like.sizes().vec();
          sizes[2] = std::max<std::int64_t>(total, 2 * old);
          auto fresh = torch::empty(sizes, like.options());
          if (old > 0) fresh.narrow(2, 0, old).copy_(buf.narrow(2, 0, old));
          return fresh;
        };
        kb = grow(kb, k);
        vb = grow(vb, v);
      }
      kb.narrow(2, old, T).copy_(k);
      vb.narrow(2, old, T).copy_(v);
    }
    lengths_[layer] = total;
    return {kb.narrow(2, 0, total), vb.narrow(2, 0, total)};
  }

  /// Keep only batch rows `rows` (int64 [B'], any device) of every layer, e.g. to drop finished
  /// sequences.
  void select_rows(const torch::Tensor& rows) {
    for (auto* v : {&keys_, &values_})
      for (auto& t : *v)
        if (t.defined()) t = t.index_select(0, rows.to(t.device()));
  }

 private:
  std::vector<torch::Tensor> keys_, values_;  ///< buffers; valid up to lengths_[layer]
  std::vector<std::int64_t> lengths_;
};

/// forward(input_ids [B, T], args):
/// - attention_mask [B, T_cached + T] (any integer or bool dtype; nonzero = real token, 0 =
///   padding, usually on the left): padded keys are never attended to. Undefined = all real.
/// - position_ids [B, T] int64. Undefined: from attention_mask as transformers' generate does
///   (cumsum(mask) - 1, 1 at padding; the last T columns), else T_cached + arange(T).
/// - cache: when set, the call attends to the cached keys/values too and appends its own.
/// Attention is causal over absolute positions T_cached + i (and within a sliding window where
/// the model's config has one). Query rows with nothing to attend to (left padding) give finite
/// garbage, never NaN, as in transformers (the masked scores are the dtype's lowest value).
struct ForwardArgs {
  torch::Tensor attention_mask;
  torch::Tensor position_ids;
  KVCache* cache = nullptr;
};

}  // namespace peft::models
