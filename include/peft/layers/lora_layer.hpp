#pragma once
/// LoraLayer: everything a LoRA-capable layer does with its adapters (spec §4, §6.0, §7.1-7.3),
/// independent of the base layer's kind. peft::Linear and peft::Conv1D derive from it and only
/// say how the base layer computes.
///
///   y = base(x) + sum_{a in active} scaling_a * B_a(A_a(dropout_a(x)))      A_a: [r, in], B_a: [out, r]
///   scaling_a = alpha / r   (alpha / sqrt(r) with use_rslora)
///   DoRA adapters (use_dora) re-normalise that sum per output feature, see variants/dora.hpp.
///
/// In-memory names are PEFT's: `lora_A.<adapter>.weight`, `lora_B.<adapter>.weight`
/// (`.bias` with lora_bias), `lora_dropout.<adapter>`; the base keeps `weight`/`bias`, so a
/// layer without adapters has exactly the parameters (and cost) of the plain layer.
///
/// The forward paths are defined in layers/lora_forward.hpp and merging in layers/lora_merge.hpp
/// (both included at the end of this header).

#include <torch/nn/module.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "peft/config/lora_config.hpp"
#include "peft/detail/copyable_mutex.hpp"
#include "peft/error.hpp"
#include "peft/layers/lora_math.hpp"
#include "peft/init/base_rewrite.hpp"
#include "peft/layers/lora_dropout.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/variants/dora.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// What one adapter of one layer was created with.
struct AdapterSettings {
  std::int64_t r = 8;
  Number lora_alpha = 8;
  double scaling = 1.0;
  double lora_dropout = 0.0;
  bool use_rslora = false;
  bool lora_bias = false;
  bool use_dora = false;
  InitMethod init = InitMethod::Default;
  std::int64_t pissa_niter = 0;  ///< N of init "pissa_niter_N" (0: exact SVD)
  std::int64_t loftq_bits = 4;   ///< loftq_config.loftq_bits (init "loftq")
  std::int64_t loftq_iter = 1;   ///< loftq_config.loftq_iter
};

namespace detail {
/// PEFT's rule after deleting adapter `name`: drop it from `active`; if nothing stays active,
/// activate the alphabetically first of `remaining` (with a warning).
inline void drop_active_adapter(std::vector<std::string>& active, const std::string& name,
                                const std::vector<std::string>& remaining) {
  auto it = std::find(active.begin(), active.end(), name);
  if (it == active.end()) return;
  active.erase(it);
  if (!active.empty() || remaining.empty()) return;
  active = {*std::min_element(remaining.begin(), remaining.end())};
  warn("Adapter " + name + " was active which is now deleted. Setting active adapter to " + active.front() + ".");
}
}  // namespace detail

class LoraLayer : public torch::nn::Module {
 public:
  // ---- what the concrete layer provides ----
  /// The plain layer's output (no adapter).
  virtual torch::Tensor base_forward(const torch::Tensor& x) = 0;
  /// The base weight in its stored layout ([out, in], or [in, out] when fan_in_fan_out()).
  virtual torch::Tensor& base_weight() = 0;
  /// The base bias (undefined when the layer has none).
  virtual torch::Tensor& base_bias() = 0;
  virtual bool fan_in_fan_out() const = 0;
  virtual std::int64_t in_features() const = 0;
  virtual std::int64_t out_features() const = 0;
  /// A new layer of the same kind holding copies of the base weight and bias, no adapters.
  virtual std::shared_ptr<LoraLayer> plain_copy() const = 0;

  // ---- adapters ----
  /// Create adapter `name` (PEFT's update_layer): dropout module, lora_A = Linear(in, r, no bias),
  /// lora_B = Linear(r, out, bias=lora_bias) drawn from the global CPU generator in fp32, then the
  /// init, then cast to the base weight's device and (floating) dtype. The new adapter is inactive
  /// and frozen; call set_adapter to activate it.
  /// pissa / pissa_niter_N / olora / corda / loftq replace the base weight by the residual (spec §6.1,
  /// init/base_rewrite.hpp); corda consumes the eigens that preprocess_corda attached.
  void update_layer(const std::string& name, const AdapterSettings& s) {
    check_supported(s);
    if (has_adapter(name))
      throw ConfigError("adapter_name", "\"" + name + "\"", "this layer already has that adapter",
                        "delete it first or use another name");
    if (rewrites_base_weight(s.init))  // before any change: dtype, layout, rank, eigens
      check_base_rewrite(s.init, base_weight(), s.r, s.pissa_niter, fan_in_fan_out(),
                         corda_eigens_ ? &*corda_eigens_ : nullptr, "", s.loftq_bits, s.loftq_iter);
    ensure_containers();
    std::shared_ptr<torch::nn::Module> dropout;
    if (s.lora_dropout > 0.0)
      dropout = torch::nn::Dropout(torch::nn::DropoutOptions(s.lora_dropout)).ptr();
    else
      dropout = torch::nn::Identity().ptr();
    // Created on the CPU in fp32, like PEFT, so the RNG stream matches Python's.
    torch::nn::Linear A(torch::nn::LinearOptions(in_features(), s.r).bias(false));
    torch::nn::Linear B(torch::nn::LinearOptions(s.r, out_features()).bias(s.lora_bias));
    {
      torch::NoGradGuard no_grad;
      switch (s.init) {
        case InitMethod::Default:
          torch::nn::init::kaiming_uniform_(A->weight, std::sqrt(5.0));
          B->weight.zero_();
          if (s.lora_bias) B->bias.zero_();
          break;
        case InitMethod::Gaussian:
          A->weight.normal_(0.0, 1.0 / static_cast<double>(s.r));
          B->weight.zero_();
          if (s.lora_bias) B->bias.zero_();
          break;
        case InitMethod::Orthogonal: {
          const std::int64_t h = s.r / 2;
          auto q = std::get<0>(torch::linalg_qr(torch::randn({s.r, s.r})));
          auto q_odd = q.slice(0, 0, s.r, 2);
          auto q_even = q.slice(0, 1, s.r, 2);
          A->weight.copy_(torch::matmul(torch::randn({in_features(), h}), q_odd).t() / 10.0);
          B->weight.copy_(torch::matmul(torch::randn({h, out_features()}).t(), q_even) / 10.0);
          break;
        }
        case InitMethod::Eva:  // A keeps the constructor's values until EVA installs the PCA rows
          B->weight.zero_();
          if (s.lora_bias) B->bias.zero_();
          break;
        case InitMethod::Pissa:
        case InitMethod::PissaNiter:
        case InitMethod::Olora:
        case InitMethod::Corda:
        case InitMethod::Loftq: {  // after the constructors' draws, like PEFT (pissa_niter draws next)
          auto f = base_rewrite_init(s.init, base_weight(), s.r, s.scaling, s.pissa_niter, fan_in_fan_out(),
                                     corda_eigens_ ? &*corda_eigens_ : nullptr, s.loftq_bits, s.loftq_iter);
          A->weight.copy_(f.lora_A);
          B->weight.copy_(f.lora_B);
          base_weight().copy_(f.base_weight);  // in place: holders sharing the weight see the residual
          if (s.init == InitMethod::Corda) corda_eigens_.reset();
          break;
        }
        default: break;  // Random: keep the constructors' values
      }
    }
    const torch::Tensor& w = base_weight();
    if (torch::isFloatingType(w.scalar_type())) {
      A->to(w.device(), w.scalar_type());
      B->to(w.device(), w.scalar_type());
    } else {
      A->to(w.device());
      B->to(w.device());
    }
    lora_dropout_->update({{name, dropout}});
    lora_A_->update({{name, A.ptr()}});
    lora_B_->update({{name, B.ptr()}});
    if (s.use_dora) {  // after the init and the cast, as PEFT's dora_init
      if (!lora_magnitude_vector_)
        lora_magnitude_vector_ = register_module("lora_magnitude_vector", torch::nn::ModuleDict());
      lora_magnitude_vector_->update({{name, std::make_shared<DoraMagnitudeImpl>(dora_init_magnitude(
                                                 w, A->weight, B->weight, s.scaling, fan_in_fan_out()))}});
    }
    names_.push_back(name);
    settings_[name] = s;
    set_requires_grad(name, false);
    dropout->train(is_training());
  }

  /// Throws ConfigError for settings no layer can be created with (so injection can check the
  /// whole plan before it changes anything).
  static void check_supported(const AdapterSettings& s) {
    if (s.r <= 0)
      throw ConfigError("r", std::to_string(s.r), "`r` should be a positive integer value",
                        "use a rank >= 1");
    if (s.init == InitMethod::Orthogonal && s.r % 2 != 0)
      throw ConfigError("r", std::to_string(s.r),
                        "Orthogonal initialization requires the LoRA rank to be even", "use an even r");
    switch (s.init) {
      case InitMethod::Default:
      case InitMethod::Random:
      case InitMethod::Gaussian:
      case InitMethod::Orthogonal:
      case InitMethod::Eva: return;
      case InitMethod::Pissa:
      case InitMethod::PissaNiter:
      case InitMethod::Olora:
      case InitMethod::Corda:
      case InitMethod::Loftq: return;
      default:
        throw ConfigError("init_lora_weights", "",
                          "this initialisation is not implemented in peft-cpp yet",
                          "use true, false, \"gaussian\", \"orthogonal\", \"pissa\", \"pissa_niter_N\", "
                          "\"olora\", \"corda\" or \"loftq\"");
    }
  }

  /// fp16/bf16 adapter weights -> fp32 (PEFT's autocast_adapter_dtype=True).
  void upcast_adapter(const std::string& name) {
    require(name);
    for (auto* m : {&lora_A(name), &lora_B(name)}) {
      auto dt = (*m)->weight.scalar_type();
      if (dt == torch::kHalf || dt == torch::kBFloat16) (*m)->to(torch::kFloat32);
    }
    if (settings_[name].use_dora) {
      auto& m = lora_magnitude(name);
      if (m.scalar_type() == torch::kHalf || m.scalar_type() == torch::kBFloat16)
        magnitude_module(name).to(torch::kFloat32);
      dora_cache_.erase(name);
    }
  }

  bool has_adapter(const std::string& name) const { return settings_.count(name) != 0; }
  /// Adapters of this layer in creation order.
  const std::vector<std::string>& adapter_names() const { return names_; }
  const AdapterSettings& settings(const std::string& name) const {
    require(name);
    return settings_.at(name);
  }
  torch::nn::Linear& lora_A(const std::string& name) {
    require(name);
    return cache_holder(a_cache_, lora_A_, name, cache_mutex_);
  }
  torch::nn::Linear& lora_B(const std::string& name) {
    require(name);
    return cache_holder(b_cache_, lora_B_, name, cache_mutex_);
  }
  /// DoRA magnitude m [out] of adapter `name` (`lora_magnitude_vector.<name>.weight`).
  torch::Tensor& lora_magnitude(const std::string& name) { return magnitude_module(name).weight; }
  /// Change the scaling of an adapter (PEFT's set_scale: factor * alpha / r).
  void set_scale(const std::string& name, double factor) {
    require(name);
    auto& s = settings_[name];
    s.scaling = factor * lora_scaling(s.lora_alpha.value, s.r, s.use_rslora);
  }

  // ---- activation ----
  /// Make `names` the active adapters (summed in this order); their parameters get
  /// requires_grad = trainable, every other adapter's are frozen. Unmerges first (warning).
  void set_adapter(const std::vector<std::string>& names, bool trainable = true) {
    if (merged()) {
      warn("Adapter cannot be set when the model is merged. Unmerging the model first.");
      unmerge();
    }
    active_ = names;
    for (const auto& n : names_)
      set_requires_grad(n, trainable && std::find(names.begin(), names.end(), n) != names.end());
    for (const auto& [n, copy] : copies_)
      for (auto& p : copy->parameters())
        p.set_requires_grad(trainable && std::find(names.begin(), names.end(), n) != names.end());
  }
  const std::vector<std::string>& active_adapters() const { return active_; }
  /// Disabled: forward is the base layer's (a merged layer is unmerged first, as in PEFT).
  void enable_adapters(bool enabled) {
    disabled_ = !enabled;
    if (!disabled_) return;
    for (const auto& n : names_) set_requires_grad(n, false);
    for (const auto& [n, copy] : copies_)
      for (auto& p : copy->parameters()) p.set_requires_grad(false);
  }

  // ---- modules_to_save (PEFT's ModulesToSaveWrapper, kept inside the layer) ----
  /// Give adapter `name` a full trainable copy of this layer (`modules_to_save.<name>.weight`,
  /// `.bias`). While `name` is active, the copy replaces the layer's computation; the original
  /// weights (`weight`, `bias`) stay frozen.
  void add_trainable_copy(const std::string& name) {
    if (copies_.count(name))
      throw ConfigError("adapter_name", "\"" + name + "\"", "this layer already has a modules_to_save copy "
                        "for that adapter", "delete the adapter first");
    if (!modules_to_save_) modules_to_save_ = register_module("modules_to_save", torch::nn::ModuleDict());
    auto copy = plain_copy();
    modules_to_save_->update({{name, copy}});
    copies_[name] = copy;
    for (auto& p : copy->parameters()) p.set_requires_grad(false);
  }
  bool has_trainable_copy(const std::string& name) const { return copies_.count(name) != 0; }
  /// The modules_to_save copy of adapter `name`.
  LoraLayer& trainable_copy(const std::string& name) {
    auto it = copies_.find(name);
    if (it == copies_.end()) throw Error("this layer has no modules_to_save copy for adapter `" + name + "`");
    return *it->second;
  }
  /// True when the layer carries neither LoRA adapters nor modules_to_save copies.
  bool plain() const { return names_.empty() && copies_.empty(); }
  bool disabled() const { return disabled_; }
  /// While non-empty, forward() runs forward_mixed_batch with these per-row adapter names
  /// (set by LoraModel::mixed_batch for the duration of a call).
  void set_batch_adapters(std::vector<std::string> names) { batch_adapters_ = std::move(names); }
  /// Calibration hook (CorDA, EVA): while set, every forward first passes its input to `fn`
  /// (also with adapters disabled). Pass nullptr to remove it.
  void set_input_observer(std::function<void(const torch::Tensor&)> fn) { observer_ = std::move(fn); }
  /// CorDA eigens (PEFT's `module.eigens`): set by preprocess_corda, consumed by a "corda" update_layer.
  void set_corda_eigens(std::optional<CordaEigens> e) { corda_eigens_ = std::move(e); }
  const std::optional<CordaEigens>& corda_eigens() const { return corda_eigens_; }

  // ---- forward ----
  /// The layer's forward (the concrete layers' forward() calls this).
  torch::Tensor lora_forward(const torch::Tensor& x);

  /// Mixed-batch inference (spec §7.8): row i of x uses adapter adapter_names[i]
  /// ("__base__" = no adapter). Eval only; rounds each delta to the output dtype before adding.
  torch::Tensor forward_mixed_batch(const torch::Tensor& x, const std::vector<std::string>& adapter_names);

  // ---- merging ----
  /// PEFT's get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling, in the adapter dtype
  /// (half adapters on the CPU are multiplied in fp32).
  torch::Tensor delta_weight(const std::string& name);

  /// The base weight with adapter `name` merged into the current one (not written back), and for
  /// DoRA the weight norm unmerge needs: W + Δ, or (DoRA) f ⊙ (W + Δ) with
  /// f = m / ‖transpose(W + Δ, fifo)‖_row (spec §5.3).
  std::pair<torch::Tensor, torch::Tensor> merged_weight(const std::string& name);

  /// Throws what merge(safe_merge, names) would throw, without changing anything: a lora_bias
  /// adapter on a layer without bias, and (safe_merge) a non-finite merged weight or bias.
  void check_merge(bool safe_merge, const std::vector<std::string>& names);

  /// Fold adapters (default: the active ones) into the base weight. safe_merge checks the result
  /// for NaN/Inf before writing it (the base stays untouched on failure).
  void merge(bool safe_merge = false, std::vector<std::string> names = {});

  /// Undo merge(), last merged first.
  void unmerge();
  bool merged() const { return !merged_.empty(); }
  const std::vector<std::string>& merged_adapters() const { return merged_; }

  // ---- removal ----
  /// Remove one adapter (it must not be merged). The active list loses it; when it becomes
  /// empty the alphabetically first remaining adapter is activated (PEFT, with a warning).
  void delete_adapter(const std::string& name) {
    if (!has_adapter(name) && !has_trainable_copy(name)) require(name);
    if (std::find(merged_.begin(), merged_.end(), name) != merged_.end())
      throw Error("Cannot delete adapter `" + name + "` while it is merged (hint: unmerge first)");
    if (has_trainable_copy(name)) {
      modules_to_save_->pop(name);
      copies_.erase(name);
      if (copies_.empty()) {
        unregister_module("modules_to_save");
        modules_to_save_ = nullptr;
      }
      if (!has_adapter(name)) {
        active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
        return;
      }
    }
    if (settings_[name].use_dora) {
      lora_magnitude_vector_->pop(name);
      dora_cache_.erase(name);
      dora_merge_norms_.erase(name);
      if (lora_magnitude_vector_->size() == 0) {
        unregister_module("lora_magnitude_vector");
        lora_magnitude_vector_ = nullptr;
      }
    }
    lora_dropout_->pop(name);
    lora_A_->pop(name);
    lora_B_->pop(name);
    a_cache_.erase(name);
    b_cache_.erase(name);
    settings_.erase(name);
    names_.erase(std::find(names_.begin(), names_.end(), name));
    detail::drop_active_adapter(active_, name, names_);
    if (names_.empty()) drop_containers();
  }

  /// Remove every adapter and its containers: the layer is a plain layer again (merged
  /// weights stay merged). A modules_to_save copy of an active adapter becomes the layer's
  /// weights (PEFT replaces the wrapper by the trained copy, in merge_and_unload and unload).
  void remove_all_adapters() {
    if (!copies_.empty()) {
      torch::NoGradGuard no_grad;
      for (const auto& name : active_) {
        auto it = copies_.find(name);
        if (it == copies_.end()) continue;
        base_weight().copy_(it->second->base_weight());
        if (base_bias().defined()) base_bias().copy_(it->second->base_bias());
        break;
      }
      copies_.clear();
      unregister_module("modules_to_save");
      modules_to_save_ = nullptr;
    }
    a_cache_.clear();
    dora_cache_.clear();
    dora_merge_norms_.clear();
    if (lora_magnitude_vector_) {
      unregister_module("lora_magnitude_vector");
      lora_magnitude_vector_ = nullptr;
    }
    b_cache_.clear();
    settings_.clear();
    names_.clear();
    active_.clear();
    merged_.clear();
    disabled_ = false;
    drop_containers();
  }

 protected:
  /// Deep-copies every adapter (weights, settings, activation, merge state) into `dst`, which
  /// has the same base shape; used by the concrete layers' clone().
  void clone_adapters_into(LoraLayer& dst, const torch::optional<torch::Device>& device) const {
    for (const auto& [n, copy] : copies_) {
      dst.add_trainable_copy(n);
      auto cloned = std::dynamic_pointer_cast<LoraLayer>(copy->clone(device));
      dst.modules_to_save_->update({{n, cloned}});
      dst.copies_[n] = cloned;
    }
    dst.active_ = active_;
    dst.disabled_ = disabled_;
    if (!lora_A_) return;
    dst.ensure_containers();
    for (const auto& n : names_) {
      dst.lora_dropout_->update({{n, (*lora_dropout_.get())[n]->clone(device)}});
      dst.lora_A_->update({{n, (*lora_A_.get())[n]->clone(device)}});
      dst.lora_B_->update({{n, (*lora_B_.get())[n]->clone(device)}});
      if (settings_.at(n).use_dora) {
        if (!dst.lora_magnitude_vector_)
          dst.lora_magnitude_vector_ = dst.register_module("lora_magnitude_vector", torch::nn::ModuleDict());
        dst.lora_magnitude_vector_->update({{n, (*lora_magnitude_vector_.get())[n]->clone(device)}});
      }
    }
    dst.settings_ = settings_;
    dst.names_ = names_;
    dst.active_ = active_;
    dst.merged_ = merged_;
    for (const auto& [n, norm] : dora_merge_norms_)
      dst.dora_merge_norms_[n] = device ? norm.to(*device) : norm.clone();
    dst.disabled_ = disabled_;
  }

  void require(const std::string& name) const {
    if (!has_adapter(name))
      throw Error("this layer has no adapter `" + name + "` (it has " + std::to_string(names_.size()) +
                  ")");
  }

 private:
  struct DropoutRef {
    std::shared_ptr<torch::nn::Module> m;
    torch::Tensor forward(const torch::Tensor& x) {
      // The fused inverted dropout (layers/lora_dropout.hpp), with the module's p and mode.
      if (auto* d = m->as<torch::nn::DropoutImpl>()) return lora_dropout(x, d->options.p(), d->is_training());
      return x;
    }
  };
  DropoutRef dropout(const std::string& name) { return DropoutRef{lora_dropout_[name]}; }

  DoraMagnitudeImpl& magnitude_module(const std::string& name) {
    require(name);
    if (!settings_.at(name).use_dora || !lora_magnitude_vector_)
      throw Error("adapter `" + name + "` of this layer does not use DoRA (it has no magnitude vector)");
    return *std::dynamic_pointer_cast<DoraMagnitudeImpl>(lora_magnitude_vector_[name]);
  }

  DoraNormCache& dora_norm_cache(const std::string& name) {
    std::lock_guard<CopyableMutex> lock(cache_mutex_);
    return dora_cache_[name];
  }

  /// One DoRA adapter added to the running output `result` (spec §5.2); `h` is the input in the
  /// adapter dtype. Without active dropout the base output inside `result` is reused; with
  /// dropout (training) the base is recomputed on the dropped input, as PEFT does.
  torch::Tensor dora_forward(const std::string& name, const torch::Tensor& result, const torch::Tensor& h);

  void set_requires_grad(const std::string& name, bool on) {
    for (auto& p : lora_A_[name]->parameters()) p.set_requires_grad(on);
    for (auto& p : lora_B_[name]->parameters()) p.set_requires_grad(on);
    if (settings_[name].use_dora) lora_magnitude(name).set_requires_grad(on);
  }
  void ensure_containers() {
    if (lora_A_) return;
    lora_dropout_ = register_module("lora_dropout", torch::nn::ModuleDict());
    lora_A_ = register_module("lora_A", torch::nn::ModuleDict());
    lora_B_ = register_module("lora_B", torch::nn::ModuleDict());
  }
  void drop_containers() {
    if (!lora_A_) return;
    unregister_module("lora_dropout");
    unregister_module("lora_A");
    unregister_module("lora_B");
    lora_dropout_ = nullptr;
    lora_A_ = nullptr;
    lora_B_ = nullptr;
  }
  // Typed holders of the dict entries, so the hot path does not dynamic_cast per call. Filled
  // lazily under `cache_mutex_`, so concurrent eval forwards may fill them (map nodes are stable;
  // erasing happens only in adapter changes, which must not run concurrently with forward).
  static torch::nn::Linear& cache_holder(std::map<std::string, torch::nn::Linear>& cache,
                                         torch::nn::ModuleDict& dict, const std::string& name,
                                         CopyableMutex& mutex) {
    std::lock_guard<CopyableMutex> lock(mutex);
    auto it = cache.find(name);
    if (it == cache.end())
      it = cache.emplace(name, torch::nn::Linear(std::dynamic_pointer_cast<torch::nn::LinearImpl>(dict[name]))).first;
    return it->second;
  }

  torch::nn::ModuleDict lora_dropout_{nullptr};
  torch::nn::ModuleDict lora_A_{nullptr};
  torch::nn::ModuleDict lora_B_{nullptr};
  torch::nn::ModuleDict lora_magnitude_vector_{nullptr};  // DoRA adapters only
  std::map<std::string, DoraNormCache> dora_cache_;
  std::map<std::string, torch::Tensor> dora_merge_norms_;  // PEFT's "<name>-weight_norm" cache
  std::map<std::string, torch::nn::Linear> a_cache_, b_cache_;
  CopyableMutex cache_mutex_;  // guards lazy insertion into a_cache_, b_cache_, dora_cache_
  std::map<std::string, AdapterSettings> settings_;
  std::vector<std::string> names_;
  std::vector<std::string> active_;
  std::vector<std::string> merged_;
  bool disabled_ = false;
  std::vector<std::string> batch_adapters_;
  std::function<void(const torch::Tensor&)> observer_;
  std::optional<CordaEigens> corda_eigens_;
  torch::nn::ModuleDict modules_to_save_{nullptr};
  std::map<std::string, std::shared_ptr<LoraLayer>> copies_;
};

}  // namespace peft

#include "peft/layers/lora_forward.hpp"
#include "peft/layers/lora_merge.hpp"
