// LoraLayer's adapter lifecycle: creation, activation, modules_to_save, removal and cloning.
// Forward paths are in lora_forward.cpp, merging in lora_merge.cpp.

#include "peft/layers/lora_layer.hpp"

#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>

#include "peft/error.hpp"
#include "peft/init/lora_init.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/variants/dora_variant.hpp"
#include "peft/warnings.hpp"

namespace peft {

namespace detail {
void drop_active_adapter(std::vector<std::string>& active, const std::string& name,
                         const std::vector<std::string>& remaining) {
  auto it = std::find(active.begin(), active.end(), name);
  if (it == active.end()) return;
  active.erase(it);
  if (!active.empty() || remaining.empty()) return;
  active = {*std::min_element(remaining.begin(), remaining.end())};
  warn("Adapter " + name + " was active which is now deleted. Setting active adapter to " + active.front() + ".");
}
}  // namespace detail

void LoraLayer::check_supported(const AdapterSettings& s) { check_lora_settings(s); }

void LoraLayer::update_layer(const std::string& name, const AdapterSettings& s) {
  // Before any change: rank, init and flags this layer type allows; dtype, layout, rank, eigens
  // of a base-rewriting init.
  check_adapter_settings(s, corda_eigens_ ? &*corda_eigens_ : nullptr);
  if (has_adapter(name))
    throw ConfigError::about("LoraLayer", "adapter_name",
                             "\"" + name + "\"", "this layer already has that adapter",
                             "delete it first or use another name");
  if (!tokens_.empty())
    throw UnsupportedModuleError(std::string("this ") + layer_type() +
                                 " holds trainable tokens; PEFT cannot put LoRA on a module that has them (a module "
                                 "is either adapted or token-trained). Nothing was changed.");
  Adapter a;
  a.settings = s;
  a.variant = resolve_lora_variant(s);
  AdapterEntry dropout;
  if (s.lora_dropout > 0.0) {
    a.dropout = torch::nn::Dropout(torch::nn::DropoutOptions(s.lora_dropout)).ptr();
    dropout.module = a.dropout;
  } else {
    dropout.module = torch::nn::Identity().ptr();
  }
  // Created on the CPU in fp32, like PEFT, so the RNG stream matches Python's.
  const LoraFactorEntries factors = create_lora_factors(s.r, s.lora_bias);
  a.factors = detail::factor_tensors(factors.A, factors.B);
  reset_lora_parameters(s, a.factors, corda_eigens_);
  // PEFT's _move_adapter_to_device_of_base_layer: the stored weight's device, and its dtype when
  // floating (a quantised base keeps fp32 adapters). Parameters keep their identity.
  const torch::Tensor& w = base_weight();
  const auto dtype = torch::isFloatingType(w.scalar_type()) ? std::optional<torch::ScalarType>(w.scalar_type())
                                                            : std::nullopt;
  detail::move_entry(factors.A, w.device(), dtype);
  detail::move_entry(factors.B, w.device(), dtype);
  a.variant->init(view(a));  // after the init and the cast, as PEFT's dora_init
  dropout.module->train(is_training());
  add_adapter_entries(name, dropout, factors, std::move(a));
  set_requires_grad(adapters_.at(name), false);
}

void LoraLayer::add_adapter_entries(const std::string& name, const AdapterEntry& dropout,
                                    const LoraFactorEntries& factors, Adapter a) {
  const LoraFactorNames dict_names = lora_factor_names();
  lora_dropout_.insert(*this, "lora_dropout", name, dropout);
  lora_A_.insert(*this, dict_names.A, name, factors.A);
  lora_B_.insert(*this, dict_names.B, name, factors.B);
  for (const auto& [container, module] : a.variant->modules())
    variant_dicts_[container].insert(*this, container, name, AdapterEntry{module, torch::Tensor()});
  adapters_.emplace(name, std::move(a));
  names_.push_back(name);
}

void LoraLayer::upcast_adapter(const std::string& name) {
  Adapter& a = adapter(name);
  const auto half = [](const torch::Tensor& t) {
    return t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16;
  };
  if (half(a.factors.A)) detail::move_entry(lora_A_.get(name), a.factors.A.device(), torch::kFloat32);
  if (half(a.factors.B)) detail::move_entry(lora_B_.get(name), a.factors.B.device(), torch::kFloat32);
  a.variant->upcast();
}

const LoraLayer::Adapter& LoraLayer::adapter(const std::string& name) const {
  auto it = adapters_.find(name);
  if (it == adapters_.end()) require(name);
  return it->second;
}

void LoraLayer::require(const std::string& name) const {
  if (!has_adapter(name))
    throw Error("this layer has no adapter `" + name + "` (it has " + std::to_string(names_.size()) + ")");
}

torch::nn::Linear& LoraLayer::linear_factor(std::map<std::string, torch::nn::Linear>& cache,
                                            const detail::AdapterDict& dict, const std::string& name) {
  require(name);
  std::lock_guard<CopyableMutex> lock(cache_mutex_);
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto linear = std::dynamic_pointer_cast<torch::nn::LinearImpl>(dict.get(name).module);
    if (!linear) throw Error("adapter `" + name + "` of this layer has no Linear factors (use lora_factors)");
    it = cache.emplace(name, torch::nn::Linear(linear)).first;
  }
  return it->second;
}

torch::nn::Linear& LoraLayer::lora_A(const std::string& name) { return linear_factor(a_cache_, lora_A_, name); }
torch::nn::Linear& LoraLayer::lora_B(const std::string& name) { return linear_factor(b_cache_, lora_B_, name); }

torch::Tensor& LoraLayer::lora_magnitude(const std::string& name) {
  auto* dora = dynamic_cast<DoraVariant*>(adapter(name).variant.get());
  if (!dora) throw Error("adapter `" + name + "` of this layer does not use DoRA (it has no magnitude vector)");
  return dora->magnitude();
}

void LoraLayer::set_scale(const std::string& name, double factor) {
  auto& s = adapter(name).settings;
  s.scaling = factor * lora_scaling(s.lora_alpha.value, s.r, s.use_rslora);
}

void LoraLayer::set_rank_and_alpha(const std::string& name, std::int64_t r, Number lora_alpha) {
  auto& s = adapter(name).settings;
  s.r = r;
  s.lora_alpha = lora_alpha;
  s.scaling = lora_scaling(lora_alpha.value, r, s.use_rslora);
}

void LoraLayer::set_requires_grad(const Adapter& a, bool on) {
  for (const auto* t : {&a.factors.A, &a.factors.B, &a.factors.B_bias})
    if (t->defined()) t->set_requires_grad(on);
  for (const auto& [key, t] : a.variant->extra_parameters()) t.set_requires_grad(on);
}

void LoraLayer::set_adapter(const std::vector<std::string>& names, bool trainable) {
  check_set_adapter(names);
  if (merged()) {
    warn("Adapter cannot be set when the model is merged. Unmerging the model first.");
    unmerge();
  }
  active_ = names;
  for (const auto& [n, a] : adapters_)
    set_requires_grad(a, trainable && std::find(names.begin(), names.end(), n) != names.end());
  modules_to_save_.set_trainable(names, trainable);
  tokens_.set_trainable(names, trainable);
}

void LoraLayer::enable_adapters(bool enabled) {
  disabled_ = !enabled;
  if (!disabled_) return;
  for (const auto& [n, a] : adapters_) set_requires_grad(a, false);
  modules_to_save_.set_trainable({}, false);
  tokens_.set_trainable({}, false);
}

void LoraLayer::check_trainable_tokens(const std::string& name, const std::vector<std::int64_t>& indices) const {
  const std::string what = std::string("trainable_token_indices on a ") + layer_type();
  if (!supports_trainable_tokens())
    throw UnsupportedModuleError(what + ": only Embedding layers (peft::Embedding, or a stock "
                                 "torch::nn::Embedding in a container) can train single rows. Nothing was changed.");
  if (!names_.empty())
    throw UnsupportedModuleError("trainable_token_indices cannot be applied to a module that carries LoRA "
                                 "adapters (a lora." + std::string(layer_type()) +
                                 "); leave it out of target_modules or of trainable_token_indices. Nothing was changed.");
  if (!modules_to_save_.empty())
    throw UnsupportedModuleError("trainable_token_indices cannot be applied to a module that holds "
                                 "modules_to_save copies (it is trained whole). Nothing was changed.");
  if (has_trainable_tokens(name))
    throw ConfigError::about("LoraLayer", "adapter_name", "\"" + name + "\"",
                             "this layer already has trainable tokens for that adapter", "delete the adapter first");
  if (indices.empty())
    throw ConfigError("trainable_token_indices", "[]", "no token index given for this layer", "list at least one index");
  for (const auto i : indices)
    if (i < 0 || i >= in_features())
      throw ConfigError("trainable_token_indices", std::to_string(i),
                        "index " + std::to_string(i) + " is out of bounds for dimension 0 with size " +
                            std::to_string(in_features()),
                        "token indices must lie in [0, num_embeddings)");
}

void LoraLayer::add_trainable_tokens(const std::string& name, std::vector<std::int64_t> indices) {
  check_trainable_tokens(name, indices);
  tokens_.add(*this, name, std::move(indices), dense_weight());
}

void LoraLayer::check_set_adapter(const std::vector<std::string>& names) const {
  std::vector<std::string> with_tokens;
  for (const auto& n : names)
    if (tokens_.has(n) && std::find(with_tokens.begin(), with_tokens.end(), n) == with_tokens.end())
      with_tokens.push_back(n);
  if (with_tokens.size() > 1)
    throw ConfigError::about("set_adapter", "adapter_names", with_tokens.front() + ", " + with_tokens[1],
                             "Only one adapter can be set at a time for a layer with trainable tokens, got " +
                                 std::to_string(with_tokens.size()),
                             "activate one of them (their token rows would overwrite each other)");
}

torch::Tensor LoraLayer::weight_for(const std::string& name) {
  return tokens_.has(name) ? tokens_.weight_with(name, dense_weight()) : dense_weight();
}

std::vector<std::pair<std::string, torch::Tensor>> LoraLayer::adapter_tensors(const std::string& name) const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (has_adapter(name)) {
    const LoraFactorNames dict_names = lora_factor_names();
    const auto& f = adapter(name).factors;
    // Module factors hold `weight` (and B's `bias`); bare-parameter factors are the tensor itself.
    const bool modules = lora_A_.get(name).module != nullptr;
    out.emplace_back(std::string(dict_names.A) + (modules ? ".weight" : ""), f.A);
    out.emplace_back(std::string(dict_names.B) + (modules ? ".weight" : ""), f.B);
    if (f.B_bias.defined()) out.emplace_back(std::string(dict_names.B) + ".bias", f.B_bias);
    for (const auto& [key, t] : adapter(name).variant->extra_parameters()) out.emplace_back(key, t);
  }
  if (has_trainable_copy(name))
    for (const auto& p : modules_to_save_.get(name).named_parameters(/*recurse=*/false))
      out.emplace_back(p.key(), p.value());
  if (has_trainable_tokens(name)) out.emplace_back("token_adapter.trainable_tokens_delta", tokens_.rows(name));
  return out;
}

void LoraLayer::add_trainable_copy(const std::string& name) {
  if (modules_to_save_.has(name))
    throw ConfigError::about("LoraLayer", "adapter_name",
                             "\"" + name + "\"",
                             "this layer already has a modules_to_save copy for that adapter", "delete the adapter first");
  modules_to_save_.add(*this, name, plain_copy());
}

void LoraLayer::delete_adapter(const std::string& name) {
  if (!holds(name)) require(name);
  if (std::find(merged_.begin(), merged_.end(), name) != merged_.end())
    throw Error("Cannot delete adapter `" + name + "` while it is merged (hint: unmerge first)");
  if (has_trainable_copy(name) || has_trainable_tokens(name)) {
    modules_to_save_.remove(*this, name);
    tokens_.remove(*this, name);
    if (!has_adapter(name)) {
      active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
      return;
    }
  }
  for (const auto& [container, module] : adapter(name).variant->modules()) variant_dicts_[container].pop(*this, name);
  lora_dropout_.pop(*this, name);
  lora_A_.pop(*this, name);
  lora_B_.pop(*this, name);
  a_cache_.erase(name);
  b_cache_.erase(name);
  adapters_.erase(name);
  names_.erase(std::find(names_.begin(), names_.end(), name));
  detail::drop_active_adapter(active_, name, names_);
}

void LoraLayer::remove_all_adapters() {
  if (!modules_to_save_.empty()) {
    if (LoraLayer* copy = modules_to_save_.active_copy(active_)) {
      torch::NoGradGuard no_grad;
      base_weight().copy_(copy->base_weight());
      if (base_bias().defined()) base_bias().copy_(copy->base_bias());
    }
    modules_to_save_.clear(*this);
  }
  tokens_.clear(*this);
  for (auto& [container, dict] : variant_dicts_) dict.clear(*this);
  variant_dicts_.clear();
  lora_dropout_.clear(*this);
  lora_A_.clear(*this);
  lora_B_.clear(*this);
  a_cache_.clear();
  b_cache_.clear();
  adapters_.clear();
  names_.clear();
  active_.clear();
  merged_.clear();
  disabled_ = false;
}

torch::Tensor LoraLayer::cloned(const torch::Tensor& t, const torch::optional<torch::Device>& device) {
  if (!t.defined()) return t;
  auto c = (device ? t.to(*device) : t).clone();
  c.set_requires_grad(t.requires_grad());
  return c;
}

void LoraLayer::clone_adapters_into(LoraLayer& dst, const torch::optional<torch::Device>& device) const {
  modules_to_save_.clone_into(dst.modules_to_save_, dst, device);
  tokens_.clone_into(dst.tokens_, dst, device);
  for (const auto& n : names_) {
    const Adapter& src = adapters_.at(n);
    Adapter a;
    a.settings = src.settings;
    a.variant = src.variant->clone(device);
    const AdapterEntry dropout = detail::clone_entry(lora_dropout_.get(n), device);
    a.dropout = std::dynamic_pointer_cast<torch::nn::DropoutImpl>(dropout.module);
    const LoraFactorEntries factors{detail::clone_entry(lora_A_.get(n), device),
                                    detail::clone_entry(lora_B_.get(n), device)};
    a.factors = detail::factor_tensors(factors.A, factors.B);
    dst.add_adapter_entries(n, dropout, factors, std::move(a));
  }
  dst.active_ = active_;
  dst.merged_ = merged_;
  dst.disabled_ = disabled_;
}

}  // namespace peft
