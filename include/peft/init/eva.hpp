#pragma once
/// EVA initialisation (init_lora_weights="eva", docs/init.md#strategies-at-a-glance; PEFT's
/// tuners/lora/eva.py):
/// data-driven lora_A = the top principal directions of each adapted layer's inputs, with the
/// ranks redistributed across layers by explained variance.
///
///   cfg.init_lora_weights = "eva";  cfg.eva_config = peft::EvaConfig{};   // rho 2, tau 0.99
///   auto pm = peft::get_peft_model(model, cfg);
///   peft::initialize_lora_eva_weights(pm, [&](peft::EvaBatch& b) {
///     if (b.index >= n_batches) return false;          // no batch b.index: data exhausted
///     model->forward(batches[b.index]);                  // set b.attention_mask first if any
///     return true;
///   });
///
/// Steps (adapters disabled, model in eval mode, no grad):
/// 1. One forward of batch 0: layers whose (prepared) inputs are identical share one PCA.
/// 2. Each PCA (IncrementalPCA, svd_lowrank with seed 42, n = round(r_layer * rho) components)
///    takes every batch until its first rank_dist components each have cosine similarity >= tau
///    with the previous batch's; batches are replayed from 0 (PEFT cycles the dataloader).
/// 3. After every batch the rank budget sum(r_layer) is spread by pooling all layers'
///    explained-variance ratios and counting the top-budget entries per layer.
/// 4. A := top-rank components (÷ sqrt(singular values) when whiten), B = 0; rank 0 removes the
///    adapter from the layer; a changed rank re-creates it (alpha *= new_rank / r with
///    adjust_scaling_factors); the config gets target_modules = covered keys (minimal suffixes
///    when >= 20), rank_pattern / alpha_pattern = the per-layer values that differ from r / alpha.
///
/// Decisions on PEFT's quirks:
/// * Per-layer r/alpha are the layer's resolved settings (rank_pattern/alpha_pattern matched on
///   the base-model key at injection); PEFT re-matches them on "base_model.model.<key>", which
///   differs only for patterns anchored with `^`.
/// * Only layers carrying this adapter are observed, and rank 0 / re-creation touch only this
///   adapter (PEFT swaps out the whole LoRA wrapper, dropping any other adapters on it).
/// * whiten divides each layer's rows once (PEFT whitens the shared PCA in place, so a layer
///   sharing another's input is divided twice).
/// * With >= 20 covered layers, layers that lost their adapter count as "other" modules when
///   target_modules is minimised (PEFT forgets them, so its suffixes may re-target them).
/// * PEFT never stops before convergence; here the feed may end (EvaOptions::cycle = false) and
///   max_steps caps the forwards. Layers that did not converge then keep their current components
///   (a warning names them).
/// * Label masks: labels are used whenever given and use_label_mask is set (PEFT's `hasattr`
///   test applies them to transformers' BatchEncoding but never to a plain dict).
/// * A re-created adapter keeps the dtype the old one had (PEFT's update_layer leaves it in the
///   base dtype, i.e. bf16 in a bf16 model).

#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peft/error.hpp"
#include "peft/init/incremental_pca.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/targeting/plan.hpp"
#include "peft/warnings.hpp"

namespace peft {

/// One calibration step, passed to the feed. The feed runs batch `index` through the user's
/// model (the LoRA layers observe their inputs) and returns true, or returns false without running
/// anything when there is no batch `index`. Before running the model it may set the masks:
/// positions where attention_mask == 0 (and, with eva_config.use_label_mask, where
/// labels == label_mask_value) are left out; layer inputs must then be [B, T, in] with the masks
/// [B, T]. Without masks, inputs are flattened to [B*T, in].
struct EvaBatch {
  std::int64_t index = 0;
  torch::Tensor attention_mask;
  torch::Tensor labels;
};
using EvaFeed = std::function<bool(EvaBatch&)>;

/// Reported after each convergence check (before the next forward).
struct EvaProgress {
  std::int64_t step = 0;              ///< forwards done so far in the PCA loop
  std::int64_t converged_layers = 0;  ///< layers whose PCA has converged
  std::int64_t layers = 0;            ///< layers observed
};

struct EvaOptions {
  std::string adapter_name = "default";
  /// Replay the batches from index 0 when the feed runs out (PEFT's itertools.cycle).
  bool cycle = true;
  /// At most this many forwards in the PCA loop (0: no limit, as in PEFT).
  std::int64_t max_steps = 1000;
  std::function<void(const EvaProgress&)> progress;
};

/// Module key -> lora_A rows [rank, in_features] (rank may be 0), in named_modules() order.
using EvaStateDict = std::vector<std::pair<std::string, torch::Tensor>>;

namespace detail {

/// Python's round() of a float: halves go to the even integer.
inline std::int64_t round_half_even(double x) {
  const double f = std::floor(x);
  const double d = x - f;
  if (d > 0.5) return static_cast<std::int64_t>(f) + 1;
  if (d < 0.5) return static_cast<std::int64_t>(f);
  const auto i = static_cast<std::int64_t>(f);
  return i % 2 == 0 ? i : i + 1;
}

/// Sets and clears the calibration observers, adapters disabled and eval mode for a scope.
class EvaScope {
 public:
  explicit EvaScope(LoraModel& pm) : pm_(pm), training_(pm.model().is_training()), off_(pm.disable_adapter()) {
    pm_.model().eval();
  }
  ~EvaScope() {
    for (auto& l : observed_) l->set_input_observer(nullptr);
    pm_.model().train(training_);
  }
  EvaScope(const EvaScope&) = delete;
  EvaScope& operator=(const EvaScope&) = delete;
  void observe(const std::shared_ptr<LoraLayer>& layer, std::function<void(const torch::Tensor&)> fn) {
    observed_.push_back(layer);
    layer->set_input_observer(std::move(fn));
  }
  void clear() {
    for (auto& l : observed_) l->set_input_observer(nullptr);
    observed_.clear();
  }

 private:
  LoraModel& pm_;
  bool training_;
  LoraModel::DisabledAdapters off_;
  std::vector<std::shared_ptr<LoraLayer>> observed_;
};

}  // namespace detail

/// PEFT's _get_rank_distribution. Entries are in PEFT's order (the layers with their own PCA,
/// then the layers sharing one); ratios[i] are the explained-variance ratios entry i competes
/// with and hook_of[i] the entry owning that PCA (i itself for an owner). The `budget` largest
/// ratios over all entries (torch.argsort, descending) are counted per entry; then a sharing
/// entry with a larger count swaps counts with its owner, whose PCA must cover the group's
/// largest rank. Returns the count per entry.
inline std::vector<std::int64_t> eva_rank_distribution(const std::vector<torch::Tensor>& ratios,
                                                       const std::vector<std::size_t>& hook_of,
                                                       std::int64_t budget) {
  if (ratios.size() != hook_of.size())
    throw Error("eva_rank_distribution: " + std::to_string(ratios.size()) + " ratio lists for " +
                std::to_string(hook_of.size()) + " owners");
  std::vector<std::size_t> owner_of_value;
  std::vector<torch::Tensor> flat;
  for (std::size_t i = 0; i < ratios.size(); ++i) {
    flat.push_back(ratios[i].reshape({-1}).to(torch::kDouble).cpu());
    owner_of_value.insert(owner_of_value.end(), static_cast<std::size_t>(flat.back().numel()), i);
  }
  std::vector<std::int64_t> counts(ratios.size(), 0);
  if (owner_of_value.empty()) return counts;
  const torch::Tensor idx = torch::argsort(torch::cat(flat), static_cast<std::int64_t>(0), /*descending=*/true);
  const std::int64_t take = std::min<std::int64_t>(budget, idx.numel());
  const auto* p = idx.data_ptr<std::int64_t>();
  for (std::int64_t k = 0; k < take; ++k) ++counts[owner_of_value[static_cast<std::size_t>(p[k])]];
  for (std::size_t i = 0; i < hook_of.size(); ++i) {
    const std::size_t h = hook_of[i];
    if (h == i || counts[h] >= counts[i]) continue;
    std::swap(counts[h], counts[i]);
  }
  return counts;
}

/// PEFT's get_eva_state_dict for adapter options.adapter_name of `pm`: runs the feed (adapters
/// disabled, eval mode) until every layer's PCA converged, and returns each layer's lora_A
/// rows. The model is not changed (observers, adapter enabling and train mode are restored,
/// also when the feed throws).
inline EvaStateDict get_eva_state_dict(LoraModel& pm, const EvaFeed& feed, const EvaOptions& options = {}) {
  const std::string& name = options.adapter_name;
  const LoraConfig& cfg = pm.peft_config(name);
  if (!feed)
    throw ConfigError("init_lora_weights", "\"eva\"", "EVA needs calibration data, but no feed was given",
                      "pass a feed that runs the calibration batches through the model, or an "
                      "EvaStateDict computed earlier");
  const EvaConfig eva = cfg.eva_config.value_or(EvaConfig{});
  torch::NoGradGuard no_grad;

  struct Layer {
    std::string key;
    std::shared_ptr<LoraLayer> layer;
    std::int64_t max_components = 0;
    std::size_t owner = 0;  // layer index whose PCA this layer uses
    torch::Tensor first_input;
  };
  std::vector<Layer> layers;
  std::int64_t budget = 0;
  // PEFT's EVA skips Embedding and conv layers (UNSUPPORTED_LORA_MODULES): they keep the default
  // init (load_eva_state_dict re-initialises layers missing from the state dict).
  for (const auto& [key, layer] : pm.lora_layers())
    if (layer->has_adapter(name) && (std::string(layer->layer_type()) == "Linear" ||
                                     std::string(layer->layer_type()) == "Conv1D")) {
      layers.emplace_back();
      layers.back().key = key;
      layers.back().layer = layer;
    }
  if (layers.empty()) throw Error("EVA: no layer carries adapter `" + name + "`");

  // Unusually high rho is capped by the largest parameter dimension (PEFT's rho_threshold).
  double rho = eva.rho;
  if (rho > 1000.0) {
    std::int64_t max_dim = 0;
    for (const auto& p : pm.model().parameters())
      for (auto d : p.sizes()) max_dim = std::max<std::int64_t>(max_dim, d);
    rho = std::min(rho, static_cast<double>(max_dim / cfg.r));
  }
  for (auto& l : layers) {
    const std::int64_t r = l.layer->settings(name).r;
    l.max_components = detail::round_half_even(static_cast<double>(r) * rho);
    budget += r;
  }

  EvaBatch batch;
  auto prepare = [&](const Layer& l, const torch::Tensor& x) -> torch::Tensor {
    const bool labels = eva.use_label_mask && batch.labels.defined();
    if (!batch.attention_mask.defined() && !labels)
      return x.dim() > 2 ? x.reshape({-1, x.size(-1)}) : x;
    torch::Tensor mask = batch.attention_mask.defined() ? batch.attention_mask.to(torch::kBool)
                                                        : torch::ones(batch.labels.sizes(), torch::kBool);
    if (labels) mask = torch::logical_and(mask.to(batch.labels.device()), batch.labels.ne(eva.label_mask_value));
    if (x.dim() < 3 || mask.dim() != 2 || x.size(0) != mask.size(0) || x.size(1) != mask.size(1))
      throw Error("EVA: layer `" + l.key + "` got an input of " + std::to_string(x.dim()) +
                  " dimensions that does not start with the mask's [B, T] (hint: leave attention_mask / "
                  "labels unset for models whose layers see other shapes)");
    torch::Tensor kept = x.index({mask.to(x.device())});
    return kept.reshape({-1, x.size(-1)});
  };

  detail::EvaScope scope(pm);
  // 1. Which layers see identical inputs (PEFT hashes the first batch's prepared inputs).
  for (std::size_t i = 0; i < layers.size(); ++i)
    scope.observe(layers[i].layer, [&, i](const torch::Tensor& x) {
      if (!layers[i].first_input.defined()) layers[i].first_input = prepare(layers[i], x.detach()).clone();
    });
  batch.index = 0;
  if (!feed(batch))
    throw ConfigError("init_lora_weights", "\"eva\"", "EVA needs calibration data, but the feed has no batch 0",
                      "make the feed run at least one batch through the model");
  scope.clear();
  for (const auto& l : layers)
    if (!l.first_input.defined())
      throw Error("EVA: layer `" + l.key + "` received no input from calibration batch 0 (hint: the feed must "
                  "run the model whose layers carry the adapter)");
  std::vector<std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const torch::Tensor& x = layers[i].first_input;
    bool joined = false;
    for (auto& g : groups) {
      const torch::Tensor& y = layers[g.front()].first_input;
      if (x.sizes() == y.sizes() && x.scalar_type() == y.scalar_type() && x.device() == y.device() &&
          torch::equal(x, y)) {
        g.push_back(i);
        joined = true;
        break;
      }
    }
    if (!joined) groups.push_back({i});
  }
  for (auto& l : layers) l.first_input = torch::Tensor();
  for (const auto& g : groups) {
    std::int64_t m = 0;
    for (auto i : g) m = std::max(m, layers[i].max_components);
    for (auto i : g) {
      layers[i].max_components = m;
      layers[i].owner = g.front();
    }
  }

  // 2. One PCA per group owner.
  struct Hook {
    Hook(std::size_t l, IncrementalPCA p, torch::Tensor c) : layer(l), pca(std::move(p)), converged(std::move(c)) {}
    std::size_t layer;
    IncrementalPCA pca;
    torch::Tensor converged;       // per component: cosine similarity with the previous step >= tau
    bool attached = true;          // observing (PEFT: hook registered)
    bool converged_state = false;  // PEFT's convergence_dict entry
  };
  std::vector<Hook> hooks;
  std::vector<std::size_t> hook_of_layer(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i)
    if (layers[i].owner == i) {
      IncrementalPCAOptions o;
      o.n_components = layers[i].max_components;
      o.lowrank = true;
      o.lowrank_seed = 42;
      hooks.emplace_back(i, IncrementalPCA(o), torch::zeros({layers[i].max_components}, torch::kBool));
    }
  for (std::size_t h = 0; h < hooks.size(); ++h) hook_of_layer[hooks[h].layer] = h;
  for (std::size_t i = 0; i < layers.size(); ++i) hook_of_layer[i] = hook_of_layer[layers[i].owner];
  for (std::size_t h = 0; h < hooks.size(); ++h)
    scope.observe(layers[hooks[h].layer].layer, [&, h](const torch::Tensor& x) {
      Hook& hook = hooks[h];
      if (!hook.attached) return;
      const torch::Tensor states = prepare(layers[hook.layer], x.detach());
      if (states.size(0) < hook.pca.n_components()) return;  // PEFT skips such a batch
      torch::Tensor previous;
      if (hook.pca.fitted()) previous = hook.pca.components().clone();
      hook.pca.partial_fit(states.to(torch::kFloat));
      if (!previous.defined()) return;
      const torch::Tensor& now = hook.pca.components();
      hook.converged = torch::cosine_similarity(now, previous.to(now.scalar_type()), 1, 1e-8).ge(eva.tau).cpu();
    });

  // PEFT's layer_hook_map order: owners, then the layers sharing an owner's PCA (by group).
  std::vector<std::size_t> order;
  for (const auto& hook : hooks) order.push_back(hook.layer);
  for (const auto& g : groups)
    for (std::size_t k = 1; k < g.size(); ++k) order.push_back(g[k]);
  std::vector<std::int64_t> rank_dist;
  for (const auto& l : layers) rank_dist.push_back(l.max_components);

  std::int64_t step = 0, index = 0;
  bool all_converged = false;
  for (;;) {
    std::int64_t converged_layers = 0;
    all_converged = true;
    for (auto& hook : hooks) {
      const std::int64_t need = std::min<std::int64_t>(rank_dist[hook.layer], hook.converged.numel());
      const bool ok = hook.converged.slice(0, 0, need).all().item<bool>();
      if (!hook.converged_state && ok && hook.attached) {
        hook.attached = false;
        hook.converged_state = true;
      } else if (hook.converged_state && !ok) {
        hook.attached = true;
        hook.converged_state = false;
      }
      all_converged = all_converged && hook.converged_state;
    }
    for (std::size_t i = 0; i < layers.size(); ++i) converged_layers += hooks[hook_of_layer[i]].converged_state;
    if (options.progress)
      options.progress({step, converged_layers, static_cast<std::int64_t>(layers.size())});
    if (all_converged) break;
    if (options.max_steps > 0 && step >= options.max_steps) break;
    batch = EvaBatch{};
    batch.index = index;
    if (!feed(batch)) {
      if (!options.cycle || index == 0) break;
      index = 0;
      batch = EvaBatch{};
      if (!feed(batch)) break;
    }
    ++index;
    ++step;
    bool fitted = true;
    for (const auto& hook : hooks) fitted = fitted && hook.pca.fitted();
    if (!fitted) continue;
    // 3. Redistribute the budget.
    std::vector<torch::Tensor> ratios;
    std::vector<std::size_t> owner_entry(order.size());
    std::map<std::size_t, std::size_t> entry_of_layer;
    for (std::size_t e = 0; e < order.size(); ++e) entry_of_layer[order[e]] = e;
    for (std::size_t e = 0; e < order.size(); ++e) {
      const Layer& l = layers[order[e]];
      const auto& pca = hooks[hook_of_layer[order[e]]].pca;
      ratios.push_back(pca.explained_variance_ratio().slice(0, 0, l.max_components));
      owner_entry[e] = entry_of_layer[l.owner];
    }
    const auto counts = eva_rank_distribution(ratios, owner_entry, budget);
    for (std::size_t e = 0; e < order.size(); ++e) rank_dist[order[e]] = counts[e];
  }
  scope.clear();

  // 4. The components.
  std::vector<std::string> unconverged;
  for (const auto& hook : hooks)
    if (!hook.pca.fitted())
      throw Error("EVA: layer `" + layers[hook.layer].key + "` never received a batch with at least " +
                  std::to_string(hook.pca.n_components()) + " input rows (hint: use more or longer calibration batches, or a smaller rho)");
  EvaStateDict out;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const Hook& hook = hooks[hook_of_layer[i]];
    const std::int64_t rank = rank_dist[i];
    if (!hook.converged.slice(0, 0, std::min<std::int64_t>(rank, hook.converged.numel())).all().item<bool>())
      unconverged.push_back(layers[i].key);
    torch::Tensor u = hook.pca.components().slice(0, 0, rank).clone();
    if (eva.whiten) u = u / hook.pca.singular_values().slice(0, 0, rank).sqrt().reshape({-1, 1});
    out.emplace_back(layers[i].key, u);
  }
  if (!unconverged.empty()) {
    std::string list;
    for (const auto& k : unconverged) list += (list.empty() ? "" : ", ") + k;
    warn("EVA stopped after " + std::to_string(step) + " batches before the components of these layers converged "
         "(cosine similarity >= tau): " + list + ". Their current components are used.");
  }
  return out;
}

/// PEFT's _load_eva_state_dict: installs `state` (from get_eva_state_dict) as adapter `name`'s
/// lora_A (B = 0 from the eva layer creation) and rewrites the adapter's config. Layers of the
/// adapter missing from `state` are re-created with init True (warning). Everything is checked
/// before the model changes.
inline void load_eva_state_dict(LoraModel& pm, const EvaStateDict& state, const std::string& name = "default") {
  const LoraConfig& cfg = pm.peft_config(name);
  const EvaConfig eva = cfg.eva_config.value_or(EvaConfig{});
  enum class Action { Copy, Recreate, Reinit, Remove };
  struct Step {
    std::string key;
    std::shared_ptr<LoraLayer> layer;
    Action action;
    AdapterSettings settings;
    torch::Tensor w;
  };
  std::map<std::string, torch::Tensor> rows;
  for (const auto& [key, w] : state) {
    if (rows.count(key)) throw Error("EVA state dict lists `" + key + "` twice");
    rows[key] = w;
  }
  std::vector<Step> steps;
  std::vector<std::string> covered, missing, kept, others;
  PatternMap<std::int64_t> rank_pattern;
  PatternMap<Number> alpha_pattern;
  for (const auto& [key, layer] : pm.lora_layers()) {
    if (!layer->has_adapter(name)) continue;
    for (const auto& m : layer->merged_adapters())
      if (m == name)
        throw Error("EVA: adapter `" + name + "` is merged into `" + key + "` (hint: unmerge_adapter() first)");
    AdapterSettings s = layer->settings(name);
    const std::int64_t r = s.r;
    Number alpha = s.lora_alpha;
    std::int64_t new_rank = r;
    auto it = rows.find(key);
    if (it != rows.end()) {
      const torch::Tensor w = it->second;  // a copy: the map entry is erased below
      if (w.dim() != 2 || w.size(1) != layer->in_features() || !torch::isFloatingType(w.scalar_type()))
        throw Error("EVA state dict entry `" + key + "` must be a floating [rank, " +
                    std::to_string(layer->in_features()) + "] tensor");
      new_rank = w.size(0);
      rows.erase(it);
      if (new_rank == 0) {
        steps.push_back({key, layer, Action::Remove, s, w});
        continue;
      }
      if (new_rank != r && eva.adjust_scaling_factors)
        alpha = Number(alpha.value * (static_cast<double>(new_rank) / static_cast<double>(r)));
      Action action = Action::Copy;
      if (new_rank != r) {
        action = Action::Recreate;
        s.r = new_rank;
        s.lora_alpha = alpha;
        s.scaling = lora_scaling(alpha.value, new_rank, s.use_rslora);
        s.init = InitMethod::Eva;
        LoraLayer::check_supported(s);
      }
      steps.push_back({key, layer, action, s, w});
      covered.push_back(key);
    } else {
      s.init = InitMethod::Default;
      s.scaling = lora_scaling(alpha.value, r, s.use_rslora);
      LoraLayer::check_supported(s);
      steps.push_back({key, layer, Action::Reinit, s, torch::Tensor()});
      missing.push_back(key);
    }
    kept.push_back(key);
    if (new_rank != cfg.r) rank_pattern.set(key, new_rank);
    if (alpha != cfg.lora_alpha) alpha_pattern.set(key, alpha);
  }
  if (!rows.empty())
    throw Error("EVA state dict has `" + rows.begin()->first + "`, which carries no adapter `" + name + "`");

  std::vector<std::string> targets = covered;
  targets.insert(targets.end(), missing.begin(), missing.end());
  if (targets.size() >= 20) {
    for (const auto& item : pm.model().named_modules("", /*include_self=*/true))
      if (std::find(kept.begin(), kept.end(), item.key()) == kept.end()) others.push_back(item.key());
    targets = minimal_target_suffixes(targets, others);
  }
  LoraConfig updated = cfg;
  updated.target_modules = ModuleSpec::list(targets);
  updated.rank_pattern = rank_pattern;
  updated.alpha_pattern = alpha_pattern;

  // Mutation: only allocation can fail below.
  torch::NoGradGuard no_grad;
  {
    ScopedWarningCapture quiet;  // a layer's fallback activation while its adapter is re-created
    for (auto& st : steps) {
      if (st.action == Action::Copy) {
        st.layer->lora_A(name)->weight.copy_(st.w);
        continue;
      }
      const auto old_dtype = st.layer->lora_A(name)->weight.scalar_type();
      st.layer->delete_adapter(name);
      if (st.action == Action::Remove) continue;
      st.layer->update_layer(name, st.settings);
      if (old_dtype == torch::kFloat) st.layer->upcast_adapter(name);
      if (st.action == Action::Recreate) st.layer->lora_A(name)->weight.copy_(st.w);
    }
  }
  pm.reconfigure_adapter(name, std::move(updated), kept);
  if (!missing.empty()) {
    std::string list;
    for (const auto& k : missing) list += (list.empty() ? "" : ", ") + k;
    warn("the following layers were initialized with init_lora_weights=True because they were not found in the "
         "eva state_dict: " + list);
  }
}

/// PEFT's initialize_lora_eva_weights: get_eva_state_dict + load_eva_state_dict for
/// options.adapter_name, whose config must say init_lora_weights="eva" (any letter case), and
/// with at most one active adapter. Throws before changing anything (also when the feed throws).
inline void initialize_lora_eva_weights(LoraModel& pm, const EvaFeed& feed, const EvaOptions& options = {}) {
  const LoraConfig& cfg = pm.peft_config(options.adapter_name);
  if (pm.active_adapters().size() > 1)
    throw Error("`initialize_lora_eva_weights` currently only works with a single active adapter (" +
                std::to_string(pm.active_adapters().size()) + " are active; hint: set_adapter(\"" +
                options.adapter_name + "\") first)");
  if (cfg.init_method() != InitMethod::Eva)
    throw ConfigError("init_lora_weights", cfg.init_lora_weights.describe(),
                      "`initialize_lora_eva_weights` can only be used with `init_lora_weights='eva'`",
                      "create the adapter with init_lora_weights=\"eva\"");
  const EvaStateDict state = get_eva_state_dict(pm, feed, options);
  load_eva_state_dict(pm, state, options.adapter_name);
}

/// The same with a state dict computed earlier (PEFT's `eva_state_dict=` argument).
inline void initialize_lora_eva_weights(LoraModel& pm, const EvaStateDict& state,
                                        const std::string& adapter_name = "default") {
  const LoraConfig& cfg = pm.peft_config(adapter_name);
  if (pm.active_adapters().size() > 1)
    throw Error("`initialize_lora_eva_weights` currently only works with a single active adapter");
  if (cfg.init_method() != InitMethod::Eva)
    throw ConfigError("init_lora_weights", cfg.init_lora_weights.describe(),
                      "`initialize_lora_eva_weights` can only be used with `init_lora_weights='eva'`",
                      "create the adapter with init_lora_weights=\"eva\"");
  load_eva_state_dict(pm, state, adapter_name);
}

}  // namespace peft
