#pragma once
/// The data-parallel parts of a training step, over a ProcessGroup (distributed.hpp), as
/// PyTorch's DistributedDataParallel does them for the trainable parameters only:
///
///   broadcast_parameters(pg, params)      rank 0's initial adapter on every rank
///   GradientReducer reducer(pg, params);  per optimizer step, after the last micro-batch's
///   auto sums = reducer.reduce({loss, tokens, stop});   backward: grads <- mean over ranks,
///                                         and these scalars summed, in the same allreduce
///   Shard{rank, world}.owns(i)            which rows of a global batch / eval chunks are mine
///
/// Gradient accumulation needs nothing more: micro-batches add into .grad locally and reduce()
/// runs once per optimizer step. Clipping goes after reduce() (on the averaged gradients).
/// Body: src/train/data_parallel.cpp.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "peft/train/distributed.hpp"

namespace peft::train {

/// Rank `rank` of `world`: this rank's part of something every rank sees whole.
struct Shard {
  int rank = 0;
  int world = 1;
  /// Item i (an eval chunk, a row of the global batch) belongs to this rank: i % world == rank.
  bool owns(std::int64_t i) const { return i % world == rank; }
  /// Rows [rank * per_rank, (rank + 1) * per_rank) of a global batch of world * per_rank rows.
  std::vector<std::int64_t> rows_of(const std::vector<std::int64_t>& global, std::int64_t per_rank) const;
};

/// A sum of per-item losses and their weights (rows or target tokens), reducible over ranks.
struct LossSum {
  double total = 0.0;
  double weight = 0.0;
  double mean() const { return total / (weight > 0 ? weight : 1.0); }
};

/// `sum` summed over the ranks of `pg` (one allreduce of two float64 values).
LossSum allreduce(ProcessGroup& pg, const LossSum& sum);

/// Every tensor of `params` <- rank `root`'s values (one broadcast per dtype and device).
void broadcast_parameters(ProcessGroup& pg, const std::vector<torch::Tensor>& params, int root = 0);

/// Averages the gradients of a fixed list of parameters over the ranks, one allreduce per bucket
/// (contiguous runs of parameters with the same dtype and device, at most `bucket_bytes` each
/// unless one parameter is larger). A gradient missing on some ranks counts as zeros there; one
/// missing on every rank stays undefined everywhere (so AdamW skips it on all ranks alike).
class GradientReducer {
 public:
  GradientReducer(std::shared_ptr<ProcessGroup> pg, std::vector<torch::Tensor> params,
                  std::int64_t bucket_bytes = std::int64_t{25} << 20);
  /// grad <- (sum over ranks of grad) / world for every parameter; returns `scalars` summed over
  /// the ranks (carried in the last bucket, so in its dtype: exact integers up to 2^24 in fp32).
  std::vector<double> reduce(const std::vector<double>& scalars = {});
  /// Number of buckets (allreduce calls per reduce()).
  std::size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<std::size_t> params;  ///< indices into params_
    std::int64_t numel = 0;
    torch::TensorOptions options;
    torch::Tensor flat;  ///< kept between steps: [gradients, flags, scalars], reused when the size holds
  };
  std::shared_ptr<ProcessGroup> pg_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
};

}  // namespace peft::train
