// peft-merge's reading of one adapter directory (io/detail/merge_adapter.hpp): the config checks,
// the tensors sorted by PEFT's key rules (format/adapter_keys.hpp) and validated against each other.

#include "peft/io/detail/merge_adapter.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "peft/config/config_json.hpp"
#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/targeting/matching.hpp"

namespace peft::detail {
namespace {
namespace fs = std::filesystem;
using adapter_keys::LoraTensor;
using adapter_keys::lora_key;
const std::string kRoot = adapter_keys::kRoot;
}  // namespace

MergeAdapterData read_merge_adapter(const MergeAdapter& spec) {
  MergeAdapterData a;
  a.dir = spec.dir;
  a.weight = spec.weight;
  std::error_code ec;
  if (!fs::is_directory(spec.dir, ec))
    throw SerializationError(spec.dir.string() + ": not an adapter directory (expected adapter_config.json + "
                             "adapter_model.safetensors)");
  if (!std::isfinite(spec.weight))
    throw ConfigError::about("peft-merge", "weight", std::to_string(spec.weight),
                             "the weight of adapter " + spec.dir.string() + " is not finite",
                             "pass a finite number, e.g. --weight 0.5");
  a.cfg = load_adapter_config(spec.dir);
  (void)TargetMatcher(a.cfg);  // every regex field compiles (ConfigError otherwise), as PEFT needs to load it
  const std::string where = spec.dir.string() + "/adapter_config.json: ";
  switch (a.cfg.init_method()) {
    case InitMethod::Pissa:
    case InitMethod::PissaNiter:
    case InitMethod::Olora:
    case InitMethod::Corda:
    case InitMethod::Loftq:
      throw ConfigError("init_lora_weights", "\"" + a.cfg.init_lora_weights.name() + "\"",
                        where + "this adapter was trained on a base its init rewrote (residual or quantised "
                        "weights), so merging it into the original checkpoint would be wrong",
                        "convert it to a plain LoRA adapter first: PEFT save_pretrained(..., "
                        "path_initial_model_for_weight_conversion=<adapter saved right after init>) or peft-cpp "
                        "SaveOptions::path_initial_model_for_weight_conversion; then merge the converted adapter");
    default:
      break;
  }
  if (a.cfg.target_parameters && !a.cfg.target_parameters->empty())
    throw UnsupportedModuleError(where + "`target_parameters` adapters (LoRA on nn.Parameter) cannot be merged "
                                 "by peft-merge (hint: merge with PEFT's merge_and_unload)");
  if (a.cfg.layer_replication)
    throw UnsupportedModuleError(where + "`layer_replication` changes the base model's layers; peft-merge works "
                                 "on the state dict only (hint: merge with PEFT's merge_and_unload)");
  if (a.cfg.use_dora && spec.weight != 1.0)
    throw ConfigError::about("peft-merge", "weight", std::to_string(spec.weight),
                             where + "a DoRA adapter can only be merged with weight 1 (its norm makes the "
                             "merge non-linear in the delta)", "drop --weight for this adapter");

  a.file = spec.dir / "adapter_model.safetensors";
  if (!fs::exists(a.file, ec)) {
    if (fs::exists(spec.dir / "adapter_model.bin", ec))
      throw SerializationError(a.file.string() + ": missing; only adapter_model.bin (pickle) is there (hint: "
                               "re-save the adapter with safe_serialization=True)");
    throw SerializationError(a.file.string() + ": no such file");
  }
  const SafetensorsFile file = load_safetensors(a.file);
  std::vector<PythonRegex> saved;  // what modules_to_save declares
  if (a.cfg.modules_to_save)
    for (const auto& m : *a.cfg.modules_to_save) saved.push_back(modules_to_save_regex(m));
  const std::string fname = a.file.string() + ": ";
  for (const auto& [key, t] : file.tensors) {
    if (!t.is_floating_point())
      throw SerializationError(fname + "tensor " + ticked(key) + " has dtype " + c10::toString(t.scalar_type()) +
                               "; adapter weights must be floating point");
    if (t.numel() > 0 && !torch::isfinite(t).all().item<bool>())
      throw SerializationError(fname + "tensor " + ticked(key) + " holds NaN or infinite values");
    if (!adapter_keys::has_root(key))
      throw SerializationError(fname + "key " + ticked(key) + " does not start with `" + kRoot +
                               "` (not a PEFT LoRA adapter file?)");
    // Trainable tokens: `<m>.token_adapter.trainable_tokens_delta` holds the new rows of <m>'s
    // weight; their indices are in the config (dict form: keyed by the module's name or suffix).
    const std::string token_suffix = ".token_adapter.trainable_tokens_delta";
    const std::string bare = adapter_keys::base_model_key(key);
    if (bare.size() > token_suffix.size() &&
        bare.compare(bare.size() - token_suffix.size(), token_suffix.size(), token_suffix) == 0) {
      const std::string module = bare.substr(0, bare.size() - token_suffix.size());
      const auto& tti = a.cfg.trainable_token_indices;
      const JsonValue* ids = nullptr;
      if (tti && tti->is_object())
        for (const auto& [name, v] : tti->as_object())
          if (module == name || (module.size() > name.size() && module.compare(module.size() - name.size() - 1,
                                                                               name.size() + 1, "." + name) == 0))
            ids = &v;
      if (!ids)
        throw UnsupportedModuleError(fname + ticked(key) + ": its row indices are not given for `" + module +
                                     "` by trainable_token_indices in adapter_config.json (the list form names the "
                                     "model's input embedding, which a checkpoint alone does not tell; hint: load it "
                                     "with peft::from_pretrained, then merge_and_unload() and peft::save_model)");
      std::vector<std::int64_t> rows;
      for (const auto& e : ids->as_array()) rows.push_back(e.as_int());
      if (t.dim() != 2 || t.size(0) != static_cast<std::int64_t>(rows.size()))
        throw SerializationError(fname + ticked(key) + " has shape " + shape_string(t.sizes()) + " but " +
                                 std::to_string(rows.size()) + " token indices are configured for `" + module + "`");
      a.tokens[module] = {std::move(rows), t};
      continue;
    }
    // An Embedding's factors: `<m>.lora_embedding_A` / `_B`, saved without ".weight".
    const std::string plain = adapter_keys::base_model_key(key);
    bool embedding_factor = false;
    for (const char* suffix : {".lora_embedding_A", ".lora_embedding_B"}) {
      const std::string sfx = suffix;
      if (plain.size() <= sfx.size() || plain.compare(plain.size() - sfx.size(), sfx.size(), sfx) != 0) continue;
      const std::string module = plain.substr(0, plain.size() - sfx.size());
      MergeFactors& f = a.modules[module];
      f.layout = MergeFactors::Layout::Embedding;
      torch::Tensor& slot = sfx.back() == 'A' ? f.A : f.B;
      if (slot.defined()) throw SerializationError(fname + "module " + ticked(module) + " appears twice");
      slot = t;
      embedding_factor = true;
    }
    if (embedding_factor) continue;
    if (const auto lora = adapter_keys::parse_lora_key(key, adapter_keys::MagnitudeSpelling::AlsoWithWeight)) {
      MergeFactors& f = a.modules[lora->module];
      torch::Tensor& slot = lora->tensor == LoraTensor::A        ? f.A
                            : lora->tensor == LoraTensor::B      ? f.B
                            : lora->tensor == LoraTensor::B_bias ? f.b_bias
                                                                 : f.magnitude;
      if (slot.defined()) throw SerializationError(fname + "module " + ticked(lora->module) + " appears twice");
      slot = t;
      continue;
    }
    if (key.find(".lora_") != std::string::npos)
      throw UnsupportedModuleError(fname + ticked(key) + ": unknown LoRA tensor (Linear, Conv1D, Embedding and "
                                   "convolution LoRA only)");
    // bias="all" biases (`<m>.base_layer.bias`, `<m>.bias`) and modules_to_save copies (plain keys):
    // only what the config declares, or any tensor in the file would overwrite the base's.
    const std::string base_key = adapter_keys::base_model_key(key);
    const bool declared_bias = a.cfg.bias != Bias::none && base_key.size() > 5 &&
                               base_key.compare(base_key.size() - 5, 5, ".bias") == 0;
    const bool declared_saved = std::any_of(saved.begin(), saved.end(), [&](const PythonRegex& re) {
      return re.match(base_key);
    });
    if (!declared_bias && !declared_saved)
      throw SerializationError(fname + ticked(key) + " is not a LoRA tensor and adapter_config.json does not declare "
                               "it (bias = \"" + to_string(a.cfg.bias) + "\", no modules_to_save entry covers " +
                               ticked(base_key) + "); refusing to replace the base's tensor with it");
    a.replacements.emplace_back(base_key, t);
  }
  if (!a.tokens.empty() && spec.weight != 1.0)
    throw ConfigError::about("peft-merge", "weight", std::to_string(spec.weight),
                             a.dir.string() + ": trainable tokens replace rows of the embedding, which a weight "
                             "cannot scale", "drop --weight for this adapter");
  if (a.modules.empty() && a.replacements.empty() && a.tokens.empty())
    throw SerializationError(fname + "holds no LoRA weights");
  for (auto& [m, f] : a.modules) {
    const std::string mk = kRoot + m;
    if (!f.A.defined() || !f.B.defined())
      throw SerializationError(fname + ticked(lora_key(m, f.A.defined() ? LoraTensor::B : LoraTensor::A)) +
                               " is missing (the file has the other factor)");
    // A convolution's factors: A [r, in, k…] and a pointwise B [out, r / groups, 1…].
    const auto pointwise = [&] {
      for (std::int64_t d = 2; d < f.B.dim(); ++d)
        if (f.B.size(d) != 1) return false;
      return true;
    };
    if (f.layout == MergeFactors::Layout::Matrix && f.A.dim() >= 3 && f.B.dim() == f.A.dim() && pointwise())
      f.layout = MergeFactors::Layout::Conv;
    if (f.layout != MergeFactors::Layout::Conv && (f.A.dim() != 2 || f.B.dim() != 2))
      throw UnsupportedModuleError(fname + ticked(mk) + ": lora_A " + shape_string(f.A.sizes()) + " / lora_B " +
                                   shape_string(f.B.sizes()) +
                                   " are neither matrices nor convolution factors (Linear, Conv1D, Embedding and "
                                   "convolution LoRA only)");
    if (f.layout == MergeFactors::Layout::Conv && f.B.size(1) != f.A.size(0) && f.B.size(1) > 0 &&
        f.A.size(0) % f.B.size(1) == 0)
      throw UnsupportedModuleError(fname + ticked(mk) + ": a grouped convolution (groups = " +
                                   std::to_string(f.A.size(0) / f.B.size(1)) +
                                   ") cannot be merged; PEFT refuses to merge it too");
    if (f.B.size(1) != f.A.size(0))
      throw SerializationError(fname + ticked(mk) + ": lora_A " + shape_string(f.A.sizes()) + " and lora_B " +
                               shape_string(f.B.sizes()) + " have different ranks");
    if (f.magnitude.defined() != a.cfg.use_dora)
      throw SerializationError(fname + ticked(lora_key(m, LoraTensor::magnitude)) +
                               (a.cfg.use_dora ? " is missing (adapter_config.json says use_dora = true)"
                                               : " is present but adapter_config.json says use_dora = false"));
    // The DoRA magnitude: [out], or [1, out, 1…] for a convolution (PEFT's shape).
    const bool conv_magnitude = f.layout == MergeFactors::Layout::Conv && f.magnitude.defined() &&
                                f.magnitude.dim() == f.A.dim() && f.magnitude.numel() == f.B.size(0) &&
                                f.magnitude.size(1) == f.B.size(0);
    if (f.magnitude.defined() && !conv_magnitude && (f.magnitude.dim() != 1 || f.magnitude.size(0) != f.B.size(0)))
      throw SerializationError(fname + ticked(lora_key(m, LoraTensor::magnitude)) + " has shape " +
                               shape_string(f.magnitude.sizes()) + ", lora_B needs [" + std::to_string(f.B.size(0)) + "]");
    if (f.b_bias.defined() && !a.cfg.lora_bias)
      throw SerializationError(fname + ticked(lora_key(m, LoraTensor::B_bias)) +
                               " is present but adapter_config.json says lora_bias = false");
    if (!f.b_bias.defined() && a.cfg.lora_bias)
      throw SerializationError(fname + ticked(lora_key(m, LoraTensor::B_bias)) +
                               " is missing (adapter_config.json says lora_bias = true)");
    if (f.b_bias.defined() && (f.b_bias.dim() != 1 || f.b_bias.size(0) != f.B.size(0)))
      throw SerializationError(fname + ticked(lora_key(m, LoraTensor::B_bias)) + " has shape " + shape_string(f.b_bias.sizes()) +
                               ", lora_B needs [" + std::to_string(f.B.size(0)) + "]");
  }
  return a;
}

}  // namespace peft::detail
