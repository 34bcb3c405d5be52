#pragma once
/// preprocess_corda (PEFT's tuners/lora/corda.py): run the user's calibration data through the
/// model, build each target layer's input covariance and attach the CorDA eigens that a later
/// `init_lora_weights = "corda"` adapter consumes (corda.hpp has the formulas).
///
///   peft::preprocess_corda(model, cfg, [&] { for (auto& b : batches) model->forward(b); });
///   auto pm = peft::get_peft_model(model, cfg);   // rewrites each target's base to the residual
///
/// Targets are planned exactly like the injection (plan_targets). They must be peft::Linear
/// layers (LibTorch has no forward hooks, so a stock torch::nn::Linear cannot be observed:
/// UnsupportedModuleError). Conv1D / fan_in_fan_out layers are rejected too (PEFT skips them here
/// and then fails at injection). Decisions: the model is put in eval mode during run_model and
/// every module's training flag is restored afterwards (PEFT leaves the model in eval mode);
/// inputs with several leading dimensions are flattened (PEFT requires batch size 1);
/// cache_file / covariance_file (torch.save pickles in PEFT) are not supported (ConfigError).
/// Nothing is attached unless every target's eigens were computed.

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "peft/init/corda.hpp"
#include "peft/tuner/injection.hpp"

namespace peft {

/// One step of preprocess_corda's progress: eigens of `module` computed (`done` of `total`).
struct CordaProgress {
  std::size_t done = 0;
  std::size_t total = 0;
  std::string module;
};

struct CordaOptions {
  PlanOptions plan;                                    ///< as given to LoraModelOptions::plan
  std::function<void(const CordaProgress&)> progress;  ///< optional (PEFT's verbose tqdm bar)
};

/// Attach CorDA eigens to every layer that `config` targets in `model`. `run_model` must feed
/// the calibration batches through `model` (its forward, any number of calls). Throws
/// ConfigError (no corda_config / cache files / bad rank), UnsupportedModuleError (target not a
/// peft::Linear), Error (a target saw no input, NaN/Inf inputs); nothing is attached then.
inline void preprocess_corda(const std::shared_ptr<torch::nn::Module>& model, const LoraConfig& config,
                             const std::function<void()>& run_model, const CordaOptions& options = {}) {
  LoraConfig cfg = config;
  {
    ScopedWarningCapture quiet;  // the caller's config already warned when it was validated
    cfg.validate();
  }
  if (!cfg.corda_config)
    throw ConfigError("corda_config", "null", "preprocess_corda needs `corda_config`",
                      "set init_lora_weights = \"corda\" (default CorDA config) or give corda_config");
  if (cfg.corda_config->cache_file || cfg.corda_config->covariance_file)
    throw ConfigError("corda_config.cache_file", "",
                      "cache_file / covariance_file (torch.save files) are not supported by peft-cpp",
                      "leave them null; keep the model with its attached eigens instead");
  if (!run_model)
    throw ConfigError("run_model", "null", "run_model must be specified to build the covariance",
                      "pass a callable that runs the model on the calibration batches");

  struct Target {
    std::string key;
    LoraLayer* layer;
    std::int64_t r;
    torch::Tensor covariance;
    std::int64_t calls = 0;
  };
  std::vector<Target> targets;
  ModuleTree tree(model);
  const TargetPlan plan = plan_targets(cfg, tree.infos, options.plan);
  for (const auto& p : plan.layers) {
    auto module = tree.find(p.key);
    auto* layer = dynamic_cast<LoraLayer*>(module.get());
    if (!layer)
      throw UnsupportedModuleError(
          "preprocess_corda: target `" + p.key + "` is a stock " + module->name() +
          "; peft-cpp observes layer inputs through peft::Linear only (LibTorch has no forward hooks). "
          "Declare it as peft::Linear (same constructor and members). Nothing was changed.");
    if (layer->fan_in_fan_out())
      throw UnsupportedModuleError("preprocess_corda: target `" + p.key +
                                   "` stores its weight [in, out] (Conv1D / fan_in_fan_out); CorDA "
                                   "supports Linear layers only. Nothing was changed.");
    if (p.settings.r > std::min(layer->in_features(), layer->out_features()))
      throw ConfigError("r", std::to_string(p.settings.r),
                        "CorDA rank of `" + p.key + "` exceeds min(in_features, out_features)",
                        "lower r (or rank_pattern) for this layer");
    targets.push_back(Target{p.key, layer, p.settings.r, torch::Tensor(), 0});
  }

  // Observe, run, and always restore observers and training flags.
  {
    std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes;
    for (const auto& m : model->modules(/*include_self=*/true)) modes.emplace_back(m, m->is_training());
    struct Restore {
      std::vector<Target>& t;
      std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>>& modes;
      ~Restore() {
        for (auto& x : t) x.layer->set_input_observer(nullptr);
        // train() recurses; parents come first in modules(), so children end with their own flag.
        for (auto& [m, training] : modes) m->train(training);
      }
    } restore{targets, modes};
    const bool keep_dtype = cfg.corda_config->use_float16_for_covariance;
    for (auto& t : targets)
      t.layer->set_input_observer([&t, keep_dtype](const torch::Tensor& x) {
        torch::Tensor term = corda_covariance_term(x, keep_dtype);
        t.covariance = t.calls == 0 ? term : t.covariance + term;
        ++t.calls;
      });
    model->eval();
    torch::NoGradGuard no_grad;
    run_model();
  }

  std::vector<CordaEigens> eigens;
  for (auto& t : targets) {
    if (t.calls == 0)
      throw Error("preprocess_corda: target `" + t.key + "` received no input while run_model ran (hint: "
                  "run_model must call the model's forward on the calibration data). Nothing was changed.");
    const torch::Tensor cov = t.covariance / static_cast<double>(t.calls);
    eigens.push_back(corda_eigens(t.layer->base_weight(), cov, t.r, cfg.corda_config->corda_method));
    if (options.progress) options.progress(CordaProgress{eigens.size(), targets.size(), t.key});
  }
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i].layer->set_corda_eigens(eigens[i]);
}

}  // namespace peft
