#pragma once
/// The torch-free half of optimizer.safetensors (train/optimizer_state.hpp): its metadata keys
/// and the validation of a parsed header against the live optimizer's parameters, so that every
/// tensor later read from the file has the name, dtype and shape of the parameter it belongs
/// to. The fuzz target fuzz_checkpoint_state drives it directly.
///
///   __metadata__: format = "peft-cpp/adamw/1", param_groups = G,
///                 group.<g>.{params, lr, beta1, beta2, eps, weight_decay, amsgrad},
///                 state.<i>.step (only parameters AdamW holds state for; i counts over groups)
///   tensors:      state.<i>.exp_avg, state.<i>.exp_avg_sq, state.<i>.max_exp_avg_sq (amsgrad)
///
/// Bodies: src/train/adamw_state_layout.cpp.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "peft/format/safetensors_header.hpp"

namespace peft::train::detail {

inline constexpr const char* kAdamWStateFormat = "peft-cpp/adamw/1";

/// What the live optimizer's parameter is: safetensors dtype name ("F32") and shape.
struct ParamSpec {
  std::string dtype;
  std::vector<std::int64_t> shape;
};

struct AdamWGroupOptions {
  std::size_t params = 0;  ///< parameters in the group
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool amsgrad = false;
};

/// A validated file: options per group and, per parameter, its step (-1: no state) and the
/// header entry index of each moment (-1: absent).
struct AdamWStateLayout {
  struct Param {
    std::int64_t step = -1;
    int exp_avg = -1, exp_avg_sq = -1, max_exp_avg_sq = -1;
  };
  std::vector<AdamWGroupOptions> groups;
  std::vector<Param> params;
};

/// The file's __metadata__ for `groups` and the per-parameter steps (-1 = no state).
std::vector<std::pair<std::string, std::string>> adamw_state_metadata(const std::vector<AdamWGroupOptions>& groups,
                                                                      const std::vector<std::int64_t>& steps);

/// Check `header` against the live optimizer: the format, one group per live group with as many
/// parameters (`groups[g].params`; the options are the file's), options in range (lr, weight_decay
/// >= 0, betas in [0, 1), eps > 0, all finite), steps in [1, 2^53], exactly the moments a state
/// needs with the dtype and shape of its parameter in `params`, no other key. SerializationError
/// naming `where` and the key otherwise.
AdamWStateLayout validate_adamw_state(const SafetensorsHeader& header, const std::vector<AdamWGroupOptions>& groups,
                                      const std::vector<ParamSpec>& params, const std::string& where);

}  // namespace peft::train::detail
