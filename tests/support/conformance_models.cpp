// Model cases of ../shared/fixtures/peft: build the catalogue model, load the base weights, and
// compare with what Python PEFT computed: injection from the case's LoraConfig (targeted modules,
// per-layer r/alpha/scaling, parameter counts, the print_trainable_parameters line, the random
// init tensors drawn after torch.manual_seed), then the saved adapters loaded from adapter/
// (outputs with adapters active, disabled, merged, and the merged state dict).

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "peft/error.hpp"
#include "peft/io/config_json.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/model.hpp"
#include "peft/weighted.hpp"
#include "peft/warnings.hpp"
#include "support/catalogue_models.hpp"
#include "support/conformance.hpp"
#include "support/conformance_eva.hpp"
#include "support/fixtures.hpp"

namespace peft_test {
namespace {

namespace fs = std::filesystem;
using peft::JsonValue;

struct Mismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const JsonValue& get(const JsonValue& o, const char* key) {
  static const JsonValue null;
  const JsonValue* v = o.find(key);
  return v ? *v : null;
}

/// max |a - b| over same-shaped tensors, compared in float32.
void expect_close(const std::string& what, const torch::Tensor& ours, const torch::Tensor& want, double atol) {
  if (ours.sizes() != want.sizes()) {
    std::ostringstream s;
    s << what << ": shape " << ours.sizes() << " vs expected " << want.sizes();
    throw Mismatch(s.str());
  }
  const double err = (ours.to(torch::kFloat32) - want.to(torch::kFloat32)).abs().max().item<double>();
  if (!(err <= atol)) {
    std::ostringstream s;
    s << what << ": max abs diff " << err << " > atol " << atol;
    throw Mismatch(s.str());
  }
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
    const std::string type = get(call, "combination_type").as_string();
    peft::WeightedAdapterOptions o;
    o.combination_type = type;
    if (get(call, "density").is_number()) o.density = get(call, "density").as_double();
    if (get(call, "svd_rank").is_number()) o.svd_rank = get(call, "svd_rank").as_int();
    if (get(call, "svd_clamp").is_number()) o.svd_clamp = get(call, "svd_clamp").as_double();
    if (get(call, "majority_sign_method").is_string()) o.majority_sign_method = get(call, "majority_sign_method").as_string();
    if (get(call, "svd_full_matrices").is_bool()) o.svd_full_matrices = get(call, "svd_full_matrices").as_bool();
    std::vector<double> weights;
    for (const auto& w : get(call, "weights").as_array()) weights.push_back(w.as_double());
    torch::manual_seed(static_cast<std::uint64_t>(get(call, "torch_manual_seed").as_int()));
    peft::add_weighted_adapter(pm, strings(get(call, "adapters")), weights, name, o);
    const std::string what = "weighted " + name + ": ";
    // Factors: deterministic types (dare_* too: the Bernoulli masks come from the same generator
    // state, so they match PEFT's bit for bit). svd factors have arbitrary signs: compare deltas.
    const fs::path saved = dir / "adapter" / name;
    const bool svd = type.size() >= 3 && type.compare(type.size() - 3, 3, "svd") == 0 &&
                     get(call, "adapters").as_array().size() > 1;
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

  // Phase A: get_peft_model from the case's LoraConfig, with PEFT's RNG seed.
  {
    torch::manual_seed(static_cast<std::uint64_t>(get(get(c, "seeds"), "rng").as_int()));
    std::unique_ptr<peft::LoraModel> pm;
    for (const auto& a : adapters) {
      if (get(a, "lora_config").is_null()) continue;
      auto cfg = peft::lora_config_from_json_value(get(a, "lora_config"), peft::ConfigSource::Kwargs);
      const std::string name = get(a, "name").as_string();
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
            layer->fan_in_fan_out() != get(info, "fan_in_fan_out").as_bool())
          throw Mismatch("layer settings of " + key + " (" + name + ") differ");
      }
    }
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
        if (const auto* a = expected.find("rng_init." + key + ".lora_A"))
          expect_close("rng_init." + key + ".lora_A", layer->lora_A("default")->weight, *a, 1e-6);
        if (const auto* b = expected.find("rng_init." + key + ".lora_B"))
          expect_close("rng_init." + key + ".lora_B", layer->lora_B("default")->weight, *b, 1e-6);
      }
      pm->unload();
    }
  }

  check_weighted(dir, c, expected, input, bf16, atol_default);

  // Phase B: the adapters PEFT saved, loaded into the base model with peft::load_adapter.
  peft::LoraModel loaded(model.module, peft::LoraModelOptions{});
  auto pm = &loaded;
  for (std::size_t i = 0; i < adapters.size(); ++i)
    peft::load_adapter(loaded, dir / get(adapters[i], "dir").as_string(), get(adapters[i], "name").as_string());
  // What we save must be what PEFT saved: same keys, same tensors, same config meaning.
  const fs::path resave = resave_dir.empty() ? fs::temp_directory_path() / ("peft_resave_" + dir.filename().string())
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
