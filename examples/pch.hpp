// Precompiled once for all example programs (LibTorch's headers cost ~25 s per translation
// unit on 2 cores; with this each example compiles in a few seconds). Examples still include
// what they use, so each file can be copied out on its own.
#pragma once
#include <torch/torch.h>

#include <peft/peft.hpp>
#include <peft/models.hpp>
#include <peft/text.hpp>
