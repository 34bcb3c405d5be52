#pragma once
/// peft::LoraModel — PEFT's PeftModel/LoraModel for a torch::nn::Module tree
/// (docs/layer.md#bias-modes-and-trainability, docs/lifecycle.md#adapter-lifecycle).
/// It owns a reference to the user's model, the config of every adapter and the operations on
/// them; the user keeps calling their own model's forward.
///
///   auto model = std::make_shared<MyNet>();
///   auto peft_model = peft::get_peft_model(model, cfg);          // adapter "default", active
///   peft_model.print_trainable_parameters(std::cout);
///   torch::optim::AdamW opt(peft_model.trainable_parameters());
///   auto y = model->forward(x);                                  // now with LoRA

#include <torch/nn/module.h>

#include <iomanip>
#include <locale>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/tuner/injection.hpp"
#include "peft/tuner/model_status.hpp"
#include "peft/tuner/swapped_modules_to_save.hpp"

namespace peft {

struct LoraModelOptions {
  PlanOptions plan;                    ///< model_type / output layer for target resolution
  bool autocast_adapter_dtype = true;  ///< fp16/bf16 adapter weights are kept in fp32
  /// layer_replication: key of the ModuleList of decoder layers to replicate. Empty: PEFT's
  /// search (`(model.)*layers`, `(model.)*(bert.)?encoder.layer`, `(model.)*h`;
  /// tuner/layer_replication.hpp).
  std::string replication_layers;
};

class LoraModel {
 public:
  /// Validates `config`, injects adapter `adapter_name` and activates it. Throws (and leaves the
  /// model untouched) when the config or the plan is invalid.
  LoraModel(std::shared_ptr<torch::nn::Module> model, LoraConfig config,
            const std::string& adapter_name = "default", LoraModelOptions options = {})
      : model_(std::move(model)), options_(std::move(options)) {
    add_adapter(adapter_name, std::move(config));
    set_adapter(adapter_name);
  }

  /// A LoraModel without adapters yet (add_adapter / load_adapter add them).
  LoraModel(std::shared_ptr<torch::nn::Module> model, LoraModelOptions options)
      : model_(std::move(model)), options_(std::move(options)) {}

  torch::nn::Module& model() { return *model_; }
  const LoraModelOptions& options() const { return options_; }
  const std::shared_ptr<torch::nn::Module>& model_ptr() const { return model_; }

  // ---- adapters ----
  /// Inject another adapter (inactive, frozen). An existing name is an error; nothing changes
  /// when injection fails. Fields peft-cpp does not implement are refused (ConfigError naming
  /// the field; tuner/config_support.hpp); `layer_replication` replicates the decoder layers
  /// first (first adapter only); modules_to_save copies are made for any module type
  /// (in the layer for peft layers, value-swapped otherwise: tuner/swapped_modules_to_save.hpp).
  /// Every refused module (stale stock layers, modules_to_save that cannot be copied) is named
  /// in one UnsupportedModuleError (src/tuner/lora_model.cpp).
  void add_adapter(const std::string& name, LoraConfig config);

  /// Activate one adapter.
  void set_adapter(const std::string& name) { set_adapter(std::vector<std::string>{name}); }
  /// Activate several adapters at once (their deltas are summed in this order). Like PEFT, a
  /// module with modules_to_save copies takes at most one of them: Error "Only one adapter can be
  /// set at a time for modules_to_save ..." naming the modules, before anything changes.
  void set_adapter(const std::vector<std::string>& names) {
    for (const auto& n : names)
      if (!configs_.count(n)) throw Error("Adapter " + n + " not found (known: " + known() + ")");
    for (auto& [key, layer] : lora_layers()) layer->check_set_adapter(names);  // e.g. two token adapters
    check_one_copy_per_module(names);
    active_ = names;
    refresh_trainable();
  }
  /// Module keys where more than one of `adapters` owns a modules_to_save copy (in-layer or
  /// value-swapped), in named_modules() order.
  std::vector<std::string> modules_to_save_conflicts(const std::vector<std::string>& adapters) const;
  const std::vector<std::string>& active_adapters() const { return active_; }
  /// Adapter names in creation order.
  const std::vector<std::string>& adapter_names() const { return order_; }
  const LoraConfig& peft_config(const std::string& name = "default") const {
    auto it = configs_.find(name);
    if (it == configs_.end()) throw Error("Adapter " + name + " not found (known: " + known() + ")");
    return it->second;
  }
  /// Module keys that carry adapter `name`, in named_modules() order.
  const std::vector<std::string>& targeted_module_names(const std::string& name = "default") const {
    peft_config(name);
    return targeted_.at(name);
  }

  /// After an init that re-creates layers (EVA's rank redistribution): adapter `name` now has
  /// `config` (as it will be saved) and lives in the layers `targeted`; activation and
  /// trainability are re-applied to the re-created adapters.
  void reconfigure_adapter(const std::string& name, LoraConfig config, std::vector<std::string> targeted) {
    peft_config(name);
    configs_[name] = std::move(config);
    targeted_[name] = std::move(targeted);
    refresh_trainable();
  }

  /// Remove an adapter everywhere (it must not be merged). modules_to_save copies go too; a
  /// module whose deleted copy was live gets the values of the new active adapter's copy, or
  /// its original values.
  void delete_adapter(const std::string& name);
  /// delete_adapter, then the stock layers that adding `name` swapped for peft layers put back
  /// where nothing else uses them: the module tree as before add_adapter (load_adapter's undo).
  void undo_add_adapter(const std::string& name);

  // ---- enabling ----
  /// RAII guard returned by disable_adapter(): adapters are bypassed while it lives.
  class DisabledAdapters {
   public:
    explicit DisabledAdapters(LoraModel* m) : m_(m) { m_->disable_adapter_layers(); }
    DisabledAdapters(DisabledAdapters&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
    DisabledAdapters(const DisabledAdapters&) = delete;
    DisabledAdapters& operator=(const DisabledAdapters&) = delete;
    DisabledAdapters& operator=(DisabledAdapters&&) = delete;
    ~DisabledAdapters() {
      if (m_) m_->enable_adapter_layers();
    }

   private:
    LoraModel* m_;
  };
  /// `auto off = peft_model.disable_adapter();` — the base model's behaviour until `off` dies.
  [[nodiscard]] DisabledAdapters disable_adapter() { return DisabledAdapters(this); }
  void disable_adapter_layers() {
    disabled_ = true;
    for (auto& [key, layer] : lora_layers()) layer->enable_adapters(false);
    for (auto& m : swapped_) m->activate("", false);
  }
  /// False while adapters are disabled (disable_adapter / disable_adapter_layers).
  bool adapters_enabled() const { return !disabled_; }
  void enable_adapter_layers() {
    disabled_ = false;
    for (auto& [key, layer] : lora_layers()) layer->enable_adapters(true);
    refresh_trainable();
  }

  // ---- mixed-batch inference (docs/lifecycle.md#mixed-batch-inference) ----
  /// RAII scope from mixed_batch(): every LoRA layer routes row i of its input through adapter
  /// names[i] ("__base__" = no adapter) until the scope ends.
  class MixedBatch {
   public:
    MixedBatch(LoraModel* m, const std::vector<std::string>& names) : m_(m) {
      for (auto& [key, layer] : m_->lora_layers()) layer->set_batch_adapters(names);
    }
    MixedBatch(MixedBatch&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
    MixedBatch(const MixedBatch&) = delete;
    MixedBatch& operator=(const MixedBatch&) = delete;
    MixedBatch& operator=(MixedBatch&&) = delete;
    ~MixedBatch() {
      if (m_)
        for (auto& [key, layer] : m_->lora_layers()) layer->set_batch_adapters({});
    }

   private:
    LoraModel* m_;
  };
  /// `{ auto scope = pm.mixed_batch({"a", "b", "__base__"}); y = model->forward(x); }` — one
  /// adapter per batch row. Eval mode only; every name must exist; no adapter may be merged.
  [[nodiscard]] MixedBatch mixed_batch(const std::vector<std::string>& names) {
    if (model_->is_training())
      throw Error("Cannot pass adapter names when the model is in training mode (hint: model->eval())");
    std::vector<std::string> unknown;
    for (const auto& n : names)
      if (n != "__base__" && !configs_.count(n) &&
          std::find(unknown.begin(), unknown.end(), n) == unknown.end())
        unknown.push_back(n);
    if (!unknown.empty()) {
      std::sort(unknown.begin(), unknown.end());
      std::string list;
      for (const auto& n : unknown) list += (list.empty() ? "" : ", ") + n;
      throw Error("Trying to infer with non-existing adapter(s): " + list);
    }
    for (auto& [key, layer] : lora_layers())
      if (layer->merged())
        throw Error("Cannot use mixed-batch inference while adapters are merged (hint: unmerge_adapter())");
    for (const auto& n : names)
      if (configs_.count(n) && configs_.at(n).use_dora)
        throw Error("Cannot pass `adapter_names` when DoRA is enabled (adapter `" + n +
                    "`; hint: run one forward per adapter instead)");
    check_mixed_batch_modules_to_save(names);
    return MixedBatch(this, names);
  }

  // ---- merging ----
  /// Fold adapters (default: the active ones) into the base weights of every LoRA layer. Every
  /// layer is checked first (lora_bias needs a base bias; safe_merge: no NaN/Inf), so a failure
  /// leaves all weights as they were.
  void merge_adapter(const std::vector<std::string>& names = {}, bool safe_merge = false) {
    check_merge_allowed();
    const auto& which = names.empty() ? active_ : names;
    const auto layers = lora_layers();
    for (auto& [key, layer] : layers) {
      try {
        layer->check_merge(safe_merge, which);
      } catch (const Error& e) {  // name the layer: "NaNs detected" alone does not say where
        throw Error("layer `" + key + "`: " + e.what());
      }
    }
    for (auto& [key, layer] : layers) layer->merge(safe_merge, which);
  }
  void unmerge_adapter() {
    for (auto& [key, layer] : lora_layers())
      if (layer->merged()) layer->unmerge();
  }
  /// Merge the active adapters (or `names`) and strip every adapter: the model is a plain model
  /// again with merged weights. Returns the model; this LoraModel is empty afterwards.
  std::shared_ptr<torch::nn::Module> merge_and_unload(bool safe_merge = false,
                                                      const std::vector<std::string>& names = {}) {
    merge_adapter(names, safe_merge);
    return unload();
  }
  /// Strip every adapter without merging (layers merged earlier stay merged, as in PEFT). A
  /// modules_to_save module keeps the active adapter's copy (PEFT returns
  /// `modules_to_save[active_adapter]`), or its original values when no active adapter has one.
  /// Replicated layers stay replicated (their weights are shared).
  std::shared_ptr<torch::nn::Module> unload() {
    for (auto& [key, layer] : lora_layers()) layer->remove_all_adapters();
    for (auto& m : swapped_) m->release(copy_owner(*m));
    swapped_.clear();
    configs_.clear();
    targeted_.clear();
    order_.clear();
    active_.clear();
    saved_rank_.clear();
    for (auto& p : model_->parameters()) p.set_requires_grad(true);
    return model_;
  }

  // ---- parameters ----
  /// (trainable, all) parameter counts; shared tensors (tied weights, replicated layers) are
  /// counted once. Value-swapped modules_to_save count like PEFT's wrapper: the original plus
  /// one copy per adapter.
  std::pair<std::int64_t, std::int64_t> get_nb_trainable_parameters() const;
  /// PEFT's exact line: `trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330`.
  std::string trainable_parameters_summary() const {
    const auto [trainable, all] = get_nb_trainable_parameters();
    std::ostringstream s;
    s << "trainable params: " << with_commas(trainable) << " || all params: " << with_commas(all)
      << " || trainable%: " << std::fixed << std::setprecision(4)
      << (all == 0 ? 0.0 : 100.0 * static_cast<double>(trainable) / static_cast<double>(all));
    return s.str();
  }
  /// Writes trainable_parameters_summary() and a newline (the library never writes to stdout
  /// on its own; pass std::cout to get PEFT's behaviour).
  void print_trainable_parameters(std::ostream& os) const { os << trainable_parameters_summary() << '\n'; }
  // ---- requires_grad and status (src/tuner/model_status.cpp) ----
  /// PEFT's set_requires_grad: enable (or disable) gradients of the adapter parameters and
  /// modules_to_save copies of `adapter_names`, whether active or not. Unknown names are an
  /// Error (PEFT ignores them silently; docs/quirks.md). Later set_adapter / enable calls
  /// re-apply the usual rule (active and trainable adapters train).
  void set_requires_grad(const std::vector<std::string>& adapter_names, bool requires_grad = true);
  /// PEFT's get_layer_status(): one entry per LoRA layer and per modules_to_save module, in
  /// named_modules() order. Error when the model has none.
  std::vector<TunerLayerStatus> get_layer_status() const;
  /// PEFT's get_model_status(): the layer statuses aggregated ("irregular" where layers differ).
  TunerModelStatus get_model_status() const;

  /// The value-swapped modules_to_save modules (tuner/swapped_modules_to_save.hpp), by module key order.
  const std::vector<std::shared_ptr<SwappedModulesToSave>>& swapped_modules_to_save() const { return swapped_; }
  /// Whether layer_replication replicated this model's layers.
  bool layers_replicated() const { return replicated_; }
  /// On-disk rank of adapter `name` in layer `key` when it differs from the tensors' (after
  /// prepare_for_hotswap padded them; io/hotswap.hpp), else 0.
  std::int64_t saved_rank(const std::string& name, const std::string& key) const {
    auto a = saved_rank_.find(name);
    if (a == saved_rank_.end()) return 0;
    auto k = a->second.find(key);
    return k == a->second.end() ? 0 : k->second;
  }
  /// Used by hotswap_adapter / prepare_for_hotswap: the config and the on-disk ranks of `name`.
  void set_hotswapped(const std::string& name, LoraConfig config, std::vector<std::string> targeted,
                      std::map<std::string, std::int64_t> saved_ranks) {
    peft_config(name);
    configs_[name] = std::move(config);
    targeted_[name] = std::move(targeted);
    saved_rank_[name] = std::move(saved_ranks);
  }

  /// The parameters to optimise (requires_grad), for torch::optim.
  std::vector<torch::Tensor> trainable_parameters() const {
    std::vector<torch::Tensor> out;
    for (const auto& p : model_->parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }

  /// Every LoRA-capable layer of the model that carries at least one adapter, by module key.
  std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> lora_layers() const {
    std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> out;
    for (const auto& item : model_->named_modules("", /*include_self=*/true))
      if (auto l = std::dynamic_pointer_cast<LoraLayer>(item.value()))
        if (!l->plain()) out.emplace_back(item.key(), l);
    return out;
  }

 private:
  /// What config.modules_to_save selects: peft layers without adapters (in-layer copies) and
  /// other modules (value-swapped); `refused` gets one line per module that cannot be saved.
  struct ModulesToSaveSelection {
    std::vector<std::shared_ptr<LoraLayer>> layers;
    std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules;
    std::vector<std::string> refused;
  };
  ModulesToSaveSelection select_modules_to_save(const LoraConfig& config) const;
  void check_one_copy_per_module(const std::vector<std::string>& names) const;
  void check_mixed_batch_modules_to_save(const std::vector<std::string>& names) const;
  /// PEFT's _check_merge_allowed: refuses replicated layers; warns when a module named
  /// embed_tokens / lm_head of a model with tied embeddings (EmbeddingOwner) carries an adapter.
  void check_merge_allowed() const;
  /// The active adapter whose copy `m` computes with ("" = none; ignores disabling).
  std::string copy_owner(const SwappedModulesToSave& m) const {
    for (const auto& n : active_)
      if (m.has(n)) return n;
    return "";
  }

  static std::string with_commas(std::int64_t v) {
    std::string digits = std::to_string(v < 0 ? -v : v), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return (v < 0 ? "-" : "") + out;
  }
  std::string known() const {
    std::string s;
    for (const auto& n : order_) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? "none" : s;
  }

  /// PEFT's freezing (docs/layer.md#bias-modes-and-trainability): only adapter parameters of active
  /// adapters train (unless the
  /// adapter's config has inference_mode), plus the biases that `bias` names.
  void refresh_trainable() {
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    const auto layers = lora_layers();
    bool trainable = true;
    for (const auto& n : active_) trainable = trainable && !configs_.at(n).inference_mode;
    for (auto& [key, layer] : layers) {
      layer->set_adapter(active_, trainable && !disabled_);
      if (disabled_) layer->enable_adapters(false);
    }
    for (auto& m : swapped_) m->activate(disabled_ ? std::string() : copy_owner(*m), trainable && !disabled_);
    if (disabled_) return;
    for (const auto& n : active_) {
      const Bias bias = configs_.at(n).bias;
      if (bias == Bias::all) {
        for (auto& p : model_->named_parameters()) {
          const auto& k = p.key();
          if (k == "bias" || (k.size() > 5 && k.compare(k.size() - 5, 5, ".bias") == 0))
            p.value().set_requires_grad(true);
        }
      } else if (bias == Bias::lora_only) {
        for (auto& [key, layer] : layers)
          if (layer->base_bias().defined()) layer->base_bias().set_requires_grad(true);
      }
    }
  }

  std::shared_ptr<torch::nn::Module> model_;
  LoraModelOptions options_;
  std::map<std::string, LoraConfig> configs_;
  std::map<std::string, std::vector<std::string>> targeted_;
  std::vector<std::string> order_;
  std::vector<std::string> active_;
  bool disabled_ = false;
  std::vector<std::shared_ptr<SwappedModulesToSave>> swapped_;
  bool replicated_ = false;
  std::map<std::string, std::map<std::string, std::int64_t>> saved_rank_;
  std::map<std::string, std::vector<ReplacedChild>> replaced_;  ///< stock layers each adapter's injection swapped
};

/// PEFT's get_peft_model: inject adapter `adapter_name` into `model` and activate it.
inline LoraModel get_peft_model(std::shared_ptr<torch::nn::Module> model, const LoraConfig& config,
                                const std::string& adapter_name = "default", LoraModelOptions options = {}) {
  return LoraModel(std::move(model), config, adapter_name, std::move(options));
}
template <class Impl>
LoraModel get_peft_model(const torch::nn::ModuleHolder<Impl>& model, const LoraConfig& config,
                         const std::string& adapter_name = "default", LoraModelOptions options = {}) {
  return LoraModel(model.ptr(), config, adapter_name, std::move(options));
}

}  // namespace peft
