// Model cases of tests/fixtures/peft (and peft-layers, whose extra checks are in
// conformance_layers.cpp): build the catalogue model, load the base weights, and
// compare with what Python PEFT computed: injection from the case's LoraConfig (targeted modules,
// per-layer r/alpha/scaling, parameter counts, the print_trainable_parameters line, the random
// init tensors drawn after torch.manual_seed), then the saved adapters loaded from adapter/
// (outputs with adapters active, disabled, merged, and the merged state dict).

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <sstream>

#include "peft/error.hpp"
#include "peft/init/corda_preprocess.hpp"
#include "peft/config/config_json.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/tuner/weighted_adapter.hpp"
#include "peft/warnings.hpp"
#include "support/catalogue_models.hpp"
#include "support/conformance.hpp"
#include "support/conformance_eva.hpp"
#include "support/conformance_layers.hpp"
#include "support/fixtures.hpp"
#include "support/tensor_diff.hpp"

namespace peft_test {
namespace {

namespace fs = std::filesystem;
using peft::JsonValue;

/// A scratch directory of this process: peft_conformance and the unit tests run the same cases
/// concurrently under `ctest -j`, so a shared name would let one delete the other's files.
fs::path process_temp_dir(const std::string& name) {
  return fs::temp_directory_path() / (name + "." + std::to_string(static_cast<long>(::getpid())));
}

struct Mismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const JsonValue& get(const JsonValue& o, const char* key) {
  static const JsonValue null;
  const JsonValue* v = o.find(key);
  return v ? *v : null;
}

/// Same shape and |ours - want| <= atol everywhere, compared in float32.
void expect_close(const std::string& what, const torch::Tensor& ours, const torch::Tensor& want, double atol) {
  const TensorDiff d = compare_close(ours.to(torch::kFloat32), want.to(torch::kFloat32), 0.0, atol);
  if (!d.ok) throw Mismatch(what + ": " + d.message);
}

/// Copy a state dict into the model's parameters; the key sets must be equal.
void load_state(torch::nn::Module& m, const peft::SafetensorsFile& f) {
  torch::NoGradGuard g;
  auto params = m.named_parameters();
  for (const auto& [key, t] : f.tensors) {
    auto* p = params.find(key);
    if (!p) throw Mismatch("base_model.safetensors has `" + key + "`, the model has no such parameter");
    if (p->sizes() != t.sizes()) throw Mismatch("shape mismatch for `" + key + "`");
    p->copy_(t);
  }
  if (params.size() != f.tensors.size()) throw Mismatch("the model has parameters the file lacks");
}

bool supported_config(const peft::LoraConfig& c, std::string* why) {
  switch (c.init_method()) {
    case peft::InitMethod::Default:
    case peft::InitMethod::Random:
    case peft::InitMethod::Gaussian:
    case peft::InitMethod::Orthogonal:
    case peft::InitMethod::Eva: return true;
    case peft::InitMethod::Pissa:
    case peft::InitMethod::PissaNiter:
    case peft::InitMethod::Olora:
    case peft::InitMethod::Corda: return true;
    default: return (*why = "init_lora_weights=" + c.init_lora_weights.describe() + " is not built yet"), false;
  }
}

double atol_for(const JsonValue& checks, const std::string& key, double dflt) {
  if (!checks.is_array()) return dflt;
  for (const auto& c : checks.as_array())
    if (get(c, "key").is_string() && get(c, "key").as_string() == key && get(c, "atol").is_number())
      return get(c, "atol").as_double();
  return dflt;
}

std::vector<std::string> strings(const JsonValue& v) {
  std::vector<std::string> out;
  if (v.is_array())
    for (const auto& e : v.as_array()) out.push_back(e.as_string());
  return out;
}

/// add_weighted_adapter (case.json `weighted_adapters`): the source adapters (non-null
/// lora_config) loaded into a fresh model, every combination recomputed after the generator's
/// torch::manual_seed, then compared with what PEFT saved and computed.
void check_weighted(const fs::path& dir, const JsonValue& c, const peft::SafetensorsFile& expected,
                    const torch::Tensor& input, bool bf16, double atol_default) {
  const JsonValue& calls = get(c, "weighted_adapters");
  if (!calls.is_array() || calls.as_array().empty()) return;
  CatalogueModel model = build_catalogue_model(get(c, "model").as_string(), get(c, "model_dims"));
  if (bf16) model.module->to(torch::kBFloat16);
  model.module->eval();
  load_state(*model.module, peft::load_safetensors(dir / "base_model.safetensors"));
  peft::LoraModel pm(model.module, peft::LoraModelOptions{});
  for (const auto& a : get(c, "adapters").as_array())
    if (!get(a, "lora_config").is_null())
      peft::load_adapter(pm, dir / get(a, "dir").as_string(), get(a, "name").as_string());
  const JsonValue& checks = get(c, "checks");
  for (const auto& call : calls.as_array()) {
    const std::string name = get(call, "name").as_string();
    peft::WeightedAdapterOptions o;
    o.combination_type = peft::parse_combination_type(get(call, "combination_type").as_string());
    if (get(call, "density").is_number()) o.density = get(call, "density").as_double();
    if (get(call, "svd_rank").is_number()) o.svd_rank = get(call, "svd_rank").as_int();
    if (get(call, "svd_clamp").is_number()) o.svd_clamp = get(call, "svd_clamp").as_double();
    if (get(call, "majority_sign_method").is_string())
      o.majority_sign_method = peft::merge::parse_majority_sign_method(get(call, "majority_sign_method").as_string());
    if (get(call, "svd_full_matrices").is_bool()) o.svd_full_matrices = get(call, "svd_full_matrices").as_bool();
    std::vector<double> weights;
    for (const auto& w : get(call, "weights").as_array()) weights.push_back(w.as_double());
    torch::manual_seed(static_cast<std::uint64_t>(get(call, "torch_manual_seed").as_int()));
    peft::add_weighted_adapter(pm, strings(get(call, "adapters")), weights, name, o);
    const std::string what = "weighted " + name + ": ";
    // Factors: deterministic types (dare_* too: the Bernoulli masks come from the same generator
    // state, so they match PEFT's bit for bit). svd factors have arbitrary signs: compare deltas.
    const fs::path saved = dir / "adapter" / name;
    const bool svd = peft::is_svd_combination(o.combination_type) && get(call, "adapters").as_array().size() > 1;
    const auto theirs_w = peft::load_safetensors(saved / peft::kAdapterWeightsFile);
    std::size_t compared = 0;
    const JsonValue& layer_info = get(get(c, "layers"), name.c_str());
    for (auto& [key, layer] : pm.lora_layers()) {
      if (!layer->has_adapter(name)) continue;
      ++compared;
      if (const JsonValue* info = layer_info.find(key)) {
        const auto& s = layer->settings(name);
        if (s.r != get(*info, "r").as_int() || s.lora_alpha.value != get(*info, "lora_alpha").as_double() ||
            s.scaling != get(*info, "scaling").as_double())
          throw Mismatch(what + "layer settings of " + key + " differ");
      }
      if (svd) {
        const torch::Tensor* d = expected.find("weighted." + name + "." + key + ".delta");
        if (!d) throw Mismatch(what + "expected.safetensors lacks weighted." + name + "." + key + ".delta");
        expect_close(what + key + " delta", layer->delta_weight(name), *d, atol_for(checks, "weighted.<adapter>.<module>.delta", 1e-4));
        continue;
      }
      for (const char* f : {"lora_A", "lora_B"}) {
        const std::string k = "base_model.model." + key + "." + f + ".weight";
        const torch::Tensor* t = theirs_w.find(k);
        if (!t) throw Mismatch(what + "adapter/" + name + " lacks `" + k + "`");
        auto& mine = std::string(f) == "lora_A" ? layer->lora_A(name)->weight : layer->lora_B(name)->weight;
        expect_close(what + k, mine, *t, atol_for(checks, "adapter/<adapter>/adapter_model.safetensors", 1e-5));
      }
    }
    std::size_t saved_layers = 0;
    for (const auto& [key, t] : theirs_w.tensors)
      saved_layers += key.size() > 14 && key.compare(key.size() - 14, 14, ".lora_A.weight") == 0 ? 1 : 0;
    if (compared != saved_layers)
      throw Mismatch(what + std::to_string(compared) + " layers vs " + std::to_string(saved_layers) + " in adapter/" + name);
    const peft::LoraConfig theirs_cfg = peft::load_adapter_config(saved);
    if (pm.peft_config(name).target_modules != theirs_cfg.target_modules)  // sets: any order
      throw Mismatch(what + "target_modules differ from adapter/" + name + "/adapter_config.json");
    auto ours_c = peft::to_json_value(pm.peft_config(name));
    auto theirs_c = peft::to_json_value(theirs_cfg);
    for (auto* cfg : {&ours_c, &theirs_c}) {
      cfg->erase("auto_mapping");
      cfg->erase("target_modules");
      cfg->erase("inference_mode");  // save_pretrained writes true
    }
    if (!(ours_c == theirs_c)) throw Mismatch(what + "config means something else than adapter/" + name + "/adapter_config.json: " + ours_c.dump() + " vs " + theirs_c.dump());
    if (const torch::Tensor* out = expected.find("out_adapter." + name)) {
      pm.set_adapter(name);
      expect_close(what + "out_adapter." + name, model.forward(input), *out, atol_for(checks, "out_adapter." + name, atol_default));
    }
  }
}

/// Factors from SVD/QR/PCA: equal up to one sign per rank component (row of A, column of B).
void expect_close_up_to_sign(const std::string& what, const torch::Tensor& A, const torch::Tensor& B,
                             const torch::Tensor& A_ref, const torch::Tensor& B_ref, double atol) {
  if (A.sizes() != A_ref.sizes() || B.sizes() != B_ref.sizes()) throw Mismatch(what + ": factor shapes differ");
  for (std::int64_t i = 0; i < A.size(0); ++i) {
    const double sign = (A[i] * A_ref[i]).sum().item<double>() < 0 ? -1.0 : 1.0;
    expect_close(what + ".lora_A[" + std::to_string(i) + "]", A[i] * sign, A_ref[i], atol);
    expect_close(what + ".lora_B[:, " + std::to_string(i) + "]", B.select(1, i) * sign, B_ref.select(1, i), atol);
  }
}

/// Feed calibration.safetensors' batch.0, batch.1, ... through the model (CorDA).
void run_calibration(const fs::path& dir, CatalogueModel& model) {
  const auto calib = peft::load_safetensors(dir / "calibration.safetensors");
  for (int i = 0;; ++i) {
    const torch::Tensor* b = calib.find("batch." + std::to_string(i));
    if (!b) break;
    model.forward(*b);
  }
}

/// Phase A checks of an init that rewrites the base (docs/conformance.md): delta and residual
/// against PEFT's, residual + delta == original, and the factors up to sign.
void check_base_rewrite_init(peft::LoraModel& pm, const peft::SafetensorsFile& expected,
                             const peft::SafetensorsFile& base, const JsonValue& checks, double floor) {
  // `floor`: a bf16 residual may round one ulp apart from PEFT's (same math, another fp32 sum order).
  auto tol = [&](const char* key) { return std::max(atol_for(checks, key, 1e-4), floor); };
  // PEFT marks pissa_niter's init as RNG-dependent (exact: false), but svd_lowrank.hpp draws the
  // same randn as torch 1.13, so after the same manual_seed we compare it as strictly as the rest.
  for (auto& [key, layer] : pm.lora_layers()) {
    if (!layer->has_adapter("default")) continue;
    const torch::Tensor* d = expected.find("init." + key + ".delta");
    const torch::Tensor* w = expected.find("init." + key + ".base_weight");
    const torch::Tensor* w0 = base.find(key + ".weight");
    if (!d || !w || !w0) throw Mismatch("expected.safetensors lacks init tensors of " + key);
    const torch::Tensor ours_d = layer->delta_weight("default");
    expect_close("residual + delta of " + key, layer->base_weight().to(torch::kFloat32) + ours_d, *w0,
                 std::max(1e-4, floor));
    expect_close("init." + key + ".delta", ours_d, *d, tol("init.<module>.delta"));
    expect_close("init." + key + ".base_weight", layer->base_weight(), *w, tol("init.<module>.base_weight"));
    const torch::Tensor* a = expected.find("init." + key + ".lora_A");
    const torch::Tensor* b = expected.find("init." + key + ".lora_B");
    if (a && b)
      expect_close_up_to_sign("init." + key, layer->lora_A("default")->weight, layer->lora_B("default")->weight, *a, *b,
                              tol("init.<module>.lora_A / lora_B"));
  }
}

/// Saved tensors of `ours` equal those of `theirs` (same keys) and the configs mean the same.
void expect_same_adapter(const std::string& what, const fs::path& ours, const fs::path& theirs, double atol,
                         bool ignore_init = false) {
  const auto a = peft::load_safetensors(ours / peft::kAdapterWeightsFile);
  const auto b = peft::load_safetensors(theirs / peft::kAdapterWeightsFile);
  if (a.tensors.size() != b.tensors.size()) throw Mismatch(what + ": different key sets");
  for (const auto& [key, t] : b.tensors) {
    const auto* mine = a.find(key);
    if (!mine) throw Mismatch(what + " lacks `" + key + "`");
    expect_close(what + " `" + key + "`", *mine, t, atol);
  }
  const auto la = peft::load_adapter_config(ours);
  const auto lb = peft::load_adapter_config(theirs);
  if (la.target_modules != lb.target_modules || la.exclude_modules != lb.exclude_modules)
    throw Mismatch(what + ": target_modules / exclude_modules differ");  // sets: order is PEFT's accident
  auto ca = peft::to_json_value(la);
  auto cb = peft::to_json_value(lb);
  for (const char* k : {"auto_mapping", "target_modules", "exclude_modules", ignore_init ? "init_lora_weights" : ""}) {
    ca.erase(k);
    cb.erase(k);
  }
  if (!(ca == cb)) throw Mismatch(what + ": adapter_config.json means something else");
}

/// Phase B of an init that rewrites the base (docs/file-format.md): the adapter loaded by the
/// three recipes (as saved, residual base, converted), each on a fresh model, plus our own
/// save-time conversion compared with adapter_converted/.
std::string check_base_rewrite_recipes(const fs::path& dir, const JsonValue& c, const peft::SafetensorsFile& base_file,
                                       const peft::SafetensorsFile& expected, const torch::Tensor& input,
                                       const std::string& resave_dir) {
  bool resaved = false;  // --resave: the first recipe that loads `adapter/` writes it back
  const JsonValue& checks = get(c, "checks");
  const bool bf16 = get(c, "dtype").is_string() && get(c, "dtype").as_string() == "bfloat16";
  const double atol = bf16 ? 3e-2 : 1e-5;
  auto want = [&](const std::string& key) -> const torch::Tensor& {
    const torch::Tensor* t = expected.find(key);
    if (!t) throw Mismatch("expected.safetensors lacks `" + key + "`");
    return *t;
  };
  const auto targeted = strings(get(get(c, "targeted_modules"), "default"));
  const fs::path scratch = process_temp_dir("peft_inits_" + dir.filename().string());
  fs::remove_all(scratch);
  enum class Recipe { AsSaved, Residual, Converted };
  for (const Recipe recipe : {Recipe::AsSaved, Recipe::Residual, Recipe::Converted}) {
    const std::string tag = recipe == Recipe::AsSaved ? "as_saved" : recipe == Recipe::Residual ? "residual_base" : "converted";
    CatalogueModel model = build_catalogue_model(get(c, "model").as_string(), get(c, "model_dims"));
    if (bf16) model.module->to(torch::kBFloat16);
    model.module->eval();
    load_state(*model.module, base_file);
    auto params = model.module->named_parameters();
    if (recipe == Recipe::Residual)
      for (const auto& key : targeted) params[key + ".weight"].copy_(want("init." + key + ".base_weight"));
    peft::LoraModel pm(model.module, peft::LoraModelOptions{});
    peft::LoadOptions o;
    o.base_rewrite = recipe == Recipe::Residual ? peft::BaseRewriteLoad::ResidualBase : peft::BaseRewriteLoad::AsSaved;
    const fs::path adir = dir / (recipe == Recipe::Converted ? "adapter_converted" : "adapter");
    // Further adapters of the case (each from its own dir, same load choice) after `default`.
    auto load_others = [&] {
      for (const auto& a : get(c, "adapters").as_array())
        if (get(a, "name").as_string() != "default")
          peft::load_adapter(pm, dir / get(a, "dir").as_string(), get(a, "name").as_string(), o);
    };
    if (recipe == Recipe::AsSaved) {
      torch::manual_seed(static_cast<std::uint64_t>(get(get(c, "seeds"), "rng").as_int()));  // pissa_niter
      const JsonValue& as = get(get(c, "reload"), "as_saved");
      if (get(as, "ok").is_bool() && !get(as, "ok").as_bool()) {
        // PEFT cannot load it this way (CorDA needs eigens): neither do we, and nothing changes.
        const torch::Tensor w0 = params[targeted.front() + ".weight"].clone();
        try {
          peft::load_adapter(pm, adir, "default", o);
        } catch (const peft::ConfigError&) {
          if (!torch::equal(params[targeted.front() + ".weight"], w0) || !pm.adapter_names().empty())
            throw Mismatch(tag + ": a failed load changed the model");
          continue;
        }
        throw Mismatch(tag + ": PEFT raises `" + get(as, "error").as_string() + "`, we loaded the adapter");
      }
    }
    peft::load_adapter(pm, adir, "default", o);
    load_others();
    const auto active = strings(get(c, "active_adapters"));
    pm.set_adapter(active);
    if (recipe != Recipe::Converted) {
      // What we save is what PEFT saved (the residual recipe's config says init true, as PEFT's does).
      fs::remove_all(scratch / "resave");
      peft::save_pretrained(pm, scratch / "resave");
      expect_same_adapter(tag + " re-saved", scratch / "resave", adir, 0.0, recipe == Recipe::Residual);
      if (!resave_dir.empty() && !resaved) {
        const fs::path out = fs::path(resave_dir) / dir.filename().string();
        fs::remove_all(out);
        peft::save_pretrained(pm, out);
        resaved = true;
      }
    }
    if (recipe == Recipe::Residual) {
      // Our save-time conversion against PEFT's, with PEFT's initial factors as the initial adapter.
      std::vector<std::pair<std::string, torch::Tensor>> init;
      for (const auto& key : targeted) {
        init.emplace_back("base_model.model." + key + ".lora_A.weight", want("init." + key + ".lora_A"));
        init.emplace_back("base_model.model." + key + ".lora_B.weight", want("init." + key + ".lora_B"));
      }
      fs::create_directories(scratch / "initial");
      peft::save_safetensors(scratch / "initial" / peft::kAdapterWeightsFile, init, {{"format", "pt"}});
      peft::save_adapter_config(peft::load_adapter_config(adir), scratch / "initial");
      peft::SaveOptions so;
      so.path_initial_model_for_weight_conversion = scratch / "initial";
      fs::remove_all(scratch / "converted");
      peft::save_pretrained(pm, scratch / "converted", {"default"}, so);
      expect_same_adapter("converted on save", scratch / "converted", dir / "adapter_converted",
                          atol_for(checks, "out_adapter", atol), true);
      if (!peft::load_adapter_config(scratch / "converted").init_lora_weights.as_bool())
        throw Mismatch("converted on save: init_lora_weights is not true");
    }
    expect_close(tag + ": out_adapter", model.forward(input), want("out_adapter"), atol_for(checks, "out_adapter", atol));
    for (const auto& [key, t] : expected.tensors) {
      if (key.rfind("out_adapter.", 0) != 0) continue;
      std::vector<std::string> names;
      std::stringstream ss(key.substr(12));
      for (std::string n; std::getline(ss, n, '+');) names.push_back(n);
      pm.set_adapter(names);
      expect_close(tag + ": " + key, model.forward(input), t, atol_for(checks, "out_adapter", atol));
    }
    pm.set_adapter(active);
    {
      auto off = pm.disable_adapter();
      const char* key = recipe == Recipe::Converted ? "out_base" : "out_disabled";
      expect_close(tag + ": " + key, model.forward(input), want(key), atol_for(checks, "out_disabled", atol));
    }
    pm.merge_and_unload();
    expect_close(tag + ": out_merged", model.forward(input), want("out_merged"), atol_for(checks, "out_merged", atol));
    const auto merged = model.module->named_parameters();
    std::size_t n = 0;
    for (const auto& [key, t] : expected.tensors) {
      if (key.rfind("merged.", 0) != 0) continue;
      ++n;
      const auto* p = merged.find(key.substr(7));
      if (!p) throw Mismatch(tag + ": merged model lacks `" + key.substr(7) + "`");
      expect_close(tag + ": " + key, *p, t, atol_for(checks, "merged.*", atol));
    }
    if (n != merged.size()) throw Mismatch(tag + ": merged state dict has a different key set");
  }
  fs::remove_all(scratch);
  return "";
}

std::string check(const fs::path& dir, const std::string& resave_dir) {
  const JsonValue c = read_json(dir / "case.json");
  const std::string model_name = get(c, "model").as_string();
  const JsonValue& dims = get(c, "model_dims");
  const bool bf16 = get(c, "dtype").is_string() && get(c, "dtype").as_string() == "bfloat16";
  const double atol_default = bf16 ? 3e-2 : 1e-5;
  const JsonValue& checks = get(c, "checks");
  const auto& adapters = get(c, "adapters").as_array();

  // Saved configs decide what we can run.
  std::vector<peft::LoraConfig> saved;
  for (const auto& a : adapters) {
    saved.push_back(peft::load_adapter_config(dir / get(a, "dir").as_string()));
    std::string why;
    if (!supported_config(saved.back(), &why)) return "SKIP:" + why;
  }

  CatalogueModel model = build_catalogue_model(model_name, dims);
  if (bf16) model.module->to(torch::kBFloat16);
  model.module->eval();
  load_state(*model.module, peft::load_safetensors(dir / "base_model.safetensors"));
  const auto input_file = peft::load_safetensors(dir / "input.safetensors");
  const torch::Tensor input = input_file.tensors.front().second;
  const auto expected = peft::load_safetensors(dir / "expected.safetensors");
  auto want = [&](const std::string& key) -> const torch::Tensor& {
    const torch::Tensor* t = expected.find(key);
    if (!t) throw Mismatch("expected.safetensors lacks `" + key + "`");
    return *t;
  };
  torch::NoGradGuard no_grad;
  expect_close("out_base", model.forward(input), want("out_base"), atol_for(checks, "out_base", atol_default));

  const auto base_file = peft::load_safetensors(dir / "base_model.safetensors");
  const bool rewrites = peft::rewrites_base_weight(saved.front().init_method());

  // Phase A: get_peft_model from the case's LoraConfig, with PEFT's RNG seed.
  {
    torch::manual_seed(static_cast<std::uint64_t>(get(get(c, "seeds"), "rng").as_int()));
    std::unique_ptr<peft::LoraModel> pm;
    for (const auto& a : adapters) {
      if (get(a, "lora_config").is_null()) continue;
      auto cfg = peft::lora_config_from_json_value(get(a, "lora_config"), peft::ConfigSource::Kwargs);
      const std::string name = get(a, "name").as_string();
      if (cfg.init_method() == peft::InitMethod::Corda)
        peft::preprocess_corda(model.module, cfg, [&] { run_calibration(dir, model); });
      if (!pm) pm = std::make_unique<peft::LoraModel>(model.module, cfg, name);
      else pm->add_adapter(name, cfg);
      // EVA (PEFT: get_peft_model, then initialize_lora_eva_weights) before the layer checks.
      if (cfg.init_method() == peft::InitMethod::Eva)
        run_eva_and_check(*pm, model.forward, dir, saved[&a - &adapters.front()], expected);
      auto ours = pm->targeted_module_names(name);
      std::sort(ours.begin(), ours.end());
      if (ours != strings(get(get(c, "targeted_modules"), name.c_str())))
        throw Mismatch("targeted modules of adapter " + name + " differ");
      for (const auto& [key, info] : get(get(c, "layers"), name.c_str()).as_object()) {
        std::shared_ptr<peft::LoraLayer> layer;
        for (auto& [k, l] : pm->lora_layers())
          if (k == key) layer = l;
        if (!layer) throw Mismatch("no LoRA layer at " + key);
        const auto& s = layer->settings(name);
        if (s.r != get(info, "r").as_int() || s.lora_alpha.value != get(info, "lora_alpha").as_double() ||
            s.scaling != get(info, "scaling").as_double() ||
            (fan_in_fan_out_applies(info) && layer->fan_in_fan_out() != get(info, "fan_in_fan_out").as_bool()))
          throw Mismatch("layer settings of " + key + " (" + name + ") differ");
      }
    }
    if (pm) check_layer_suite_injection(*pm, c);
    if (pm) {
      const auto [trainable, all] = pm->get_nb_trainable_parameters();
      if (trainable != get(c, "trainable_params").as_int() || all != get(c, "all_params").as_int())
        throw Mismatch("parameter counts " + std::to_string(trainable) + "/" + std::to_string(all) +
                       " vs PEFT " + std::to_string(get(c, "trainable_params").as_int()) + "/" +
                       std::to_string(get(c, "all_params").as_int()));
      if (pm->trainable_parameters_summary() != get(c, "print_trainable_parameters").as_string())
        throw Mismatch("print_trainable_parameters: `" + pm->trainable_parameters_summary() + "`");
      for (auto& [key, layer] : pm->lora_layers()) {
        if (!layer->has_adapter("default")) continue;
        // Linear/conv modules or an Embedding's bare lora_embedding_A/B: the factor tensors.
        if (const auto* a = expected.find("rng_init." + key + ".lora_A"))
          expect_close("rng_init." + key + ".lora_A", layer->lora_factors("default").A, *a, 1e-6);
        if (const auto* b = expected.find("rng_init." + key + ".lora_B"))
          expect_close("rng_init." + key + ".lora_B", layer->lora_factors("default").B, *b, 1e-6);
      }
      if (rewrites) check_base_rewrite_init(*pm, expected, base_file, checks, bf16 ? 3e-2 : 0.0);
      pm->unload();
    }
  }
  if (rewrites) return check_base_rewrite_recipes(dir, c, base_file, expected, input, resave_dir);

  check_weighted(dir, c, expected, input, bf16, atol_default);

  // Phase B: the adapters PEFT saved, loaded into the base model with peft::load_adapter.
  peft::LoraModel loaded(model.module, peft::LoraModelOptions{});
  auto pm = &loaded;
  for (std::size_t i = 0; i < adapters.size(); ++i)
    peft::load_adapter(loaded, dir / get(adapters[i], "dir").as_string(), get(adapters[i], "name").as_string());
  // What we save must be what PEFT saved: same keys, same tensors, same config meaning.
  const fs::path resave = resave_dir.empty() ? process_temp_dir("peft_resave_" + dir.filename().string())
                                             : fs::path(resave_dir) / dir.filename().string();
  fs::remove_all(resave);
  peft::save_pretrained(loaded, resave);
  for (const auto& a : adapters) {
    const std::string name = get(a, "name").as_string();
    const fs::path ours = name == "default" ? resave : resave / name;
    const fs::path theirs = dir / get(a, "dir").as_string();
    const auto ours_w = peft::load_safetensors(ours / peft::kAdapterWeightsFile);
    const auto theirs_w = peft::load_safetensors(theirs / peft::kAdapterWeightsFile);
    for (const auto& [key, t] : theirs_w.tensors) {
      const auto* mine = ours_w.find(key);
      if (!mine) throw Mismatch("re-saved adapter " + name + " lacks `" + key + "`");
      if (!torch::equal(*mine, t)) throw Mismatch("re-saved `" + key + "` differs");
    }
    const bool lora_only = loaded.peft_config(name).bias == peft::Bias::lora_only;
    for (const auto& [key, t] : ours_w.tensors)
      if (!theirs_w.find(key) && !(lora_only && key.size() > 16 && key.compare(key.size() - 16, 16, ".base_layer.bias") == 0))
        throw Mismatch("re-saved adapter " + name + " has extra key `" + key + "`");
    auto ours_c = peft::to_json_value(peft::load_adapter_config(ours));
    auto theirs_c = peft::to_json_value(peft::load_adapter_config(theirs));
    ours_c.erase("auto_mapping");
    theirs_c.erase("auto_mapping");
    if (!(ours_c == theirs_c)) throw Mismatch("re-saved adapter_config.json of " + name + " means something else");
  }
  if (resave_dir.empty()) fs::remove_all(resave);
  model.module->eval();
  const auto active = strings(get(c, "active_adapters"));
  pm->set_adapter(active);
  expect_close("out_adapter", model.forward(input), want("out_adapter"), atol_for(checks, "out_adapter", atol_default));
  for (const auto& [key, t] : expected.tensors) {
    if (key.rfind("out_adapter.", 0) != 0) continue;
    std::vector<std::string> names;
    std::stringstream ss(key.substr(12));
    for (std::string n; std::getline(ss, n, '+');) names.push_back(n);
    pm->set_adapter(names);
    expect_close(key, model.forward(input), t, atol_for(checks, "out_adapter", atol_default));
  }
  pm->set_adapter(active);
  {
    auto off = pm->disable_adapter();
    expect_close("out_disabled", model.forward(input), want("out_disabled"), atol_for(checks, "out_disabled", atol_default));
  }
  check_layer_suite_outputs(*pm, model, c, expected, input, atol_default);  // out_mixed, out_unmerged
  pm->merge_and_unload();
  expect_close("out_merged", model.forward(input), want("out_merged"), atol_for(checks, "out_merged", atol_default));
  std::size_t merged_keys = 0;
  const auto merged_params = model.module->named_parameters();
  for (const auto& [key, t] : expected.tensors) {
    if (key.rfind("merged.", 0) != 0) continue;
    ++merged_keys;
    const auto* p = merged_params.find(key.substr(7));
    if (!p) throw Mismatch("merged model lacks `" + key.substr(7) + "`");
    expect_close(key, *p, t, atol_for(checks, "merged.*", atol_default));
  }
  if (merged_keys != merged_params.size())
    throw Mismatch("merged state dict has a different key set");
  return "";
}

}  // namespace

CaseResult check_model_case(const std::string& case_dir, const std::string& resave_dir) {
  const fs::path dir(case_dir);
  const std::string id = dir.filename().string();
  peft::ScopedWarningCapture quiet;
  try {
    const std::string r = check(dir, resave_dir);
    if (r.rfind("SKIP:", 0) == 0) return {id, Status::Skip, r.substr(5)};
    return {id, Status::Pass, ""};
  } catch (const Mismatch& e) {
    return {id, Status::Fail, e.what()};
  } catch (const std::exception& e) {
    return {id, Status::Fail, std::string("raised: ") + e.what()};
  }
}

}  // namespace peft_test
