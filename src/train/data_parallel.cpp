// Data-parallel step pieces (peft/train/data_parallel.hpp).

#include "peft/train/data_parallel.hpp"

#include <torch/torch.h>

namespace peft::train {

std::vector<std::int64_t> Shard::rows_of(const std::vector<std::int64_t>& global, std::int64_t per_rank) const {
  const auto begin = static_cast<std::size_t>(rank) * static_cast<std::size_t>(per_rank);
  if (global.size() != static_cast<std::size_t>(world) * static_cast<std::size_t>(per_rank))
    throw Error("Shard::rows_of: a global batch of " + std::to_string(global.size()) + " rows is not " +
                std::to_string(world) + " ranks x " + std::to_string(per_rank));
  return {global.begin() + static_cast<std::ptrdiff_t>(begin),
          global.begin() + static_cast<std::ptrdiff_t>(begin + static_cast<std::size_t>(per_rank))};
}

LossSum allreduce(ProcessGroup& pg, const LossSum& sum) {
  torch::Tensor t = torch::tensor({sum.total, sum.weight}, torch::kFloat64);
  pg.allreduce_sum(t);
  return {t[0].item<double>(), t[1].item<double>()};
}

void broadcast_parameters(ProcessGroup& pg, const std::vector<torch::Tensor>& params, int root) {
  torch::NoGradGuard no_grad;
  // One flat buffer per (dtype, device), in parameter order on every rank.
  std::vector<std::vector<torch::Tensor>> groups;
  for (const auto& p : params) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const std::vector<torch::Tensor>& g) {
      return g.front().dtype() == p.dtype() && g.front().device() == p.device();
    });
    if (it == groups.end()) groups.push_back({p});
    else it->push_back(p);
  }
  for (auto& g : groups) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& p : g) flat_parts.push_back(p.detach().reshape({-1}));
    torch::Tensor flat = torch::cat(flat_parts);
    pg.broadcast(flat, root);
    std::int64_t offset = 0;
    for (auto& p : g) {
      p.detach().copy_(flat.slice(0, offset, offset + p.numel()).view_as(p));
      offset += p.numel();
    }
  }
}

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> pg, std::vector<torch::Tensor> params,
                                 std::int64_t bucket_bytes)
    : pg_(std::move(pg)), params_(std::move(params)) {
  if (!pg_) throw Error("GradientReducer: no process group");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i];
    const auto opts = torch::TensorOptions().dtype(p.dtype()).device(p.device());
    const std::int64_t bytes = p.numel() * static_cast<std::int64_t>(p.element_size());
    const bool fits = !buckets_.empty() && buckets_.back().options.dtype() == opts.dtype() &&
                      buckets_.back().options.device() == opts.device() &&
                      (buckets_.back().numel * static_cast<std::int64_t>(p.element_size()) + bytes <= bucket_bytes);
    if (!fits) buckets_.push_back({{}, 0, opts, torch::Tensor()});
    buckets_.back().params.push_back(i);
    buckets_.back().numel += p.numel();
  }
  if (buckets_.empty()) buckets_.push_back({{}, 0, torch::TensorOptions().dtype(torch::kFloat32), torch::Tensor()});
}

std::vector<double> GradientReducer::reduce(const std::vector<double>& scalars) {
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(pg_->world_size());
  std::vector<double> summed(scalars.size());
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    const bool last = b + 1 == buckets_.size();
    const auto n_params = static_cast<std::int64_t>(bucket.params.size());
    const std::int64_t n_scalars = last ? static_cast<std::int64_t>(scalars.size()) : 0;
    // [gradients..., one "has a gradient" flag per parameter, scalars...]
    const std::int64_t size = bucket.numel + n_params + n_scalars;
    if (!bucket.flat.defined() || bucket.flat.numel() != size) bucket.flat = torch::empty({size}, bucket.options);
    torch::Tensor& flat = bucket.flat;
    flat.zero_();
    std::int64_t offset = 0;
    std::vector<float> flags(static_cast<std::size_t>(n_params), 0.0f);
    for (std::size_t k = 0; k < bucket.params.size(); ++k) {
      const torch::Tensor& p = params_[bucket.params[k]];
      if (p.grad().defined()) {
        flat.slice(0, offset, offset + p.numel()).copy_(p.grad().reshape({-1}));
        flags[k] = 1.0f;
      }
      offset += p.numel();
    }
    std::vector<double> tail(flags.begin(), flags.end());
    if (last) tail.insert(tail.end(), scalars.begin(), scalars.end());
    if (!tail.empty())
      flat.slice(0, bucket.numel).copy_(torch::tensor(tail, torch::kFloat64).to(bucket.options));
    pg_->allreduce_sum(flat);
    flat.slice(0, 0, bucket.numel).div_(world);
    const torch::Tensor tail_sum = flat.slice(0, bucket.numel).to(torch::kCPU, torch::kFloat64);
    const double* t = tail_sum.data_ptr<double>();
    offset = 0;
    for (std::size_t k = 0; k < bucket.params.size(); ++k) {
      torch::Tensor& p = params_[bucket.params[k]];
      const torch::Tensor mean = flat.slice(0, offset, offset + p.numel()).view(p.sizes());
      offset += p.numel();
      if (t[k] == 0.0) continue;  // no rank had a gradient: leave it undefined everywhere
      if (p.grad().defined()) p.mutable_grad().copy_(mean);
      else p.mutable_grad() = mean.clone();
    }
    for (std::int64_t s = 0; s < n_scalars; ++s)
      summed[static_cast<std::size_t>(s)] = t[static_cast<std::size_t>(n_params + s)];
  }
  return summed;
}

}  // namespace peft::train
