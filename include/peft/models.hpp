#pragma once
/// Reference decoders (GPT-2, Llama) with Hugging Face names, config.json and checkpoint loading, and
/// text generation (CMake target peft::models).

#include "peft/models/causal_lm.hpp"
#include "peft/models/decoder_ops.hpp"
#include "peft/models/generate.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/models/model_config.hpp"
