#pragma once
/// PEFT-format adapter directories (docs/file-format.md#adapter-files): `adapter_config.json` +
/// `adapter_model.safetensors`
/// with PEFT's keys (`base_model.model.<module>.lora_A.weight`, ...), the default adapter in the
/// directory itself and every other adapter X in `<dir>/X/`.
///
///   peft::save_pretrained(peft_model, "out/");                  // what Python PEFT writes
///   auto pm = peft::from_pretrained(model, "out/");             // or a directory PEFT wrote
///   peft::load_adapter(pm, "other_dir/", "other");
///
/// Loading validates everything (config, every key, every shape, dtypes); when anything does not
/// fit, the model is left as it was (the adapter is injected to learn the shapes, and removed
/// again), and the error names the first mismatching key and both shapes.

#include <torch/types.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/init/base_rewrite.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/io/embedding_layers.hpp"
#include "peft/io/init_conversion.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"

namespace peft {

inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";

namespace detail {

/// Where each on-disk key of adapter `name` lives in the model (and, for loading, its shape).
struct AdapterKeyMap {
  std::vector<std::pair<std::string, torch::Tensor>> entries;  // on-disk key -> model tensor
  /// Keys a file may lack: base biases of bias="all"/"lora_only" (PEFT 0.20 does not write the
  /// lora_only ones), which then keep the base model's values.
  std::vector<std::string> optional;
  const torch::Tensor* find(const std::string& key) const {
    for (const auto& e : entries)
      if (e.first == key) return &e.second;
    return nullptr;
  }
};

/// PEFT's get_peft_model_state_dict key rule (format/adapter_keys.hpp) for the tensors of adapter
/// `name` in `pm`. bias="lora_only" base biases are written too (PEFT 0.20.0 forgets them, bug
/// #3306, fixed later; PEFT loads them back as base-model keys).
inline AdapterKeyMap adapter_key_map(const LoraModel& pm, const std::string& name, const LoraConfig& config) {
  AdapterKeyMap map;
  std::map<std::string, std::shared_ptr<LoraLayer>> layers;
  for (const auto& [key, layer] : pm.lora_layers()) layers[key] = layer;
  const auto& targeted = pm.targeted_module_names(name);
  for (const auto& [key, layer] : layers) {
    // The layer names its tensors with PEFT's suffixes: LoRA factors (`lora_A.weight`, or an
    // Embedding's `lora_embedding_A`), the DoRA magnitude without its ".weight", a modules_to_save
    // copy under the module's own names, trainable tokens (docs/file-format.md#on-disk-keys).
    // A layer the adapter no longer targets (hotswap_adapter zeroed it) saves no factors, and
    // factors padded by prepare_for_hotswap are saved at the adapter's own rank (A: dim 0, B: dim 1).
    const bool targets = std::find(targeted.begin(), targeted.end(), key) != targeted.end();
    const std::int64_t r = pm.saved_rank(name, key);
    for (auto [suffix, t] : layer->adapter_tensors(name)) {
      const bool is_A = suffix.rfind("lora_A", 0) == 0 || suffix.rfind("lora_embedding_A", 0) == 0;
      const bool is_B = suffix.rfind("lora_B", 0) == 0 || suffix.rfind("lora_embedding_B", 0) == 0;
      const bool factor = is_A || is_B || suffix.rfind("lora_magnitude_vector", 0) == 0;
      if (factor && !targets) continue;
      const bool bias = suffix.size() > 5 && suffix.compare(suffix.size() - 5, 5, ".bias") == 0;
      if (r > 0 && is_A && t.size(0) > r) t = t.narrow(0, 0, r);
      if (r > 0 && is_B && !bias && t.dim() > 1 && t.size(1) > r) t = t.narrow(1, 0, r);
      map.entries.emplace_back(adapter_keys::module_key(key, suffix), t);
    }
  }
  // Value-swapped modules_to_save: the copy's parameters and buffers under the module's own keys
  // (PEFT saves modules_to_save[a].state_dict() as `<m>.<param>`).
  std::vector<std::string> swapped_keys;
  for (const auto& m : pm.swapped_modules_to_save()) {
    if (!m->has(name)) continue;
    swapped_keys.push_back(m->key());
    for (const auto& [param, t] : m->tensors(name)) map.entries.emplace_back(adapter_keys::module_key(m->key(), param), t);
  }
  if (config.bias == Bias::none) return map;
  // Base biases: `<m>.base_layer.bias` for layers that carry LoRA, `<m>.bias` elsewhere.
  for (const auto& item : pm.model_ptr()->named_modules("", /*include_self=*/true)) {
    const std::string& key = item.key();
    bool inside_layer = false;
    for (const auto& [lk, l] : layers)
      inside_layer = inside_layer || (!lk.empty() && key.compare(0, lk.size() + 1, lk + ".") == 0);
    for (const auto& sk : swapped_keys)
      inside_layer = inside_layer || key == sk || key.compare(0, sk.size() + 1, sk + ".") == 0;
    if (inside_layer) continue;  // adapter containers and modules_to_save copies (saved above)
    auto it = layers.find(key);
    const bool lora = it != layers.end() && !it->second->adapter_names().empty();
    if (config.bias == Bias::lora_only && !lora) continue;
    // This adapter's modules_to_save copy already fills `<m>.bias` with its trained bias (PEFT
    // saves the copy's tensors under the module's own keys); the frozen original is not saved.
    if (!lora && it != layers.end() && it->second->has_trainable_copy(name)) continue;
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      if (p.key() != "bias") continue;
      map.entries.emplace_back(lora ? adapter_keys::base_layer_bias_key(key) : adapter_keys::module_key(key, "bias"),
                               p.value());
      map.optional.push_back(map.entries.back().first);
    }
  }
  return map;
}

/// Adapters other than "default" are saved to `dir/<name>/`, so the name must be one path
/// component: not empty, no '/', not "." or "..", no NUL (an absolute or ".." name would write
/// outside `dir`). ConfigError otherwise.
inline void check_adapter_dir_name(const std::string& name) {
  if (!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
      name.find('\0') == std::string::npos)
    return;
  throw ConfigError::about("save_pretrained", "adapter_name", "\"" + name + "\"",
                           "is not a plain directory name (it is saved to <dir>/<adapter_name>/)",
                           "use a name without '/', e.g. \"task_a\"");
}

}  // namespace detail

/// PEFT's get_peft_model_state_dict: on-disk key -> tensor for adapter `name` (tensors are the
/// model's own, not copies).
inline std::vector<std::pair<std::string, torch::Tensor>> get_peft_model_state_dict(
    const LoraModel& pm, const std::string& name = "default") {
  return detail::adapter_key_map(pm, name, pm.peft_config(name)).entries;
}

struct SaveOptions {
  /// auto_mapping.base_model_class written for configs without task_type (PEFT writes the Python
  /// class name; C++ has none that Python could import, so this is informational).
  std::string base_model_class = "peft_cpp_model";
  std::string parent_library = "peft_cpp";
  /// PEFT's save_embedding_layers (io/embedding_layers.hpp): also write the base weights of the
  /// input/output embeddings of a model that names them (peft::EmbeddingOwner; e.g. after
  /// resizing the vocabulary). Auto, as PEFT: nothing for a plain module.
  SaveEmbeddingLayers save_embedding_layers = SaveEmbeddingLayers::Auto;
  /// PEFT's path_initial_model_for_weight_conversion: a directory with the adapter as saved right
  /// after creation (PiSSA/OLoRA/CorDA). When set, every saved adapter is converted to a plain
  /// LoRA for the original base (io/init_conversion.hpp: rank 2r, alpha 2 alpha, init true).
  std::filesystem::path path_initial_model_for_weight_conversion;
};

/// Write adapters like PeftModel.save_pretrained: `selected_adapters` (default: all; unknown
/// names are an Error before anything is written), `default` into `dir`, every other adapter X
/// into `dir/X/` (X must be a plain directory name: no '/', not ".." — ConfigError before anything
/// is written); `inference_mode` is written as true. Every file is written atomically
/// (safetensors always: PEFT's safe_serialization=True).
inline void save_pretrained(const LoraModel& pm, const std::filesystem::path& dir,
                            std::vector<std::string> selected_adapters = {}, const SaveOptions& options = {}) {
  auto& names = selected_adapters;
  if (names.empty()) names = pm.adapter_names();
  for (const auto& name : names) {
    pm.peft_config(name);
    if (name != "default") detail::check_adapter_dir_name(name);
  }
  // Everything is computed (and the conversion validated) before the first file is written.
  std::vector<std::tuple<std::filesystem::path, LoraConfig, std::vector<std::pair<std::string, torch::Tensor>>>> todo;
  const auto& initial_dir = options.path_initial_model_for_weight_conversion;
  std::optional<SafetensorsFile> initial;
  if (!initial_dir.empty()) initial = load_safetensors(initial_dir / kAdapterWeightsFile);
  for (const auto& name : names) {
    LoraConfig cfg = pm.peft_config(name);
    cfg.inference_mode = true;
    if (!cfg.task_type) {
      JsonValue mapping = JsonValue::object();
      mapping.set("base_model_class", options.base_model_class);
      mapping.set("parent_library", options.parent_library);
      cfg.auto_mapping = mapping;
    }
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& [key, t] : get_peft_model_state_dict(pm, name)) tensors.emplace_back(key, t.detach());
    bool targeted = false;
    if (detail::resolve_save_embedding_layers(options.save_embedding_layers, cfg, *pm.model_ptr(), targeted))
      for (const auto& [key, t] : detail::embedding_layer_tensors(*pm.model_ptr(), targeted))
        if (std::none_of(tensors.begin(), tensors.end(), [&](const auto& e) { return e.first == key; }))
          tensors.emplace_back(key, t.detach());
    if (initial) {
      cfg = converted_lora_config(cfg);
      tensors = convert_mutated_to_lora(tensors, *initial, (initial_dir / kAdapterWeightsFile).string());
    }
    todo.emplace_back(name == "default" ? dir : dir / name, std::move(cfg), std::move(tensors));
  }
  // Crash safety (README "Crash safety"): each file is replaced atomically, weights first. Two
  // files cannot be replaced in one step, so a kill between the two renames leaves the new
  // weights beside the previous config; an unchanged config is therefore not rewritten (repeated
  // checkpoints of one adapter can never tear), and a changed one that tears fails to load with
  // a shape error when r or the targets changed.
  for (const auto& [out, cfg, tensors] : todo) {
    save_safetensors(out / kAdapterWeightsFile, tensors, {{"format", "pt"}});
    std::error_code ec;
    const auto config_path = out / kAdapterConfigFile;
    bool same = false;
    if (std::filesystem::is_regular_file(config_path, ec)) {
      try {
        same = read_text_file(config_path) == to_json(cfg);
      } catch (const Error&) {
        same = false;
      }
    }
    if (!same) save_adapter_config(cfg, out);
  }
}

/// How load_adapter treats an adapter whose init rewrote the base weights (pissa,
/// pissa_niter_N, olora, corda): its A and B were trained on the *residual* base.
enum class BaseRewriteLoad {
  /// Default: ConfigError asking the caller to choose one of the two below, because either one
  /// silently gives wrong outputs when used on the wrong base weights.
  Refuse,
  /// PEFT's behaviour: the model holds the *original* base; the init is re-run (rewriting every
  /// targeted base weight to the residual), then A and B are overwritten from the file.
  /// Deterministic for pissa/olora; pissa_niter_N needs the same torch::manual_seed (and RNG
  /// stream) as when the adapter was created; corda needs preprocess_corda first.
  AsSaved,
  /// The model already holds the residual base (e.g. saved after creating the adapter):
  /// the adapter is created with init_lora_weights = true (PEFT's recommended recipe), so the
  /// base is left alone; the config then says true, like PEFT's after that recipe.
  ResidualBase,
};

struct LoadOptions {
  bool is_trainable = false;  ///< loaded adapters are frozen unless true
  BaseRewriteLoad base_rewrite = BaseRewriteLoad::Refuse;
  /// NaN or infinite values in the file are a SerializationError naming the tensor unless true
  /// (PEFT loads them; merging them later corrupts the base silently).
  bool allow_non_finite = false;
};

namespace detail {
/// The rank the file's factors can hold: no lora_A has more rows than its largest dimension, so
/// a config asking for more (r 8,000,000 in a 427-byte file) is refused before anything is
/// allocated. ConfigError naming r or the rank_pattern entry.
inline void check_ranks_fit_file(const LoraConfig& cfg, const SafetensorsFile& file, const std::string& where) {
  std::int64_t largest = 0;
  bool factors = false;
  for (const auto& [key, t] : file.tensors)
    if (key.find("lora_A") != std::string::npos || key.find("lora_embedding_A") != std::string::npos) {
      factors = true;
      for (auto d : t.sizes()) largest = std::max<std::int64_t>(largest, d);
    }
  if (!factors) return;
  auto check = [&](const std::string& field, std::int64_t r) {
    if (r > largest)
      throw ConfigError::about(where, field, std::to_string(r),
                               "larger than every dimension of the file's lora_A tensors (at most " +
                                   std::to_string(largest) + ")",
                               "the config does not belong to these weights");
  };
  check("r", cfg.r);
  for (const auto& [pattern, r] : cfg.rank_pattern) check("rank_pattern." + pattern, r);
}

/// SerializationError naming the first tensor of `file` holding NaN or an infinity.
inline void check_finite(const SafetensorsFile& file, const std::string& where) {
  for (const auto& [key, t] : file.tensors)
    if (torch::isFloatingType(t.scalar_type()) && t.numel() > 0 && !torch::isfinite(t).all().item<bool>())
      throw SerializationError(where + ": tensor `" + key +
                               "` holds NaN or infinite values (hint: a diverged run; LoadOptions::allow_non_finite "
                               "loads it anyway)");
}

/// Every parameter's requires_grad flag, which adding (and deleting) an adapter resets, to put
/// back after a failed load.
struct RequiresGradSnapshot {
  explicit RequiresGradSnapshot(torch::nn::Module& model) {
    for (auto& p : model.parameters()) flags.emplace_back(p, p.requires_grad());
  }
  void restore() const {
    for (const auto& [p, on] : flags) const_cast<torch::Tensor&>(p).set_requires_grad(on);
  }
  std::vector<std::pair<torch::Tensor, bool>> flags;
};
}  // namespace detail

/// Load adapter `name` from a PEFT adapter directory into `pm` (PEFT's load_adapter). The config
/// and every tensor are checked against the model (strict: missing and unexpected keys are
/// errors, listed by name); on error the model is left as it was (base weights rewritten by an
/// AsSaved init are restored). Adapters whose init rewrote the base (pissa, pissa_niter_N,
/// olora, corda) need an explicit `options.base_rewrite` (BaseRewriteLoad; README "Inits that
/// rewrite the base"); an adapter saved converted (init true) needs nothing.
inline void load_adapter(LoraModel& pm, const std::filesystem::path& dir, const std::string& name,
                         const LoadOptions& options) {
  LoraConfig cfg = load_adapter_config(dir);
  cfg.inference_mode = !options.is_trainable;
  // AsSaved: the targeted base weights (and CorDA eigens) as they were, to restore on failure.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_weights;
  std::vector<std::pair<LoraLayer*, std::optional<CordaEigens>>> saved_eigens;
  switch (cfg.init_method()) {
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Corda:
      if (options.base_rewrite == BaseRewriteLoad::Refuse)
        throw ConfigError("init_lora_weights", "\"" + cfg.init_lora_weights.name() + "\"",
                          "this adapter was trained on a base rewritten by its init; peft-cpp does not guess "
                          "whether the model holds the original or the residual weights",
                          "pass LoadOptions{.base_rewrite = BaseRewriteLoad::AsSaved} for the original base "
                          "(PEFT's behaviour: the init is re-run) or BaseRewriteLoad::ResidualBase when the model "
                          "already holds the residual weights; or save the adapter converted to plain LoRA");
      if (options.base_rewrite == BaseRewriteLoad::ResidualBase) {
        cfg.init_lora_weights = true;
      } else {
        LoraConfig planned = cfg;
        ScopedWarningCapture quiet;  // add_adapter below validates (and warns) for real
        planned.validate();
        ModuleTree tree(pm.model_ptr());
        torch::NoGradGuard no_grad;
        for (const auto& l : plan_targets(planned, tree.infos, pm.options().plan).layers) {
          auto module = tree.find(l.key);
          if (auto* layer = dynamic_cast<LoraLayer*>(module.get())) {
            saved_weights.emplace_back(layer->base_weight(), layer->base_weight().clone());
            saved_eigens.emplace_back(layer, layer->corda_eigens());
          } else if (auto* stock = dynamic_cast<torch::nn::LinearImpl*>(module.get())) {
            saved_weights.emplace_back(stock->weight, stock->weight.clone());
          }
        }
      }
      break;
    case InitMethod::Default:
    case InitMethod::Random:
    case InitMethod::Gaussian:
    case InitMethod::Orthogonal:
    case InitMethod::Eva: break;  // created with B = 0 like PEFT, then A and B come from the file
    default:
      cfg.init_lora_weights = true;  // eva/loftq/...: the file holds the trained A and B
  }
  const auto file = load_safetensors(dir / kAdapterWeightsFile);
  const std::string where = (dir / kAdapterWeightsFile).string();
  for (const auto& [key, t] : file.tensors)
    if (!torch::isFloatingType(t.scalar_type()))
      throw SerializationError(where + ": tensor `" + key + "` has a non-floating dtype");
  detail::check_ranks_fit_file(cfg, file, (dir / kAdapterConfigFile).string());
  if (!options.allow_non_finite) detail::check_finite(file, where);

  // Inject, then check every key and shape against the injected layers; on any failure the
  // adapter is deleted again and the module tree, requires_grad flags and base weights are put
  // back: nothing of the failed adapter stays registered.
  const detail::RequiresGradSnapshot flags_before(pm.model());
  detail::AdapterKeyMap targets;
  try {
    pm.add_adapter(name, cfg);
    targets = detail::adapter_key_map(pm, name, cfg);
    // Embedding base weights saved with save_embedding_layers load into the base model (PEFT
    // loads them as base-model keys); a plain module's are found by PEFT's usual names.
    for (auto& [key, t] : detail::embedding_layer_tensors(pm.model(), false, /*by_name=*/true))
      if (!targets.find(key)) {
        targets.entries.emplace_back(key, t);
        targets.optional.push_back(key);
      }
    std::vector<std::string> missing, unexpected;
    for (const auto& [key, t] : targets.entries)
      if (!file.find(key) &&
          std::find(targets.optional.begin(), targets.optional.end(), key) == targets.optional.end())
        missing.push_back(key);
    for (const auto& [key, t] : file.tensors) {
      const torch::Tensor* want = targets.find(key);
      if (!want) {
        unexpected.push_back(key);
        continue;
      }
      if (want->sizes() != t.sizes())
        throw SerializationError(where + ": `" + key + "` has shape " + detail::shape_string(t.sizes()) +
                                 " but the model needs " + detail::shape_string(want->sizes()) +
                                 " (is this adapter for another base model?)");
    }
    if (!missing.empty() || !unexpected.empty()) {
      auto list = [](const std::vector<std::string>& keys) { return " " + detail::abbreviated_list(keys, 8, " ") + "."; };
      std::string msg = where + ": adapter does not fit the model.";
      if (!missing.empty()) msg += " Missing keys:" + list(missing);
      if (!unexpected.empty()) msg += " Unexpected keys:" + list(unexpected);
      throw SerializationError(msg);
    }
  } catch (...) {
    const auto names = pm.adapter_names();
    if (std::find(names.begin(), names.end(), name) != names.end()) pm.undo_add_adapter(name);
    flags_before.restore();
    torch::NoGradGuard no_grad;
    for (auto& [w, copy] : saved_weights) w.copy_(copy);
    for (auto& [layer, e] : saved_eigens) layer->set_corda_eigens(e);
    throw;
  }
  torch::NoGradGuard no_grad;
  for (const auto& [key, dst] : targets.entries)
    if (const torch::Tensor* src = file.find(key)) const_cast<torch::Tensor&>(dst).copy_(*src);
}

/// load_adapter with only `is_trainable` (base-rewriting inits are refused, see LoadOptions).
inline void load_adapter(LoraModel& pm, const std::filesystem::path& dir, const std::string& name,
                         bool is_trainable = false) {
  LoadOptions o;
  o.is_trainable = is_trainable;
  load_adapter(pm, dir, name, o);
}

/// PEFT's PeftModel.from_pretrained: a LoraModel over `model` with adapter `name` loaded from
/// `dir` and active. Frozen unless `is_trainable`.
inline LoraModel from_pretrained(std::shared_ptr<torch::nn::Module> model, const std::filesystem::path& dir,
                                 const std::string& name = "default", bool is_trainable = false,
                                 LoraModelOptions options = {}) {
  LoraModel pm(std::move(model), std::move(options));
  load_adapter(pm, dir, name, is_trainable);
  pm.set_adapter(name);
  return pm;
}
/// from_pretrained for a module holder (`MyNet net; peft::from_pretrained(net, dir)`), like get_peft_model.
template <class Impl>
LoraModel from_pretrained(const torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& dir,
                          const std::string& name = "default", bool is_trainable = false, LoraModelOptions options = {}) {
  return from_pretrained(std::shared_ptr<torch::nn::Module>(model.ptr()), dir, name, is_trainable, std::move(options));
}
/// from_pretrained with LoadOptions (e.g. BaseRewriteLoad for PiSSA/OLoRA/CorDA adapters).
inline LoraModel from_pretrained(std::shared_ptr<torch::nn::Module> model, const std::filesystem::path& dir,
                                 const std::string& name, const LoadOptions& load, LoraModelOptions options = {}) {
  LoraModel pm(std::move(model), std::move(options));
  load_adapter(pm, dir, name, load);
  pm.set_adapter(name);
  return pm;
}

template <class Impl>
LoraModel from_pretrained(const torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& dir,
                          const std::string& name, const LoadOptions& load, LoraModelOptions options = {}) {
  return from_pretrained(std::shared_ptr<torch::nn::Module>(model.ptr()), dir, name, load, std::move(options));
}

}  // namespace peft
