#pragma once
/// AdamW's state in a safetensors file (optimizer.safetensors of training checkpoints) instead of
/// torch::save's pickle: per parameter the step and the moments exp_avg, exp_avg_sq (and
/// max_exp_avg_sq with amsgrad), keyed by the parameter's index over the groups, and each
/// group's options (lr, betas, eps, weight_decay, amsgrad); layout in
/// train/detail/adamw_state_layout.hpp. Reading validates the file (safetensors.hpp) and then
/// every tensor against the live parameter it belongs to (dtype, shape; tensors are contiguous
/// by construction) before the optimizer is touched.
/// Bodies: src/train/optimizer_state.cpp.

#include <torch/optim/adamw.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "peft/train/detail/adamw_state_layout.hpp"

namespace peft::train {

/// Write `opt`'s state to `path` atomically (save_safetensors).
void save_adamw_state(const std::filesystem::path& path, const torch::optim::AdamW& opt);

/// A validated file, ready to install; holding one changes nothing.
struct AdamWStateFile {
  struct Param {
    std::int64_t step = 0;
    torch::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;  ///< on the parameter's device; max_exp_avg_sq amsgrad only
  };
  std::vector<detail::AdamWGroupOptions> groups;
  std::vector<std::optional<Param>> params;  ///< by index over the groups; nullopt = no state
};

/// Read and validate `path` against `opt`'s parameters (count per group, dtype, shape): a
/// SerializationError naming the file and the key otherwise; `opt` is not changed.
AdamWStateFile read_adamw_state(const std::filesystem::path& path, const torch::optim::AdamW& opt);

/// Replace `opt`'s state and group options by `file`'s (from read_adamw_state on this `opt`).
void install_adamw_state(AdamWStateFile file, torch::optim::AdamW& opt);

}  // namespace peft::train
