// Precompiled for peft_unit_tests: GoogleTest and the STL parsed once per target.
// LibTorch is left out on purpose. Measured for this target on 2 cores, clean, ccache off:
// with 1 LibTorch test file: no PCH 59 s, this PCH 62 s, + <torch/types.h> 92 s; with 5 of 14
// files using LibTorch: this PCH 169 s, + <torch/torch.h> 179 s. Revisit when most test files
// include LibTorch.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>
