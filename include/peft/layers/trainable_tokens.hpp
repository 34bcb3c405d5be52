#pragma once
/// PEFT's TrainableTokensLayer (`trainable_token_indices`; docs/layer.md "Trainable tokens"),
/// kept inside the layer like modules_to_save: per adapter, new values for some rows of the
/// weight, registered on the owning layer as `token_adapter.trainable_tokens_delta.<a>`
/// [len(indices), dim] (PEFT's name; despite it these are the rows themselves, not deltas, in the
/// order the config lists the indices), and the rows the weight had when the adapter was created
/// (what unmerge restores; not a parameter):
///   forward   base_forward_with(ids, W.index_copy(0, indices, rows))   while the adapter is active
///   merge     W[indices] := rows (in place);   unmerge   W[indices] := original rows
/// LoraLayer owns one and forwards its public API here.

#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/parameterdict.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace peft {

class TrainableTokens {
 public:
  /// Adds adapter `name` (indices checked by the caller) with rows = W[indices] (copies),
  /// frozen; registers `token_adapter` on `owner` first.
  void add(torch::nn::Module& owner, const std::string& name, std::vector<std::int64_t> indices,
           const torch::Tensor& W);
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  bool empty() const { return entries_.empty(); }
  /// The token indices of `name`, in config order (Error when it has none).
  const std::vector<std::int64_t>& indices(const std::string& name) const;
  /// The trainable rows of `name` [len(indices), dim].
  torch::Tensor rows(const std::string& name) const;
  /// The first of `names` that has tokens, or nullptr.
  const std::string* first_of(const std::vector<std::string>& names) const;
  /// W with the rows of `name` written in (a new tensor; gradients flow into the rows).
  torch::Tensor weight_with(const std::string& name, const torch::Tensor& W) const;
  /// W[indices] := rows of `name` (merge), or := the original rows (unmerge); in place.
  void write_rows(const std::string& name, torch::Tensor& W) const;
  void restore_rows(const std::string& name, torch::Tensor& W) const;
  /// requires_grad = trainable && `name` in `active`, for every adapter's rows.
  void set_trainable(const std::vector<std::string>& active, bool trainable);
  /// Removes `name` (and the container with the last adapter).
  void remove(torch::nn::Module& owner, const std::string& name);
  void clear(torch::nn::Module& owner);
  /// Deep copies into `dst`, registered on `owner`.
  void clone_into(TrainableTokens& dst, torch::nn::Module& owner, const torch::optional<torch::Device>& device) const;

 private:
  struct Entry {
    std::vector<std::int64_t> indices;
    torch::Tensor original;
  };
  void register_rows(torch::nn::Module& owner, const std::string& name, const torch::Tensor& rows);
  static torch::Tensor index_tensor(const std::vector<std::int64_t>& indices, const torch::Tensor& like);

  torch::nn::ModuleDict holder_{nullptr};          // `token_adapter`
  torch::nn::ParameterDict delta_{nullptr};        // `token_adapter.trainable_tokens_delta`
  std::map<std::string, Entry> entries_;
};

}  // namespace peft
