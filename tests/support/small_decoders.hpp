#pragma once
// Small configurations of the reference decoders (peft/models) for the unit tests, and token ids
// drawn from their own generator (the global one is left alone).

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdint>

#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"

namespace peft_test {

/// GPT-2 with vocab 11, 16 positions, n_embd 8, 2 layers of 2 heads, no dropout.
inline peft::models::GPT2Config small_gpt2(bool tied = true) {
  peft::models::GPT2Config c;
  c.vocab_size = 11;
  c.n_positions = 16;
  c.n_embd = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.0;
  c.tie_word_embeddings = tied;
  return c;
}

/// Llama with vocab 13, hidden 16, intermediate 24, 2 layers of 4 heads, 32 positions.
inline peft::models::LlamaConfig small_llama(bool tied = false, std::int64_t kv_heads = 2) {
  peft::models::LlamaConfig c;
  c.vocab_size = 13;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = tied;
  return c;
}

/// Token ids [B, T] below `vocab`, from a generator of their own seeded with `seed`.
inline torch::Tensor ids_for(std::int64_t vocab, std::int64_t B, std::int64_t T, std::uint64_t seed = 0) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(vocab, {B, T}, gen, torch::kInt64);
}

}  // namespace peft_test
