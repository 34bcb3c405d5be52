// AdamW state <-> optimizer.safetensors (peft/train/optimizer_state.hpp).

#include "peft/train/optimizer_state.hpp"

#include <sstream>
#include <string>
#include <type_traits>

#include "peft/error.hpp"
#include "peft/format/safetensors_header.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/io/safetensors_dtype.hpp"

namespace peft::train {

namespace {

using torch::optim::AdamWOptions;
using torch::optim::AdamWParamState;

/// The key torch::optim keeps a parameter's state under: the TensorImpl's address, as a string
/// in LibTorch 1.13 (c10::guts::to_string of the pointer) and as a void* in 2.x.
template <class Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  void* impl = p.unsafeGetTensorImpl();
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << impl;
    return s.str();
  } else {
    return static_cast<Key>(impl);
  }
}

const AdamWParamState* state_of(const torch::optim::AdamW& opt, const torch::Tensor& p) {
  const auto& states = opt.state();
  auto it = states.find(state_key(states, p));
  return it == states.end() ? nullptr : static_cast<const AdamWParamState*>(it->second.get());
}

detail::AdamWGroupOptions options_of(const torch::optim::OptimizerParamGroup& g) {
  const auto& o = static_cast<const AdamWOptions&>(g.options());
  detail::AdamWGroupOptions out;
  out.params = g.params().size();
  out.lr = o.lr();
  out.beta1 = std::get<0>(o.betas());
  out.beta2 = std::get<1>(o.betas());
  out.eps = o.eps();
  out.weight_decay = o.weight_decay();
  out.amsgrad = o.amsgrad();
  return out;
}

std::string dtype_name(const torch::Tensor& t) {
  const SafetensorsDtype* d = safetensors_dtype_of(t.scalar_type());
  if (!d) throw SerializationError(std::string("optimizer state: parameters of dtype ") + c10::toString(t.scalar_type()) +
                                   " cannot be saved");
  return d->name;
}

}  // namespace

void save_adamw_state(const std::filesystem::path& path, const torch::optim::AdamW& opt) {
  std::vector<detail::AdamWGroupOptions> groups;
  std::vector<std::int64_t> steps;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& g : opt.param_groups()) {
    groups.push_back(options_of(g));
    for (const auto& p : g.params()) {
      const std::string prefix = "state." + std::to_string(steps.size()) + ".";
      const AdamWParamState* s = state_of(opt, p);
      steps.push_back(s ? s->step() : -1);
      if (!s) continue;
      tensors.emplace_back(prefix + "exp_avg", s->exp_avg());
      tensors.emplace_back(prefix + "exp_avg_sq", s->exp_avg_sq());
      if (groups.back().amsgrad) tensors.emplace_back(prefix + "max_exp_avg_sq", s->max_exp_avg_sq());
    }
  }
  save_safetensors(path, tensors, detail::adamw_state_metadata(groups, steps));
}

AdamWStateFile read_adamw_state(const std::filesystem::path& path, const torch::optim::AdamW& opt) {
  const std::string where = path.string();
  std::vector<detail::AdamWGroupOptions> live;
  std::vector<detail::ParamSpec> specs;
  std::vector<torch::Tensor> params;
  for (const auto& g : opt.param_groups()) {
    live.push_back(options_of(g));
    for (const auto& p : g.params()) {
      specs.push_back({dtype_name(p), std::vector<std::int64_t>(p.sizes().begin(), p.sizes().end())});
      params.push_back(p);
    }
  }
  // load_safetensors has checked the header and data bounds; the layout check ties every entry
  // to its parameter before a tensor is used.
  const SafetensorsFile file = load_safetensors(path);
  SafetensorsHeader header;
  header.metadata = file.metadata;
  for (const auto& [name, t] : file.tensors) {
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype_name(t);
    e.shape.assign(t.sizes().begin(), t.sizes().end());
    header.entries.push_back(std::move(e));
  }
  const detail::AdamWStateLayout layout = detail::validate_adamw_state(header, live, specs, where);
  AdamWStateFile out;
  out.groups = layout.groups;
  out.params.resize(params.size());
  // Copies on the parameter's device, owning their memory (the file's tensors view its mapping).
  auto take = [&](int entry, const torch::Tensor& p) {
    const torch::Tensor& t = file.tensors[static_cast<std::size_t>(entry)].second;
    return t.to(p.device(), p.scalar_type(), /*non_blocking=*/false, /*copy=*/true).contiguous();
  };
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& l = layout.params[i];
    if (l.step < 0) continue;
    AdamWStateFile::Param s;
    s.step = l.step;
    s.exp_avg = take(l.exp_avg, params[i]);
    s.exp_avg_sq = take(l.exp_avg_sq, params[i]);
    if (l.max_exp_avg_sq >= 0) s.max_exp_avg_sq = take(l.max_exp_avg_sq, params[i]);
    out.params[i] = std::move(s);
  }
  return out;
}

void install_adamw_state(AdamWStateFile file, torch::optim::AdamW& opt) {
  auto& states = opt.state();
  std::size_t i = 0;
  for (std::size_t g = 0; g < opt.param_groups().size(); ++g) {
    auto& group = opt.param_groups()[g];
    const detail::AdamWGroupOptions& o = file.groups.at(g);
    static_cast<AdamWOptions&>(group.options())
        .lr(o.lr)
        .betas(std::make_tuple(o.beta1, o.beta2))
        .eps(o.eps)
        .weight_decay(o.weight_decay)
        .amsgrad(o.amsgrad);
    for (const auto& p : group.params()) {
      auto& slot = file.params.at(i++);
      const auto key = state_key(states, p);
      if (!slot) {
        states.erase(key);
        continue;
      }
      auto s = std::make_unique<AdamWParamState>();
      s->step(slot->step);
      s->exp_avg(slot->exp_avg);
      s->exp_avg_sq(slot->exp_avg_sq);
      if (slot->max_exp_avg_sq.defined()) s->max_exp_avg_sq(slot->max_exp_avg_sq);
      states[key] = std::move(s);
    }
  }
}

}  // namespace peft::train
