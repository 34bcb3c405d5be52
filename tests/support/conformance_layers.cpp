#include "support/conformance_layers.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "peft/config/config_json.hpp"
#include "peft/error.hpp"
#include "peft/layers/conv.hpp"
#include "peft/warnings.hpp"
#include "support/tensor_diff.hpp"

namespace peft_test {
namespace {

using peft::JsonValue;

const JsonValue& get(const JsonValue& o, const char* key) {
  static const JsonValue null;
  const JsonValue* v = o.is_object() ? o.find(key) : nullptr;
  return v ? *v : null;
}

[[noreturn]] void differs(const std::string& what) { throw std::runtime_error(what); }

void expect_close(const std::string& what, const torch::Tensor& ours, const torch::Tensor& want, double atol) {
  const TensorDiff d = compare_close(ours.to(torch::kFloat32), want.to(torch::kFloat32), 0.0, atol);
  if (!d.ok) differs(what + ": " + d.message);
}

double atol_of(const JsonValue& checks, const std::string& key, double dflt) {
  if (checks.is_array())
    for (const auto& c : checks.as_array())
      if (get(c, "key").is_string() && get(c, "key").as_string() == key && get(c, "atol").is_number())
        return get(c, "atol").as_double();
  return dflt;
}

std::vector<std::int64_t> ints(const JsonValue& v) {
  std::vector<std::int64_t> out;
  for (const auto& e : v.as_array()) out.push_back(e.as_int());
  return out;
}

std::string list_text(const std::vector<std::int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  return s.str() + "]";
}

/// {module: {adapter: [indices]}} of the model, as case.json / configs.json write it.
std::map<std::string, std::map<std::string, std::vector<std::int64_t>>> tokens_of(const peft::LoraModel& pm) {
  std::map<std::string, std::map<std::string, std::vector<std::int64_t>>> out;
  for (const auto& [key, layer] : pm.lora_layers())
    for (const auto& n : pm.adapter_names())
      if (layer->has_trainable_tokens(n)) out[key][n] = layer->trainable_token_indices(n);
  return out;
}

void check_tokens_wrapped(const peft::LoraModel& pm, const JsonValue& want) {
  std::map<std::string, std::map<std::string, std::vector<std::int64_t>>> expected;
  if (want.is_object())
    for (const auto& [module, per_adapter] : want.as_object())
      for (const auto& [adapter, ids] : per_adapter.as_object()) expected[module][adapter] = ints(ids);
  const auto ours = tokens_of(pm);
  if (ours == expected) return;
  std::string text;
  for (const auto& [m, per] : ours)
    for (const auto& [a, ids] : per) text += " " + m + "/" + a + "=" + list_text(ids);
  differs("trainable_tokens_wrapped differs; ours:" + (text.empty() ? std::string(" none") : text));
}

/// A conv layer's kernel_size, stride and padding as lists (nullopt for other layers).
template <std::size_t D, class Impl>
bool conv_geometry(peft::LoraLayer& layer, std::vector<std::int64_t>& k, std::vector<std::int64_t>& s,
                   std::vector<std::int64_t>& p) {
  auto* conv = dynamic_cast<Impl*>(&layer);
  if (!conv) return false;
  using std::get;
  k.assign(conv->options.kernel_size()->begin(), conv->options.kernel_size()->end());
  s.assign(conv->options.stride()->begin(), conv->options.stride()->end());
  if (conv->options.padding().index() == 0) {
    const auto& pad = get<0>(conv->options.padding());
    p.assign(pad->begin(), pad->end());
  }
  return true;
}

void check_layer_entry(const std::string& what, peft::LoraLayer& layer, const JsonValue& info) {
  if (get(info, "base_layer_type").is_string() && get(info, "base_layer_type").as_string() != layer.layer_type())
    differs(what + ": base_layer_type " + layer.layer_type() + ", PEFT " + get(info, "base_layer_type").as_string());
  if (get(info, "in_features").is_int() && (layer.in_features() != get(info, "in_features").as_int() ||
                                            layer.out_features() != get(info, "out_features").as_int()))
    differs(what + ": in/out features differ");
  if (!get(info, "kernel_size").is_array()) return;
  std::vector<std::int64_t> k, s, p;
  if (!conv_geometry<1, peft::Conv1dImpl>(layer, k, s, p) && !conv_geometry<2, peft::Conv2dImpl>(layer, k, s, p) &&
      !conv_geometry<3, peft::Conv3dImpl>(layer, k, s, p))
    differs(what + ": PEFT's layer is a convolution, ours a " + layer.layer_type());
  if (k != ints(get(info, "kernel_size")) || s != ints(get(info, "stride")) || p != ints(get(info, "padding")))
    differs(what + ": kernel_size/stride/padding " + list_text(k) + list_text(s) + list_text(p) + " differ");
}

}  // namespace

bool is_layer_suite_case(const JsonValue& case_json) {
  return case_json.is_object() &&
         (case_json.find("trainable_tokens_wrapped") || (get(case_json, "suite").is_string() &&
                                                         get(case_json, "suite").as_string() == "layers"));
}

bool fan_in_fan_out_applies(const JsonValue& layer_info) {
  const JsonValue& type = get(layer_info, "base_layer_type");
  return !type.is_string() || type.as_string() == "Linear" || type.as_string() == "Conv1D";
}

void check_layer_suite_injection(peft::LoraModel& pm, const JsonValue& c) {
  if (!is_layer_suite_case(c)) return;
  check_tokens_wrapped(pm, get(c, "trainable_tokens_wrapped"));
  std::vector<std::string> mts, want_mts;
  for (const auto& [key, layer] : pm.lora_layers())
    for (const auto& n : pm.adapter_names())
      if (layer->has_trainable_copy(n) && std::find(mts.begin(), mts.end(), key) == mts.end()) mts.push_back(key);
  for (const auto& m : get(c, "modules_to_save_wrapped").as_array()) want_mts.push_back(m.as_string());
  std::sort(mts.begin(), mts.end());
  std::sort(want_mts.begin(), want_mts.end());
  if (mts != want_mts) differs("modules_to_save_wrapped differs");
  const auto layers = pm.lora_layers();
  for (const auto& [adapter, per_module] : get(c, "layers").as_object())
    for (const auto& [key, info] : per_module.as_object()) {
      auto it = std::find_if(layers.begin(), layers.end(), [&](const auto& l) { return l.first == key; });
      if (it == layers.end()) differs("no LoRA layer at " + key);
      check_layer_entry("layer " + key + " (" + adapter + ")", *it->second, info);
    }
}

void check_layer_suite_outputs(peft::LoraModel& pm, CatalogueModel& model, const JsonValue& c,
                               const peft::SafetensorsFile& expected, const torch::Tensor& input, double atol) {
  if (!is_layer_suite_case(c)) return;
  const JsonValue& checks = get(c, "checks");
  auto want = [&](const std::string& key) -> const torch::Tensor& {
    const torch::Tensor* t = expected.find(key);
    if (!t) differs("expected.safetensors lacks `" + key + "`");
    return *t;
  };
  const JsonValue& names = get(c, "mixed_adapter_names");
  if (names.is_array()) {
    std::vector<std::string> rows;
    for (const auto& n : names.as_array()) rows.push_back(n.as_string());
    torch::Tensor out;
    {
      auto scope = pm.mixed_batch(rows);
      out = model.forward(input);
    }
    expect_close("out_mixed", out, want("out_mixed"), atol_of(checks, "out_mixed", atol));
  }
  if (!expected.find("out_unmerged")) return;
  // merge_adapter then unmerge_adapter of the active adapters: LoRA deltas and token rows are
  // written in and taken out again; the base weights must be back (DoRA: with the stored norm).
  pm.merge_adapter();
  pm.unmerge_adapter();
  expect_close("out_unmerged", model.forward(input), want("out_unmerged"), atol_of(checks, "out_unmerged", atol));
  const auto params = model.module->named_parameters();
  for (const auto& [key, t] : expected.tensors) {
    if (key.rfind("unmerged.", 0) != 0) continue;
    const torch::Tensor* p = params.find(key.substr(9));
    if (!p) differs("the model lacks `" + key.substr(9) + "`");
    expect_close(key, *p, t, atol_of(checks, "unmerged.*", atol));
  }
}

// ---- configs.json ----

namespace {

enum class Stage { Config, Inject, AddAdapter, Forward, Save };

Stage stage_of(const std::string& s) {
  if (s == "config") return Stage::Config;
  if (s == "inject") return Stage::Inject;
  if (s == "add_adapter") return Stage::AddAdapter;
  if (s == "forward") return Stage::Forward;
  return Stage::Save;
}

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::Config: return "config";
    case Stage::Inject: return "inject";
    case Stage::AddAdapter: return "add_adapter";
    case Stage::Forward: return "forward";
    default: return "save";
  }
}

/// Our exception type for a Python exception PEFT raised (layer suite): ValueError and
/// IndexError are value problems (a ConfigError, or no target / an unsupported module); TypeError
/// a wrong type or an unsupported module; forward-stage errors of mixed batches (ValueError,
/// KeyError, TypeError) are peft::Error.
bool error_agrees(const std::string& python, const std::string& ours, Stage ours_stage) {
  if (ours_stage == Stage::Forward && (python == "ValueError" || python == "KeyError" || python == "TypeError"))
    return !ours.empty();
  if (python == "ValueError" || python == "IndexError")
    return ours == "ConfigError/InvalidValue" || ours == "TargetNotFoundError" || ours == "UnsupportedModuleError";
  if (python == "TypeError") return ours == "ConfigError/WrongType" || ours == "UnsupportedModuleError";
  return false;
}

std::string error_kind(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const peft::ConfigError& err) {
    return err.kind() == peft::ConfigError::Kind::WrongType        ? "ConfigError/WrongType"
           : err.kind() == peft::ConfigError::Kind::NotImplemented ? "ConfigError/NotImplemented"
                                                                    : "ConfigError/InvalidValue";
  } catch (const peft::TargetNotFoundError&) {
    return "TargetNotFoundError";
  } catch (const peft::UnsupportedModuleError&) {
    return "UnsupportedModuleError";
  } catch (const peft::Error&) {
    return "Error";
  }
}

/// Every adapter tensor of the model, by parameter name (same_as_init_true).
std::map<std::string, torch::Tensor> adapter_tensors(peft::LoraModel& pm) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [key, layer] : pm.lora_layers())
    for (const auto& n : pm.adapter_names())
      for (const auto& [suffix, t] : layer->adapter_tensors(n)) out[key + "." + suffix + "." + n] = t.detach().clone();
  return out;
}

}  // namespace

CaseResult check_layer_config_case(std::size_t index, const JsonValue& e, const JsonValue& manifest) {
  const std::string id = "configs/" + std::to_string(index);
  const std::string name = get(e, "name").is_string() ? get(e, "name").as_string() : "?";
  auto fail = [&](const std::string& why) { return CaseResult{id, Status::Fail, name + ": " + why}; };
  const bool expect_ok = get(e, "ok").is_bool() && get(e, "ok").as_bool();
  const std::string model_name = get(e, "model").as_string();
  const JsonValue& dims = get(e, "model_dims");
  const JsonValue& forward = get(e, "forward");
  peft::ScopedWarningCapture quiet;

  Stage stage = Stage::Config;
  std::exception_ptr error;
  std::string error_text;
  std::unique_ptr<peft::LoraModel> pm;
  std::shared_ptr<CatalogueModel> model;
  try {
    const auto cfg = peft::lora_config_from_json_value(get(e, "kwargs"), peft::ConfigSource::Kwargs);
    stage = Stage::Inject;
    model = std::make_shared<CatalogueModel>(build_catalogue_model(model_name, dims));
    torch::manual_seed(0);
    pm = std::make_unique<peft::LoraModel>(model->module, cfg, "default");
    stage = Stage::AddAdapter;
    if (get(e, "more_adapters").is_array())
      for (const auto& more : get(e, "more_adapters").as_array())
        pm->add_adapter(more.as_array()[0].as_string(),
                        peft::lora_config_from_json_value(more.as_array()[1], peft::ConfigSource::Kwargs));
    if (forward.is_object()) {
      stage = Stage::Forward;
      model->module->train(get(forward, "mode").as_string() == "train");
      if (get(forward, "merged").is_bool() && get(forward, "merged").as_bool()) pm->merge_adapter();
      std::vector<std::string> rows;
      for (const auto& n : get(forward, "adapter_names").as_array()) rows.push_back(n.as_string());
      // A batch of the suite's input shape (manifest input_shapes: N, or [B, T] for embednet).
      const JsonValue& shape = get(get(manifest, "input_shapes"), model_name.c_str());
      const std::int64_t n = shape.is_array() ? shape.as_array()[0].as_int() : shape.as_int();
      const std::int64_t t = shape.is_array() ? shape.as_array()[1].as_int() : 0;
      const auto x = layer_catalogue_input(model_name, dims, n, t);
      torch::NoGradGuard no_grad;
      auto scope = pm->mixed_batch(rows);
      model->forward(x);
    }
  } catch (const peft::Error& err) {
    error = std::current_exception();
    error_text = err.what();
  } catch (const std::exception& err) {
    return fail(std::string("raised a non-peft exception: ") + err.what());
  }

  if (!expect_ok) {
    const Stage want_stage = stage_of(get(e, "stage").as_string());
    const std::string want_type = get(get(e, "error"), "type").as_string();
    if (!error) return fail("PEFT raises " + want_type + " at " + stage_name(want_stage) + ", we accepted it");
    if (stage > want_stage)
      return fail(std::string("PEFT fails at ") + stage_name(want_stage) + ", we only at " + stage_name(stage) + ": " +
                  error_text);
    if (!error_agrees(want_type, error_kind(error), stage))
      return fail("PEFT raises " + want_type + ", we raise " + error_kind(error) + ": " + error_text);
    if (stage < Stage::Forward) return {id, Status::Pass, ""};
  } else if (error) {
    return fail("PEFT accepts it, we raise " + error_kind(error) + " at " + stage_name(stage) + ": " + error_text);
  }

  // What the model looks like (also for refusals at the forward stage).
  std::vector<std::string> targeted = pm->targeted_module_names("default");
  std::sort(targeted.begin(), targeted.end());
  std::vector<std::string> want;
  for (const auto& k : get(e, "targeted_modules").as_array()) want.push_back(k.as_string());
  std::sort(want.begin(), want.end());
  if (targeted != want) return fail("targeted modules differ");
  try {
    check_tokens_wrapped(*pm, get(e, "trainable_tokens_wrapped"));
  } catch (const std::exception& err) {
    return fail(err.what());
  }
  const JsonValue& expected_config = get(e, "adapter_config");
  if (expected_config.is_object()) {
    peft::LoraConfig saved = pm->peft_config("default");
    saved.inference_mode = true;
    JsonValue mapping = JsonValue::object();
    mapping.set("base_model_class", layer_catalogue_class_name(model_name));
    mapping.set("parent_library", "__main__");
    if (!saved.task_type) saved.auto_mapping = mapping;
    const std::string d = diff_saved_config(peft::to_json_value(saved), expected_config);
    if (!d.empty()) return fail("saved config differs: " + d);
  }
  if (get(e, "same_as_init_true").is_bool() && get(e, "same_as_init_true").as_bool()) {
    // The same injection with init_lora_weights = true under the same seed: bit-identical tensors.
    JsonValue kwargs = get(e, "kwargs");
    kwargs.set("init_lora_weights", true);
    auto reference = build_catalogue_model(model_name, dims);
    torch::manual_seed(0);
    peft::LoraModel ref(reference.module, peft::lora_config_from_json_value(kwargs, peft::ConfigSource::Kwargs));
    const auto a = adapter_tensors(*pm), b = adapter_tensors(ref);
    if (a.size() != b.size()) return fail("same_as_init_true: different adapter tensors");
    for (const auto& [key, t] : a)
      if (!b.count(key) || !torch::equal(t, b.at(key))) return fail("same_as_init_true: `" + key + "` differs");
  }
  return {id, Status::Pass, ""};
}

}  // namespace peft_test
