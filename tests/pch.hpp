// Precompiled for peft_unit_tests: LibTorch, GoogleTest and the STL are parsed once.
#pragma once
#include <gtest/gtest.h>
#include <torch/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>
