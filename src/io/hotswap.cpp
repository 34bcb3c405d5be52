// Hot-swapping adapters in place (include/peft/io/hotswap.hpp). Two passes: the first checks
// every key, shape and config field and computes what goes where; the second only copies.

#include "peft/io/hotswap.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "peft/config/config_json.hpp"
#include "peft/detail/strings.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/tuner/config_support.hpp"

namespace peft {
namespace {

/// The factor tensor a parsed key names, or an undefined tensor.
torch::Tensor factor_tensor(LoraLayer& layer, const std::string& name, adapter_keys::LoraTensor t) {
  using adapter_keys::LoraTensor;
  const auto& f = layer.lora_factors(name);
  switch (t) {
    case LoraTensor::A: return f.A;
    case LoraTensor::B: return f.B;
    case LoraTensor::B_bias: return f.B_bias;
    case LoraTensor::magnitude:
      for (const auto& [key, p] : layer.variant(name).extra_parameters())
        if (key == adapter_keys::suffix(LoraTensor::magnitude)) return p;
      return {};
  }
  return {};
}

/// The rank dimension of a factor: 0 for A, 1 for B; -1 for tensors without one.
int rank_dim(adapter_keys::LoraTensor t) {
  return t == adapter_keys::LoraTensor::A ? 0 : t == adapter_keys::LoraTensor::B ? 1 : -1;
}

std::map<std::string, std::shared_ptr<LoraLayer>> layers_with(const LoraModel& pm, const std::string& name) {
  std::map<std::string, std::shared_ptr<LoraLayer>> out;
  for (const auto& [key, layer] : pm.lora_layers())
    if (layer->has_adapter(name)) out[key] = layer;
  return out;
}

}  // namespace

void prepare_for_hotswap(LoraModel& pm, std::int64_t target_rank) {
  if (target_rank <= 0)
    throw ConfigError::about("prepare_for_hotswap", "target_rank", std::to_string(target_rank),
                             "must be positive", "the largest rank among the adapters to serve");
  const auto layers = pm.lora_layers();
  if (layers.empty())
    throw Error("No adapter layers found on the model, make sure to call prepare_for_hotswap after loading the first "
                "adapter");
  for (const auto& [key, layer] : layers)
    for (const auto& name : layer->adapter_names()) {
      const auto& f = layer->lora_factors(name);
      if (f.A.size(0) > target_rank)
        throw Error("Trying to pad the adapter `" + name + "` of `" + key + "` to the target rank " +
                    std::to_string(target_rank) + ", but the original rank is larger (" +
                    std::to_string(f.A.size(0)) + "). This is not possible.");
    }
  torch::NoGradGuard no_grad;
  std::map<std::string, std::map<std::string, std::int64_t>> ranks;  // adapter -> layer -> saved rank
  for (const auto& [key, layer] : layers)
    for (const auto& name : layer->adapter_names()) {
      const auto& f = layer->lora_factors(name);
      const std::int64_t r = f.A.size(0);
      if (r == target_rank) continue;
      for (int dim : {0, 1}) {
        torch::Tensor t = dim == 0 ? f.A : f.B;
        auto sizes = t.sizes().vec();
        sizes[static_cast<std::size_t>(dim)] = target_rank;
        auto padded = torch::zeros(sizes, t.options());
        padded.narrow(dim, 0, r).copy_(t);
        t.set_data(padded);  // same tensor object (registry, members, factor handles), new storage
      }
      const std::int64_t saved = pm.saved_rank(name, key);
      ranks[name][key] = saved > 0 ? saved : r;
    }
  for (auto& [name, by_layer] : ranks) {
    for (const auto& [key, layer] : layers_with(pm, name))
      if (!by_layer.count(key) && pm.saved_rank(name, key) > 0) by_layer[key] = pm.saved_rank(name, key);
    pm.set_hotswapped(name, pm.peft_config(name), pm.targeted_module_names(name), by_layer);
  }
}

void hotswap_adapter_from_state_dict(LoraModel& pm, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                     const std::string& adapter_name, const LoraConfig& new_config) {
  using adapter_keys::LoraTensor;
  const LoraConfig& old = pm.peft_config(adapter_name);
  LoraConfig config = new_config;
  config.validate();
  check_config_supported(config, pm.model());
  // PEFT's CONFIG_KEYS_TO_CHECK: fields the weights do not carry but the computation uses.
  auto incompatible = [&](const std::string& field, const std::string& a, const std::string& b) {
    return ConfigError::about("hotswap_adapter", field, b,
                              "Configs are incompatible: for " + field + ", " + a + " != " + b,
                              "hot-swap adapters trained with the same " + field + ", or load it as a new adapter");
  };
  if (old.use_rslora != config.use_rslora)
    throw incompatible("use_rslora", old.use_rslora ? "True" : "False", config.use_rslora ? "True" : "False");
  if (old.lora_dropout != config.lora_dropout)
    throw incompatible("lora_dropout", std::to_string(old.lora_dropout), std::to_string(config.lora_dropout));
  if (!(old.alpha_pattern == config.alpha_pattern)) throw incompatible("alpha_pattern", "{...}", "{...}");
  if (old.use_dora != config.use_dora)
    throw incompatible("use_dora", old.use_dora ? "True" : "False", config.use_dora ? "True" : "False");
  if (old.layer_replication != config.layer_replication) throw incompatible("layer_replication", "[...]", "[...]");

  const auto layers = layers_with(pm, adapter_name);
  for (const auto& [key, layer] : layers)
    if (std::find(layer->merged_adapters().begin(), layer->merged_adapters().end(), adapter_name) !=
        layer->merged_adapters().end())
      throw Error("Cannot hot-swap adapter `" + adapter_name + "` while it is merged (hint: unmerge_adapter first)");

  struct Copy {
    torch::Tensor dst, src;
    int rank_dim;
  };
  std::vector<Copy> copies;
  std::vector<std::string> unexpected;
  std::map<std::string, std::int64_t> new_rank;  // layer -> rank of the new A
  for (const auto& [key, t] : tensors) {
    const auto parsed = adapter_keys::parse_lora_key(key);
    auto it = parsed ? layers.find(parsed->module) : layers.end();
    torch::Tensor dst = it != layers.end() ? factor_tensor(*it->second, adapter_name, parsed->tensor) : torch::Tensor();
    if (!dst.defined()) {
      unexpected.push_back(key);
      continue;
    }
    const int rd = rank_dim(parsed->tensor);
    bool fits = dst.dim() == t.dim();
    for (int d = 0; fits && d < t.dim(); ++d) fits = d == rd ? t.size(d) <= dst.size(d) : t.size(d) == dst.size(d);
    if (!fits)
      throw SerializationError("hotswap_adapter: `" + key + "` has shape " + detail::shape_string(t.sizes()) +
                               " but adapter `" + adapter_name + "` holds " + detail::shape_string(dst.sizes()) +
                               (rd >= 0 && t.dim() == dst.dim() && t.size(rd) > dst.size(rd)
                                    ? " (a larger rank: call prepare_for_hotswap with target_rank >= " +
                                          std::to_string(t.size(rd)) + " before serving)"
                                    : ""));
    if (parsed->tensor == LoraTensor::A) new_rank[parsed->module] = t.size(0);
    copies.push_back({dst, t, rd});
  }
  if (!unexpected.empty())
    throw SerializationError("Hot swapping the adapter did not succeed, unexpected keys found: " +
                             detail::abbreviated_list(unexpected, 8, ", ") +
                             " (only LoRA tensors of layers that carry adapter `" + adapter_name + "` can be swapped)");
  std::vector<std::string> targeted, missing;
  for (const auto& [key, layer] : layers) (new_rank.count(key) ? targeted : missing).push_back(key);
  if (!missing.empty() && config.use_dora)
    throw SerializationError("hotswap_adapter: the new DoRA adapter lacks layers " +
                             detail::abbreviated_list(missing, 8, ", ") +
                             " that adapter `" + adapter_name + "` has; zeroing their magnitude would zero them");
  LayerSettingsResolver resolve(config);
  std::map<std::string, LayerSettings> settings;
  for (const auto& key : targeted) settings[key] = resolve(key);

  // Mutations start here.
  torch::NoGradGuard no_grad;
  for (const auto& key : missing) {
    const auto& f = layers.at(key)->lora_factors(adapter_name);
    for (const auto* t : {&f.A, &f.B, &f.B_bias})
      if (t->defined()) const_cast<torch::Tensor&>(*t).zero_();
  }
  for (auto& c : copies) {
    if (c.rank_dim >= 0 && c.src.size(c.rank_dim) < c.dst.size(c.rank_dim)) {
      c.dst.zero_();
      c.dst.narrow(c.rank_dim, 0, c.src.size(c.rank_dim)).copy_(c.src);
    } else {
      c.dst.copy_(c.src);
    }
  }
  std::map<std::string, std::int64_t> saved;
  for (const auto& key : targeted) {
    auto& layer = *layers.at(key);
    const auto& s = settings.at(key);
    layer.set_rank_and_alpha(adapter_name, new_rank.at(key), s.lora_alpha);
    if (layer.lora_factors(adapter_name).A.size(0) > new_rank.at(key)) saved[key] = new_rank.at(key);
  }
  config.inference_mode = old.inference_mode;
  pm.set_hotswapped(adapter_name, config, targeted, saved);
}

void hotswap_adapter(LoraModel& pm, const std::filesystem::path& dir, const std::string& adapter_name) {
  const LoraConfig config = load_adapter_config(dir);
  const auto file = load_safetensors(dir / kAdapterWeightsFile);
  hotswap_adapter_from_state_dict(pm, file.tensors, adapter_name, config);
}

}  // namespace peft
