#pragma once
/// Reference decoders (GPT-2 and the Llama family: Llama, Mistral, Qwen2, Qwen3, Gemma, Phi-3)
/// with Hugging Face names, config.json, checkpoint loading, KV cache, gradient checkpointing
/// and text generation (CMake target peft::models).

#include "peft/models/causal_lm.hpp"
#include "peft/models/checkpointing.hpp"
#include "peft/models/decoder_ops.hpp"
#include "peft/models/forward_args.hpp"
#include "peft/models/generate.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/models/model_config.hpp"
#include "peft/models/rope.hpp"
