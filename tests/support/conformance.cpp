#include "support/conformance.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "peft/error.hpp"
#include "peft/config/config_json.hpp"
#include "peft/targeting/matching.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/targeting/plan.hpp"
#include "peft/warnings.hpp"
#include "support/catalogue_models.hpp"
#include "support/conformance_layers.hpp"
#include "support/fixtures.hpp"

namespace peft_test {
namespace {

using peft::JsonValue;

CaseResult pass(std::string id) { return {std::move(id), Status::Pass, ""}; }
CaseResult fail(std::string id, std::string why) { return {std::move(id), Status::Fail, std::move(why)}; }

const JsonValue& field(const JsonValue& obj, const char* key) {
  static const JsonValue null;
  const JsonValue* v = obj.find(key);
  return v ? *v : null;
}

std::string str_or(const JsonValue& v, std::string dflt) { return v.is_string() ? v.as_string() : dflt; }

/// Lists PEFT built from Python sets have arbitrary order: compare them as sets.
bool same_json(const std::string& key, const JsonValue& a, const JsonValue& b) {
  if ((key == "target_modules" || key == "exclude_modules") && a.is_array() && b.is_array()) {
    std::multiset<std::string> sa, sb;
    for (const auto& e : a.as_array()) sa.insert(e.dump());
    for (const auto& e : b.as_array()) sb.insert(e.dump());
    return sa == sb;
  }
  return a == b;
}

}  // namespace

std::string diff_saved_config(const JsonValue& ours, const JsonValue& expected) {
  std::set<std::string> keys;
  for (const auto& kv : ours.as_object()) keys.insert(kv.first);
  for (const auto& kv : expected.as_object()) keys.insert(kv.first);
  for (const auto& k : keys) {
    const JsonValue* a = ours.find(k);
    const JsonValue* b = expected.find(k);
    if (!a) return "we do not write key `" + k + "`";
    if (!b) return "we write key `" + k + "` that PEFT does not";
    if (!same_json(k, *a, *b)) return "`" + k + "`: ours " + a->dump() + ", PEFT " + b->dump();
  }
  return "";
}

namespace {

/// Which of our exception types stands for a Python exception type at PEFT's failure stage.
bool error_type_agrees(const std::string& python_type, const std::string& ours) {
  if (python_type == "TypeError") return ours == "ConfigError/WrongType";
  if (python_type == "NotImplementedError") return ours == "ConfigError/NotImplemented";
  if (python_type == "ValueError")
    return ours == "ConfigError/InvalidValue" || ours == "TargetNotFoundError" ||
           ours == "UnsupportedModuleError";
  return false;
}

int stage_rank(const std::string& s) { return s == "config" ? 0 : s == "inject" ? 1 : 2; }

}  // namespace

CaseResult check_config_case(std::size_t index, const JsonValue& e, const std::string& resave_dir) {
  const std::string id = "configs/" + std::to_string(index);
  const std::string name = str_or(field(e, "name"), "?");
  const bool expect_ok = field(e, "ok").is_bool() && field(e, "ok").as_bool();
  const JsonValue& model = field(e, "model");
  const auto source = name.rfind("json_", 0) == 0 ? peft::ConfigSource::AdapterConfigFile
                                                  : peft::ConfigSource::Kwargs;
  peft::ScopedWarningCapture quiet;

  std::string stage = "config", error_type, error_message;
  peft::LoraConfig cfg;
  peft::TargetPlan plan;
  try {
    cfg = peft::lora_config_from_json_value(field(e, "kwargs"), source);
    if (model.is_string()) {
      stage = "inject";
      plan = peft::plan_targets(cfg, catalogue_inventory(model.as_string(), field(e, "model_dims")));
      // CorDA's layer checks (eigens attached by preprocess_corda) need the real layers.
      if (cfg.init_method() == peft::InitMethod::Corda)
        peft::get_peft_model(build_catalogue_model(model.as_string(), field(e, "model_dims")).module, cfg);
    }
  } catch (const peft::ConfigError& err) {
    error_type = err.kind() == peft::ConfigError::Kind::WrongType        ? "ConfigError/WrongType"
                 : err.kind() == peft::ConfigError::Kind::NotImplemented ? "ConfigError/NotImplemented"
                                                                          : "ConfigError/InvalidValue";
    error_message = err.what();
  } catch (const peft::TargetNotFoundError& err) {
    error_type = "TargetNotFoundError";
    error_message = err.what();
  } catch (const peft::UnsupportedModuleError& err) {
    error_type = "UnsupportedModuleError";
    error_message = err.what();
  } catch (const peft::Error& err) {
    error_type = "Error";
    error_message = err.what();
  }

  if (!expect_ok) {
    const std::string want_stage = str_or(field(e, "stage"), "?");
    const std::string want_type = str_or(field(field(e, "error"), "type"), "?");
    if (error_type.empty()) {
      return fail(id, name + ": PEFT raises " + want_type + " at " + want_stage + ", we accepted it");
    }
    // Failing earlier than PEFT is allowed (a config-only problem we catch before injection).
    if (stage_rank(stage) > stage_rank(want_stage))
      return fail(id, name + ": PEFT fails at " + want_stage + ", we only at " + stage + ": " + error_message);
    if (!error_type_agrees(want_type, error_type))
      return fail(id, name + ": PEFT raises " + want_type + ", we raise " + error_type + ": " + error_message);
    return pass(id);
  }
  if (!error_type.empty())
    return fail(id, name + ": PEFT accepts it, we raise " + error_type + " at " + stage + ": " + error_message);

  const JsonValue& expected = field(e, "adapter_config");
  auto resave = [&](const peft::LoraConfig& c) {
    if (!resave_dir.empty() && expected.is_object())
      peft::save_adapter_config(c, std::filesystem::path(resave_dir) / "configs" / std::to_string(index));
  };
  if (model.is_string()) {
    std::vector<std::string> targeted;
    for (const auto& l : plan.layers) targeted.push_back(l.key);
    std::sort(targeted.begin(), targeted.end());
    std::vector<std::string> want;
    for (const auto& t : field(e, "targeted_modules").as_array()) want.push_back(t.as_string());
    std::sort(want.begin(), want.end());
    if (targeted != want) {
      std::string got;
      for (const auto& t : targeted) got += " " + t;
      return fail(id, name + ": targeted modules differ; ours:" + got);
    }
    // What PeftModel.save_pretrained writes for a custom model.
    peft::LoraConfig saved = plan.config;
    saved.inference_mode = true;
    JsonValue mapping = JsonValue::object();
    mapping.set("base_model_class", catalogue_class_name(model.as_string()));
    mapping.set("parent_library", "__main__");
    if (!saved.task_type) saved.auto_mapping = mapping;
    resave(saved);
    std::string d = diff_saved_config(peft::to_json_value(saved), expected);
    if (!d.empty()) return fail(id, name + ": saved config differs: " + d);
    return pass(id);
  }
  if (expected.is_object()) {
    // Re-saved by PeftConfig.save_pretrained; we keep unknown keys on purpose (compare them apart).
    resave(cfg);
    JsonValue ours = peft::to_json_value(cfg);
    for (const auto& kv : cfg.extra_fields) {
      const JsonValue* given = field(e, "kwargs").find(kv.first);
      if (!given || !(*given == kv.second)) return fail(id, name + ": extra key `" + kv.first + "` not kept as given");
      ours.erase(kv.first);
    }
    std::string d = diff_saved_config(ours, expected);
    if (!d.empty()) return fail(id, name + ": re-saved config differs: " + d);
  }
  return pass(id);
}

CaseResult check_matching_case(std::size_t index, const JsonValue& e) {
  const std::string id = "matching/" + std::to_string(index);
  peft::ScopedWarningCapture quiet;
  try {
    JsonValue kwargs = JsonValue::object();
    for (const auto& kv : field(e, "config").as_object())
      if (!kv.second.is_null()) kwargs.set(kv.first, kv.second);
    auto cfg = peft::lora_config_from_json_value(kwargs, peft::ConfigSource::Kwargs);
    const std::string key = field(e, "key").as_string();
    const peft::MatchResult r = peft::check_target_module_exists(cfg, key);
    const bool want = field(e, "expected").as_bool();
    const bool want_excluded = field(e, "excluded").is_bool() && field(e, "excluded").as_bool();
    const bool got = r == peft::MatchResult::Match;
    const bool got_excluded = r == peft::MatchResult::Excluded;
    if (got != want || got_excluded != want_excluded)
      return fail(id, "key `" + key + "` with " + field(e, "config").dump() + ": expected " +
                          (want ? "match" : want_excluded ? "excluded" : "no match") + ", got " +
                          (got ? "match" : got_excluded ? "excluded" : "no match"));
    return pass(id);
  } catch (const peft::Error& err) {
    return fail(id, std::string("raised: ") + err.what());
  }
}

CaseResult check_pattern_case(std::size_t index, const JsonValue& e) {
  const std::string id = "patterns/" + std::to_string(index);
  try {
    peft::LoraConfig cfg;
    cfg.r = field(e, "r").as_int();
    const JsonValue& alpha = field(e, "lora_alpha");
    cfg.lora_alpha = alpha.is_int() ? peft::Number(static_cast<long long>(alpha.as_int()))
                                    : peft::Number(alpha.as_double());
    cfg.use_rslora = field(e, "use_rslora").is_bool() && field(e, "use_rslora").as_bool();
    for (const auto& pair : field(e, "rank_pattern").as_array())
      cfg.rank_pattern.set(pair.as_array()[0].as_string(), pair.as_array()[1].as_int());
    for (const auto& pair : field(e, "alpha_pattern").as_array()) {
      const JsonValue& v = pair.as_array()[1];
      cfg.alpha_pattern.set(pair.as_array()[0].as_string(),
                            v.is_int() ? peft::Number(static_cast<long long>(v.as_int())) : peft::Number(v.as_double()));
    }
    const std::string key = field(e, "key").as_string();
    const peft::LayerSettings s = peft::resolve_layer_settings(cfg, key);
    std::ostringstream why;
    auto key_of = [](const std::optional<std::string>& k) { return k ? JsonValue(*k) : JsonValue(); };
    if (s.r != field(e, "expected_r").as_int()) why << " r " << s.r;
    if (s.lora_alpha.value != field(e, "expected_alpha").as_double()) why << " alpha " << s.lora_alpha.value;
    const double want_scaling = field(e, "expected_scaling").as_double();
    if (std::abs(s.scaling - want_scaling) > 1e-15 * std::abs(want_scaling)) why << " scaling " << s.scaling;
    if (!(key_of(s.rank_pattern_key) == field(e, "rank_pattern_key"))) why << " rank_pattern_key";
    if (!(key_of(s.alpha_pattern_key) == field(e, "alpha_pattern_key"))) why << " alpha_pattern_key";
    if (!why.str().empty()) return fail(id, "key `" + key + "`: wrong" + why.str());
    return pass(id);
  } catch (const peft::Error& err) {
    return fail(id, std::string("raised: ") + err.what());
  }
}

std::vector<CaseResult> run_all_cases(const std::string& dir_string, const std::string& resave_dir) {
  const std::filesystem::path dir(dir_string);
  std::vector<CaseResult> out;
  // The layer-type suite (manifest "suite": "layers") has its own configs.json checks, and its ids
  // are prefixed with "peft-layers/".
  JsonValue manifest;
  if (std::filesystem::exists(dir / "manifest.json")) manifest = read_json(dir / "manifest.json");
  const bool layers = is_layer_suite_case(manifest);
  auto run_file = [&](const char* file, auto check) {
    if (!std::filesystem::exists(dir / file)) return;
    const JsonValue all = read_json(dir / file);
    for (std::size_t i = 0; i < all.as_array().size(); ++i) out.push_back(check(i, all.as_array()[i]));
  };
  if (layers)
    run_file("configs.json", [&](std::size_t i, const JsonValue& e) { return check_layer_config_case(i, e, manifest); });
  else
    run_file("configs.json", [&](std::size_t i, const JsonValue& e) { return check_config_case(i, e, resave_dir); });
  run_file("matching.json", check_matching_case);
  run_file("patterns.json", check_pattern_case);
  std::vector<std::string> cases;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "case.json"))
      cases.push_back(entry.path().filename().string());
  std::sort(cases.begin(), cases.end());
  for (const auto& c : cases) out.push_back(check_model_case((dir / c).string(), resave_dir));
  if (layers)
    for (auto& r : out) r.id = "peft-layers/" + r.id;
  return out;
}

}  // namespace peft_test
