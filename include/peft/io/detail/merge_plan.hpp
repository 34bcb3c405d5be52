#pragma once
/// peft-merge internals: the merge plan (every adapter validated against the base, the steps per
/// base tensor) and the maths of one tensor's steps. Used by src/io/merge_into_checkpoint.cpp;
/// the decisions are documented in peft/io/merge_into_checkpoint.hpp.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "peft/io/detail/merge_adapter.hpp"
#include "peft/io/merge_into_checkpoint.hpp"

namespace peft::detail {

/// One step applied to one base tensor.
struct MergeOp {
  enum Kind { Lora, LoraBias, Replace, Rows } kind = Lora;  // Rows: trainable tokens written in
  std::size_t adapter = 0;
  const MergeFactors* f = nullptr;
  torch::Tensor replacement;    ///< Replace: the tensor; Rows: the new rows [n, dim]
  std::vector<std::int64_t> rows;  ///< Rows: their indices
  double scaling = 0.0;  ///< s (without the adapter weight)
  double weight = 1.0;
  std::int64_t r = 0;
  bool fan_in_fan_out = false;
};

struct MergePlan {
  std::vector<MergeAdapterData> adapters;
  std::unordered_map<std::string, std::vector<MergeOp>> ops;  ///< base key -> steps, in order
  std::vector<MergedTensorInfo> merged;
  std::vector<std::string> notes;
};

/// Validate every adapter against the base and build the per-tensor steps. `base` maps every
/// base key to a tensor (possibly a view of a mapped file or a storage-less stand-in: only shapes
/// and dtypes are read). Throws before anything is written.
MergePlan make_merge_plan(const std::unordered_map<std::string, torch::Tensor>& base,
                          const std::vector<MergeAdapter>& specs, const MergeCheckpointOptions& options);

/// Apply one tensor's steps in float32; the result is cast to `out_dtype` and checked finite.
torch::Tensor apply_merge_steps(const std::string& key, const torch::Tensor& base, const std::vector<MergeOp>& steps,
                                torch::ScalarType out_dtype);

}  // namespace peft::detail
