// Adapter -> checkpoint merging on state dicts (include/peft/io/merge_into_checkpoint.hpp): reading and
// validating the adapters, the per-tensor plan, the maths, and the streamed, atomic output.

#include "peft/io/merge_into_checkpoint.hpp"

#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/layers/lora_math.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/format/json_value.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/variants/dora.hpp"

namespace peft {
namespace {

namespace fs = std::filesystem;
using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;

const std::string kRoot = "base_model.model.";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(c10::IntArrayRef s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string ticked(const std::string& s) { return "`" + s + "`"; }

/// One adapted module's factors as read from the adapter file.
struct ModuleFactors {
  torch::Tensor A, B, b_bias, magnitude;
};

struct AdapterData {
  fs::path dir;
  fs::path file;  ///< adapter_model.safetensors (for messages)
  double weight = 1.0;
  LoraConfig cfg;
  std::map<std::string, ModuleFactors> modules;  ///< module key (no root prefix) -> factors
  TensorList replacements;                       ///< base key -> tensor (bias="all", modules_to_save)
};

/// Read, check and sort one adapter's tensors (nothing about the base yet).
AdapterData read_adapter(const MergeAdapter& spec) {
  AdapterData a;
  a.dir = spec.dir;
  a.weight = spec.weight;
  std::error_code ec;
  if (!fs::is_directory(spec.dir, ec))
    throw SerializationError(spec.dir.string() + ": not an adapter directory (expected adapter_config.json + "
                             "adapter_model.safetensors)");
  if (!std::isfinite(spec.weight))
    throw ConfigError("weight", std::to_string(spec.weight), "the weight of adapter " + spec.dir.string() +
                      " is not finite", "pass a finite number, e.g. --weight 0.5");
  a.cfg = load_adapter_config(spec.dir);
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
    throw ConfigError("weight", std::to_string(spec.weight),
                      where + "a DoRA adapter can only be merged with weight 1 (its norm makes the merge "
                      "non-linear in the delta)", "drop --weight for this adapter");

  a.file = spec.dir / "adapter_model.safetensors";
  if (!fs::exists(a.file, ec)) {
    if (fs::exists(spec.dir / "adapter_model.bin", ec))
      throw SerializationError(a.file.string() + ": missing; only adapter_model.bin (pickle) is there (hint: "
                               "re-save the adapter with safe_serialization=True)");
    throw SerializationError(a.file.string() + ": no such file");
  }
  const SafetensorsFile file = load_safetensors(a.file);
  const std::string fname = a.file.string() + ": ";
  const std::vector<std::pair<std::string, int>> suffixes = {{".lora_A.weight", 0},
                                                             {".lora_B.weight", 1},
                                                             {".lora_B.bias", 2},
                                                             {".lora_magnitude_vector", 3},
                                                             {".lora_magnitude_vector.weight", 3}};
  for (const auto& [key, t] : file.tensors) {
    if (!t.is_floating_point())
      throw SerializationError(fname + "tensor " + ticked(key) + " has dtype " + c10::toString(t.scalar_type()) +
                               "; adapter weights must be floating point");
    if (t.numel() > 0 && !torch::isfinite(t).all().item<bool>())
      throw SerializationError(fname + "tensor " + ticked(key) + " holds NaN or infinite values");
    if (key.compare(0, kRoot.size(), kRoot) != 0)
      throw SerializationError(fname + "key " + ticked(key) + " does not start with `" + kRoot +
                               "` (not a PEFT LoRA adapter file?)");
    if (key.find("lora_embedding_") != std::string::npos || key.find("token_adapter") != std::string::npos)
      throw UnsupportedModuleError(fname + ticked(key) + ": embedding / trainable-token adapters cannot be merged "
                                   "by peft-merge (Linear and Conv1D LoRA only; hint: PEFT's merge_and_unload)");
    bool placed = false;
    for (const auto& [suffix, slot] : suffixes) {
      if (!ends_with(key, suffix) || key.size() <= kRoot.size() + suffix.size()) continue;
      const std::string m = key.substr(kRoot.size(), key.size() - kRoot.size() - suffix.size());
      ModuleFactors& f = a.modules[m];
      torch::Tensor& slot_t = slot == 0 ? f.A : slot == 1 ? f.B : slot == 2 ? f.b_bias : f.magnitude;
      if (slot_t.defined()) throw SerializationError(fname + "module " + ticked(m) + " appears twice");
      slot_t = t;
      placed = true;
      break;
    }
    if (placed) continue;
    if (key.find(".lora_") != std::string::npos)
      throw UnsupportedModuleError(fname + ticked(key) + ": unknown LoRA tensor (Linear and Conv1D LoRA only)");
    // bias="all" biases (`<m>.base_layer.bias`, `<m>.bias`) and modules_to_save copies (plain keys).
    std::string plain = key.substr(kRoot.size());
    for (std::size_t p; (p = plain.find(".base_layer.")) != std::string::npos;) plain.erase(p, 11);
    a.replacements.emplace_back(plain, t);
  }
  if (a.modules.empty() && a.replacements.empty())
    throw SerializationError(fname + "holds no LoRA weights");
  for (const auto& [m, f] : a.modules) {
    const std::string mk = kRoot + m;
    if (!f.A.defined() || !f.B.defined())
      throw SerializationError(fname + ticked(mk + (f.A.defined() ? ".lora_B.weight" : ".lora_A.weight")) +
                               " is missing (the file has the other factor)");
    if (f.A.dim() != 2 || f.B.dim() != 2)
      throw UnsupportedModuleError(fname + ticked(mk) + ": lora_A " + shape_str(f.A.sizes()) + " / lora_B " +
                                   shape_str(f.B.sizes()) + " are not matrices (Linear and Conv1D LoRA only)");
    if (f.B.size(1) != f.A.size(0))
      throw SerializationError(fname + ticked(mk) + ": lora_A " + shape_str(f.A.sizes()) + " and lora_B " +
                               shape_str(f.B.sizes()) + " have different ranks");
    if (f.magnitude.defined() != a.cfg.use_dora)
      throw SerializationError(fname + ticked(mk + ".lora_magnitude_vector") +
                               (a.cfg.use_dora ? " is missing (adapter_config.json says use_dora = true)"
                                               : " is present but adapter_config.json says use_dora = false"));
    if (f.magnitude.defined() && (f.magnitude.dim() != 1 || f.magnitude.size(0) != f.B.size(0)))
      throw SerializationError(fname + ticked(mk + ".lora_magnitude_vector") + " has shape " +
                               shape_str(f.magnitude.sizes()) + ", lora_B needs [" + std::to_string(f.B.size(0)) + "]");
    if (f.b_bias.defined() && !a.cfg.lora_bias)
      throw SerializationError(fname + ticked(mk + ".lora_B.bias") +
                               " is present but adapter_config.json says lora_bias = false");
    if (!f.b_bias.defined() && a.cfg.lora_bias)
      throw SerializationError(fname + ticked(mk + ".lora_B.bias") +
                               " is missing (adapter_config.json says lora_bias = true)");
    if (f.b_bias.defined() && (f.b_bias.dim() != 1 || f.b_bias.size(0) != f.B.size(0)))
      throw SerializationError(fname + ticked(mk + ".lora_B.bias") + " has shape " + shape_str(f.b_bias.sizes()) +
                               ", lora_B needs [" + std::to_string(f.B.size(0)) + "]");
  }
  return a;
}

/// One step applied to one base tensor.
struct Op {
  enum Kind { Lora, LoraBias, Replace } kind = Lora;
  std::size_t adapter = 0;
  const ModuleFactors* f = nullptr;
  torch::Tensor replacement;
  double scaling = 0.0;  ///< s (without the adapter weight)
  double weight = 1.0;
  std::int64_t r = 0;
  bool fan_in_fan_out = false;
};

struct Plan {
  std::vector<AdapterData> adapters;
  std::unordered_map<std::string, std::vector<Op>> ops;  ///< base key -> steps, in order
  std::vector<MergedTensorInfo> merged;
  std::vector<std::string> notes;
};

std::string leaf_of(const std::string& m) {
  const auto p = m.rfind('.');
  return p == std::string::npos ? m : m.substr(p + 1);
}
std::string parent_of(const std::string& m) {
  const auto p = m.rfind('.');
  return p == std::string::npos ? std::string() : m.substr(0, p);
}

/// Validate every adapter against the base and build the per-tensor steps. `base` maps every
/// base key to a tensor (possibly a view of a mapped file: only shapes and dtypes are read).
Plan make_plan(const std::unordered_map<std::string, torch::Tensor>& base, const std::vector<MergeAdapter>& specs,
               const MergeCheckpointOptions& options) {
  if (specs.empty()) throw Error("peft-merge: no adapter given (hint: --adapter DIR)");
  Plan plan;
  plan.adapters.reserve(specs.size());
  for (const auto& s : specs) plan.adapters.push_back(read_adapter(s));

  struct Pending {
    std::size_t adapter;
    std::string module;
    Op op;
  };
  std::vector<Pending> pending;
  // Layouts decided from shapes, by leaf name and by every enclosing module ("a.b" for "a.b.c.d").
  std::map<std::string, std::set<bool>> by_leaf, by_ancestor;
  for (std::size_t ai = 0; ai < plan.adapters.size(); ++ai) {
    const AdapterData& a = plan.adapters[ai];
    const std::string fname = a.file.string() + ": ";
    const LayerSettingsResolver settings(a.cfg);
    for (const auto& [key, t] : a.replacements) {
      auto it = base.find(key);
      if (it == base.end())
        throw SerializationError(fname + ticked(kRoot + key) + " (bias=\"all\" or modules_to_save) has no " +
                                 ticked(key) + " in the base checkpoint (is this adapter for another base model?)");
      if (it->second.sizes() != t.sizes())
        throw SerializationError(fname + ticked(kRoot + key) + " has shape " + shape_str(t.sizes()) +
                                 ", the base's " + ticked(key) + " has " + shape_str(it->second.sizes()));
      Op op;
      op.kind = Op::Replace;
      op.adapter = ai;
      op.replacement = t;
      plan.ops[key].push_back(op);
      plan.merged.push_back({key, "replaced", ai, 0, 0.0, false});
    }
    std::size_t contradicting = 0;
    for (const auto& [m, f] : a.modules) {
      const std::string wkey = m + ".weight";
      auto it = base.find(wkey);
      if (it == base.end())
        throw SerializationError(fname + "module " + ticked(m) + " has no " + ticked(wkey) +
                                 " in the base checkpoint (is this adapter for another base model?)");
      const torch::Tensor& W = it->second;
      if (!W.is_floating_point() || W.dim() != 2)
        throw UnsupportedModuleError("base " + ticked(wkey) + " " + shape_str(W.sizes()) + " " +
                                     c10::toString(W.scalar_type()) +
                                     " is not a floating-point matrix (Linear and Conv1D LoRA only)");
      const LayerSettings s = settings(m);
      if (f.A.size(0) != s.r)
        throw SerializationError(fname + ticked(kRoot + m + ".lora_A.weight") + " has rank " +
                                 std::to_string(f.A.size(0)) + " but adapter_config.json gives r = " +
                                 std::to_string(s.r) + " for this module" +
                                 (s.rank_pattern_key ? " (rank_pattern \"" + *s.rank_pattern_key + "\")" : ""));
      const std::int64_t in = f.A.size(1), out = f.B.size(0);
      const bool fits_linear = W.size(0) == out && W.size(1) == in;
      const bool fits_conv1d = W.size(0) == in && W.size(1) == out;
      if (!fits_linear && !fits_conv1d)
        throw SerializationError(fname + ticked(kRoot + m) + ": lora_A " + shape_str(f.A.sizes()) + " / lora_B " +
                                 shape_str(f.B.sizes()) + " do not fit the base weight " + ticked(wkey) + " " +
                                 shape_str(W.sizes()) + " (is this adapter for another base model?)");
      Op op;
      op.kind = Op::Lora;
      op.adapter = ai;
      op.f = &f;
      op.scaling = s.scaling;
      op.weight = a.weight;
      op.r = s.r;
      if (options.fan_in_fan_out) {
        op.fan_in_fan_out = *options.fan_in_fan_out;
        if (op.fan_in_fan_out ? !fits_conv1d : !fits_linear)
          throw SerializationError(fname + ticked(kRoot + m) + " does not fit the base weight " + ticked(wkey) + " " +
                                   shape_str(W.sizes()) + " with the forced fan_in_fan_out = " +
                                   (op.fan_in_fan_out ? "true" : "false") + " (hint: leave the layout to auto)");
      } else if (fits_linear != fits_conv1d) {
        op.fan_in_fan_out = fits_conv1d;
        by_leaf[leaf_of(m)].insert(op.fan_in_fan_out);
        for (std::string up = parent_of(m); !up.empty(); up = parent_of(up)) by_ancestor[up].insert(op.fan_in_fan_out);
        if (op.fan_in_fan_out != a.cfg.fan_in_fan_out) ++contradicting;
      } else {
        pending.push_back({ai, m, op});
        continue;
      }
      plan.ops[wkey].push_back(op);
      plan.merged.push_back({wkey, f.magnitude.defined() ? "dora" : "lora", ai, s.r, s.scaling, op.fan_in_fan_out});
      if (f.b_bias.defined()) {
        const std::string bkey = m + ".bias";
        auto bt = base.find(bkey);
        if (bt == base.end())
          throw Error(fname + "Impossible to merge LoRA with `lora_bias=True` because the base layer " + ticked(m) +
                      " has no bias (no " + ticked(bkey) + " in the base checkpoint)");
        if (bt->second.sizes() != f.b_bias.sizes())
          throw SerializationError(fname + ticked(kRoot + m + ".lora_B.bias") + " " + shape_str(f.b_bias.sizes()) +
                                   " does not fit the base bias " + ticked(bkey) + " " + shape_str(bt->second.sizes()));
        Op bop = op;
        bop.kind = Op::LoraBias;
        plan.ops[bkey].push_back(bop);
        plan.merged.push_back({bkey, "lora_bias", ai, s.r, s.scaling, op.fan_in_fan_out});
      }
    }
    if (contradicting > 0)
      plan.notes.push_back(a.dir.string() + ": adapter_config.json says fan_in_fan_out = " +
                           (a.cfg.fan_in_fan_out ? "true" : "false") + " but " + std::to_string(contradicting) +
                           " module(s) only fit the other layout; merged them in the layout their shapes give "
                           "(PEFT sets fan_in_fan_out per layer type)");
  }
  // Square weights: evidence from the same leaf name, then the nearest enclosing module with
  // decided weights, then the config.
  for (auto& p : pending) {
    const AdapterData& a = plan.adapters[p.adapter];
    bool fifo = a.cfg.fan_in_fan_out;
    const auto leaf = by_leaf.find(leaf_of(p.module));
    if (leaf != by_leaf.end() && leaf->second.size() == 1) {
      fifo = *leaf->second.begin();
    } else {
      // The nearest enclosing module whose decided weights all share one layout (the block of a
      // GPT-2 layer when its MLP is square too).
      for (std::string up = parent_of(p.module); !up.empty(); up = parent_of(up)) {
        const auto it = by_ancestor.find(up);
        if (it == by_ancestor.end()) continue;
        if (it->second.size() == 1) fifo = *it->second.begin();
        break;
      }
    }
    if (fifo != a.cfg.fan_in_fan_out)
      plan.notes.push_back(p.module + ": square weight merged with fan_in_fan_out = " + (fifo ? "true" : "false") +
                           " like the other modules of its name/parent (the config says otherwise)");
    p.op.fan_in_fan_out = fifo;
    const std::string wkey = p.module + ".weight";
    const ModuleFactors& f = *p.op.f;
    // Keep adapter order per tensor: insert before any later adapter's step.
    auto& steps = plan.ops[wkey];
    auto pos = std::find_if(steps.begin(), steps.end(), [&](const Op& o) { return o.adapter > p.adapter; });
    steps.insert(pos, p.op);
    plan.merged.push_back({wkey, f.magnitude.defined() ? "dora" : "lora", p.adapter, p.op.r, p.op.scaling, fifo});
    if (f.b_bias.defined()) {
      const std::string bkey = p.module + ".bias";
      auto bt = base.find(bkey);
      if (bt == base.end())
        throw Error(a.file.string() + ": Impossible to merge LoRA with `lora_bias=True` because the base layer " +
                    ticked(p.module) + " has no bias (no " + ticked(bkey) + " in the base checkpoint)");
      if (bt->second.sizes() != f.b_bias.sizes())
        throw SerializationError(a.file.string() + ": " + ticked(kRoot + p.module + ".lora_B.bias") +
                                 " does not fit the base bias " + ticked(bkey) + " " + shape_str(bt->second.sizes()));
      Op bop = p.op;
      bop.kind = Op::LoraBias;
      auto& bsteps = plan.ops[bkey];
      auto bpos = std::find_if(bsteps.begin(), bsteps.end(), [&](const Op& o) { return o.adapter > p.adapter; });
      bsteps.insert(bpos, bop);
      plan.merged.push_back({bkey, "lora_bias", p.adapter, p.op.r, p.op.scaling, fifo});
    }
  }
  // Replacements of one adapter come before its LoRA steps (PEFT loads them into the base, then
  // merges); a stable sort by (adapter, replace-first) keeps everything else in order.
  for (auto& [key, steps] : plan.ops)
    std::stable_sort(steps.begin(), steps.end(), [](const Op& x, const Op& y) {
      if (x.adapter != y.adapter) return x.adapter < y.adapter;
      return (x.kind == Op::Replace) > (y.kind == Op::Replace);
    });
  return plan;
}

/// Apply one tensor's steps in float32; the result is cast to `out_dtype`.
torch::Tensor apply_steps(const std::string& key, const torch::Tensor& base, const std::vector<Op>& steps,
                          torch::ScalarType out_dtype) {
  torch::NoGradGuard no_grad;
  auto t = base.to(torch::kFloat32);
  for (const auto& op : steps) {
    if (op.kind == Op::Replace) {
      t = op.replacement.to(torch::kFloat32);
      continue;
    }
    const auto s = op.scaling * op.weight;
    if (op.kind == Op::LoraBias) {
      t = t + op.f->b_bias.to(torch::kFloat32) * s;
      continue;
    }
    const auto delta = lora_delta_weight(op.f->A.to(torch::kFloat32), op.f->B.to(torch::kFloat32), s,
                                         op.fan_in_fan_out);
    if (op.f->magnitude.defined()) {
      const auto fn = dora_merge_factor(t, delta, op.f->magnitude.to(torch::kFloat32), op.fan_in_fan_out);
      t = fn.first * (t + delta);
    } else {
      t = t + delta;
    }
  }
  t = t.to(out_dtype);
  if (!torch::isfinite(t).all().item<bool>())
    throw Error("the merged " + ticked(key) + " holds NaN or infinite values in " + c10::toString(out_dtype) +
                " (an adapter is broken or the output dtype overflows); nothing was written");
  return t;
}

torch::ScalarType output_dtype(const torch::Tensor& base, const MergeCheckpointOptions& o) {
  return (o.dtype && base.is_floating_point()) ? *o.dtype : base.scalar_type();
}

// ---- streamed safetensors writer -------------------------------------------------------------

const char* st_dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kFloat64: return "F64";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: return nullptr;
  }
}

/// Writes a safetensors file whose header is known up front, one tensor at a time (the whole
/// file is never in memory). The header format is serialize_safetensors'.
class StreamWriter {
 public:
  struct Entry {
    std::string name;
    torch::ScalarType dtype;
    std::vector<std::int64_t> shape;
  };
  StreamWriter(const fs::path& path, std::vector<Entry> entries,
               const std::vector<std::pair<std::string, std::string>>& metadata)
      : path_(path), entries_(std::move(entries)) {
    std::string header = "{";
    if (!metadata.empty()) {
      nlohmann::ordered_json md = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata) md[k] = v;
      header += "\"__metadata__\":" + md.dump();
    }
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      const char* name = st_dtype_name(e.dtype);
      if (!name)
        throw SerializationError(path.string() + ": tensor " + ticked(e.name) + " has dtype " +
                                 c10::toString(e.dtype) + ", which safetensors files of peft-cpp cannot hold");
      std::uint64_t n = c10::elementSize(e.dtype);
      for (auto d : e.shape) n *= static_cast<std::uint64_t>(d);
      nlohmann::ordered_json entry;
      entry["dtype"] = name;
      entry["shape"] = e.shape;
      entry["data_offsets"] = {offset, offset + n};
      offset += n;
      if (header.size() > 1) header += ',';
      header += nlohmann::json(e.name).dump() + ":" + entry.dump();
    }
    header += '}';
    while (header.size() % 8 != 0) header += ' ';
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw SerializationError(path.string() + ": cannot create");
    std::string len(8, '\0');
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((static_cast<std::uint64_t>(header.size()) >> (8 * i)) & 0xff);
    put(len.data(), len.size());
    put(header.data(), header.size());
    bytes_ = 8 + header.size() + offset;
  }
  ~StreamWriter() {
    if (f_) std::fclose(f_);
  }
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  /// The next tensor (order, dtype and shape as announced).
  void write(const torch::Tensor& t) {
    const Entry& e = entries_.at(next_++);
    if (t.scalar_type() != e.dtype || t.sizes().vec() != e.shape)
      throw Error("internal: tensor " + ticked(e.name) + " does not match its header entry");
    const auto c = t.contiguous();
    put(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  /// Flush to disk; the file is complete after this.
  void finish() {
    if (next_ != entries_.size()) throw Error("internal: " + path_.string() + " is missing tensors");
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0 || std::fclose(f_) != 0) {
      f_ = nullptr;
      throw SerializationError(path_.string() + ": write failed (disk full?)");
    }
    f_ = nullptr;
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  void put(const char* p, std::size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw SerializationError(path_.string() + ": write failed (disk full?)");
  }
  fs::path path_;
  std::vector<Entry> entries_;
  std::size_t next_ = 0;
  std::FILE* f_ = nullptr;
  std::uint64_t bytes_ = 0;
};

// ---- the base checkpoint ---------------------------------------------------------------------

struct BaseShard {
  std::string name;  ///< file name written under OUT
  SafetensorsFile file;
};

struct BaseCheckpoint {
  std::vector<BaseShard> shards;
  std::optional<JsonValue> index;  ///< model.safetensors.index.json of a sharded base
  fs::path dir;                    ///< directory of side files (empty for a single file)
};

BaseCheckpoint open_base(const fs::path& path) {
  BaseCheckpoint b;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    b.dir = path;
    if (fs::exists(path / "model.safetensors", ec)) {
      b.shards.push_back({"model.safetensors", load_safetensors(path / "model.safetensors")});
    } else if (fs::exists(path / "model.safetensors.index.json", ec)) {
      const auto index_path = path / "model.safetensors.index.json";
      b.index = JsonValue::parse(read_text_file(index_path));
      const JsonValue* map = b.index->find("weight_map");
      if (!map || !map->is_object())
        throw SerializationError(index_path.string() + ": no `weight_map` object");
      std::vector<std::string> names;
      for (const auto& [key, shard] : map->as_object()) {
        if (!shard.is_string() || shard.as_string().empty() || shard.as_string().find('/') != std::string::npos ||
            shard.as_string().find("..") != std::string::npos)
          throw SerializationError(index_path.string() + ": bad shard name for " + ticked(key));
        if (std::find(names.begin(), names.end(), shard.as_string()) == names.end())
          names.push_back(shard.as_string());
      }
      for (const auto& n : names) b.shards.push_back({n, load_safetensors(path / n)});
      // The index and the shards must agree, or the output index would lie.
      std::set<std::string> in_files;
      for (const auto& s : b.shards)
        for (const auto& kv : s.file.tensors) {
          const JsonValue* where = map->find(kv.first);
          if (!where || where->as_string() != s.name)
            throw SerializationError(index_path.string() + ": " + ticked(kv.first) + " is in " + s.name +
                                     " but the weight_map says otherwise");
          in_files.insert(kv.first);
        }
      for (const auto& kv : map->as_object())
        if (!in_files.count(kv.first))
          throw SerializationError(index_path.string() + ": " + ticked(kv.first) + " is listed but not in " +
                                   kv.second.as_string());
    } else if (fs::exists(path / "pytorch_model.bin", ec) || fs::exists(path / "pytorch_model.bin.index.json", ec)) {
      throw SerializationError(path.string() + ": only pytorch_model.bin (pickle) weights; peft-merge reads "
                               "safetensors (hint: convert with transformers: model.save_pretrained(dir, "
                               "safe_serialization=True))");
    } else {
      throw SerializationError(path.string() + ": no model.safetensors or model.safetensors.index.json");
    }
  } else if (fs::is_regular_file(path, ec)) {
    b.shards.push_back({"model.safetensors", load_safetensors(path)});
  } else {
    throw SerializationError(path.string() + ": no such file or directory (--base wants a HF checkpoint directory "
                             "or a .safetensors file)");
  }
  return b;
}

/// Files of a HF model directory that belong beside the weights.
bool is_side_file(const std::string& name) {
  static const std::set<std::string> names = {
      "config.json",         "generation_config.json", "tokenizer.json", "tokenizer_config.json",
      "special_tokens_map.json", "vocab.json",         "merges.txt",     "tokenizer.model",
      "added_tokens.json",   "chat_template.jinja",    "chat_template.json", "vocab.txt",
      "spiece.model",        "preprocessor_config.json"};
  return names.count(name) > 0;
}

const char* hf_dtype_name(torch::ScalarType t) {
  return t == torch::kBFloat16 ? "bfloat16" : t == torch::kHalf ? "float16" : "float32";
}

bool is_inside(const fs::path& p, const fs::path& dir) {
  std::error_code ec;
  const auto a = fs::weakly_canonical(p, ec), d = fs::weakly_canonical(dir, ec);
  auto ai = a.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++ai)
    if (ai == a.end() || *ai != *di) return false;
  return true;
}

void check_out(const fs::path& out, const fs::path& base, const std::vector<MergeAdapter>& adapters,
               bool overwrite) {
  std::error_code ec;
  if (out.empty()) throw Error("peft-merge: no output directory (hint: --out DIR)");
  for (const auto& a : adapters)
    if (is_inside(a.dir, out) || is_inside(out, a.dir))
      throw Error(out.string() + ": the output directory must not contain, or be inside, the adapter " + a.dir.string());
  if (is_inside(base, out) || (fs::is_directory(base, ec) && is_inside(out, base)))
    throw Error(out.string() + ": the output directory must not contain, or be inside, the base " + base.string());
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) throw Error(out.string() + ": exists and is not a directory");
  if (!fs::is_empty(out, ec) && !overwrite)
    throw Error(out.string() + ": exists and is not empty (hint: pass --force to replace it)");
}

/// Rename the finished temporary directory into place (replacing `out` if present).
void commit_dir(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    const fs::path old = out.parent_path() / ("." + out.filename().string() + ".peft-merge-old-" +
                                              std::to_string(::getpid()));
    fs::rename(out, old, ec);
    if (ec) throw SerializationError(out.string() + ": cannot move the old directory aside (" + ec.message() + ")");
    fs::rename(tmp, out, ec);
    if (ec) {
      std::error_code ec2;
      fs::rename(old, out, ec2);
      throw SerializationError(out.string() + ": cannot rename the new directory into place (" + ec.message() + ")");
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, out, ec);
    if (ec) throw SerializationError(out.string() + ": cannot rename the new directory into place (" + ec.message() + ")");
  }
}

}  // namespace

torch::ScalarType parse_merge_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kHalf;
  throw ConfigError("dtype", name, "unknown output dtype", "use float32, bfloat16 or float16");
}

std::vector<std::pair<std::string, torch::Tensor>> merge_state_dict(
    const std::vector<std::pair<std::string, torch::Tensor>>& base, const std::vector<MergeAdapter>& adapters,
    const MergeCheckpointOptions& options, MergeReport* report) {
  std::unordered_map<std::string, torch::Tensor> index;
  for (const auto& [k, t] : base)
    if (!index.emplace(k, t).second) throw SerializationError("base state dict: duplicate key " + ticked(k));
  const Plan plan = make_plan(index, adapters, options);
  TensorList out;
  out.reserve(base.size());
  for (const auto& [k, t] : base) {
    const auto dt = output_dtype(t, options);
    auto it = plan.ops.find(k);
    out.emplace_back(k, it == plan.ops.end() ? t.to(dt) : apply_steps(k, t, it->second, dt));
  }
  if (report) {
    report->merged = plan.merged;
    report->notes = plan.notes;
    report->tensors = out.size();
  }
  return out;
}

MergeReport merge_checkpoint(const fs::path& base_path, const std::vector<MergeAdapter>& adapters,
                             const fs::path& out_arg, const MergeCheckpointOptions& options) {
  const fs::path out = out_arg.has_filename() ? out_arg : out_arg.parent_path();  // "dir/" -> "dir"
  check_out(out, base_path, adapters, options.overwrite);
  BaseCheckpoint base = open_base(base_path);
  std::unordered_map<std::string, torch::Tensor> index;
  for (const auto& s : base.shards)
    for (const auto& [k, t] : s.file.tensors)
      if (!index.emplace(k, t).second)
        throw SerializationError(base_path.string() + ": " + ticked(k) + " appears in two shards");
  const Plan plan = make_plan(index, adapters, options);

  MergeReport report;
  report.merged = plan.merged;
  report.notes = plan.notes;
  MergeProgress progress;
  for (const auto& s : base.shards) {
    progress.tensors_total += s.file.tensors.size();
    for (const auto& [k, t] : s.file.tensors)
      progress.bytes_total += static_cast<std::uint64_t>(t.numel()) * c10::elementSize(output_dtype(t, options));
  }

  std::error_code ec;
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  fs::create_directories(parent, ec);
  const fs::path tmp = parent / ("." + out.filename().string() + ".peft-merge-tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec))
    throw SerializationError(tmp.string() + ": cannot create the temporary output directory (" + ec.message() + ")");
  try {
    JsonValue weight_map = JsonValue::object();
    for (const auto& shard : base.shards) {
      std::vector<StreamWriter::Entry> entries;
      for (const auto& [k, t] : shard.file.tensors) entries.push_back({k, output_dtype(t, options), t.sizes().vec()});
      auto metadata = shard.file.metadata;
      if (std::none_of(metadata.begin(), metadata.end(), [](const auto& kv) { return kv.first == "format"; }))
        metadata.emplace_back("format", "pt");
      StreamWriter w(tmp / shard.name, entries, metadata);
      for (const auto& [k, t] : shard.file.tensors) {
        const auto dt = output_dtype(t, options);
        auto it = plan.ops.find(k);
        w.write(it == plan.ops.end() ? t.to(dt) : apply_steps(k, t, it->second, dt));
        progress.tensors_done++;
        progress.bytes_done += static_cast<std::uint64_t>(t.numel()) * c10::elementSize(dt);
        progress.tensor = k;
        if (options.progress) options.progress(progress);
      }
      w.finish();
      report.bytes += w.bytes();
      report.tensors += entries.size();
      report.files.push_back(shard.name);
    }
    if (base.index) {
      JsonValue index_json = *base.index;
      JsonValue metadata = index_json.find("metadata") ? *index_json.find("metadata") : JsonValue::object();
      if (!metadata.is_object()) metadata = JsonValue::object();
      metadata.set("total_size", JsonValue(static_cast<std::int64_t>(progress.bytes_total)));
      index_json.set("metadata", metadata);
      write_file_atomically(tmp / "model.safetensors.index.json", index_json.dump(2) + "\n");
      report.files.push_back("model.safetensors.index.json");
    }
    if (!base.dir.empty()) {
      for (const auto& e : fs::directory_iterator(base.dir)) {
        const std::string name = e.path().filename().string();
        if (!e.is_regular_file() || !is_side_file(name)) continue;
        if (name == "config.json" && options.dtype) {
          JsonValue cfg = JsonValue::parse(read_text_file(e.path()));
          if (cfg.is_object()) {
            for (const char* field : {"torch_dtype", "dtype"})
              if (cfg.find(field)) cfg.set(field, JsonValue(std::string(hf_dtype_name(*options.dtype))));
            write_file_atomically(tmp / name, cfg.dump(2) + "\n");
            report.files.push_back(name);
            continue;
          }
        }
        fs::copy_file(e.path(), tmp / name, fs::copy_options::overwrite_existing, ec);
        if (ec) throw SerializationError((tmp / name).string() + ": cannot copy " + e.path().string() + " (" + ec.message() + ")");
        report.files.push_back(name);
      }
    }
    commit_dir(tmp, out);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return report;
}

}  // namespace peft
