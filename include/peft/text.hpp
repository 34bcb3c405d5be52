#pragma once
/// Tokenizers and datasets (CMake target peft::text).

#include "peft/text/bpe_tokenizer.hpp"
#include "peft/text/dataset.hpp"
#include "peft/text/pretokenizer.hpp"
#include "peft/text/tokenizer.hpp"
