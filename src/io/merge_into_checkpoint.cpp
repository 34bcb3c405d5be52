// Adapter -> checkpoint merging on state dicts (include/peft/io/merge_into_checkpoint.hpp): the
// output entries (4-bit bases included) and the streamed, atomic output. The plan and the maths
// are merge_plan.cpp, reading one adapter merge_adapter.cpp; the base checkpoint is
// io/hf_checkpoint, the writer io/safetensors_writer.

#include "peft/io/merge_into_checkpoint.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/detail/merge_output.hpp"
#include "peft/io/detail/merge_plan.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors_writer.hpp"
#include "peft/quant/detail/checkpoint_states.hpp"
#include "peft/quant/quantize_4bit.hpp"
#include "peft/warnings.hpp"

namespace peft {
namespace {

namespace fs = std::filesystem;
using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;

using detail::ticked;
using Op = detail::MergeOp;
using Plan = detail::MergePlan;

torch::ScalarType output_dtype(const torch::Tensor& base, const MergeCheckpointOptions& o) {
  return (o.dtype && base.is_floating_point()) ? *o.dtype : base.scalar_type();
}

// ---- the output entries ----------------------------------------------------------------------

/// The base as the plan validates it: a 4-bit weight as a dense stand-in of its state's shape
/// and dtype (a broadcast scalar: no storage), its state entries left out.
std::unordered_map<std::string, torch::Tensor> dense_view(const std::unordered_map<std::string, torch::Tensor>& base,
                                                          const detail::Bnb4bitWeights& q) {
  std::unordered_map<std::string, torch::Tensor> view;
  for (const auto& [k, t] : base) {
    if (q.owner.count(k)) continue;
    auto st = q.states.find(k);
    view.emplace(k, st == q.states.end() ? t : torch::zeros({}, st->second.dtype).expand(st->second.shape));
  }
  return view;
}

/// One tensor of the output: key, dtype and shape (for the file header) and how to make it.
struct OutEntry {
  std::string key;
  torch::ScalarType dtype;
  std::vector<std::int64_t> shape;
  std::function<torch::Tensor()> make;
};

/// The output of one shard's tensors, in order. `all` holds every base tensor (a 4-bit weight's
/// state may sit in another shard than its codes). Requantised 4-bit entries are computed here,
/// before the shard's header is written (their JSON length is only known then): 4-bit bytes of
/// the shard's merged weights at most.
std::vector<OutEntry> shard_outputs(const TensorList& tensors, const std::unordered_map<std::string, torch::Tensor>& all,
                                    const Plan& plan, const detail::Bnb4bitWeights& q,
                                    const MergeCheckpointOptions& o) {
  const bool requantize = o.quantized_base == QuantizedBaseMerge::requantize;
  std::unordered_map<std::string, torch::Tensor> rewritten;  // requantize: codes and state entries
  if (requantize) {
    std::set<std::string> weights;
    for (const auto& [k, t] : tensors) {
      auto own = q.owner.find(k);
      const std::string w = own != q.owner.end() ? own->second : q.states.count(k) ? k : std::string();
      if (!w.empty() && (plan.ops.count(w) || (o.dtype && *o.dtype != q.states.at(w).dtype))) weights.insert(w);
    }
    for (const auto& w : weights) {
      const QuantState4bit& st = q.states.at(w);
      const auto dt = o.dtype.value_or(st.dtype);
      auto steps = plan.ops.find(w);
      if (steps == plan.ops.end()) {  // only the dtype its state dequantises to changes
        QuantState4bit moved = st;
        moved.dtype = dt;
        for (auto& e : moved.state_dict_entries(w)) rewritten.insert(std::move(e));
        continue;
      }
      // PEFT's Linear4bit.merge: dequantise, add the delta, quantise again like the old state.
      const auto merged = detail::apply_merge_steps(w, dequantize_4bit(all.at(w), st, torch::kFloat32), steps->second, dt);
      auto [codes, fresh] = quantize_4bit(merged, st.quant_type, st.blocksize, st.nested());
      rewritten.emplace(w, codes.reshape(all.at(w).sizes()));
      for (auto& e : fresh.state_dict_entries(w)) rewritten.insert(std::move(e));
    }
  }
  std::vector<OutEntry> out;
  for (const auto& [k, t] : tensors) {
    auto steps_it = plan.ops.find(k);
    const std::vector<Op>* steps = steps_it == plan.ops.end() ? nullptr : &steps_it->second;
    auto st = q.states.find(k);
    if (requantize && (st != q.states.end() || q.owner.count(k))) {
      auto r = rewritten.find(k);
      const torch::Tensor v = r == rewritten.end() ? t : r->second;
      out.push_back({k, v.scalar_type(), v.sizes().vec(), [v] { return v; }});
    } else if (st != q.states.end()) {  // dequantize: a dense weight (its state entries are dropped)
      const QuantState4bit& state = st->second;
      const auto dt = o.dtype.value_or(state.dtype);
      out.push_back({k, dt, state.shape, [key = k, codes = t, &state, steps, dt] {
                       return steps ? detail::apply_merge_steps(key, dequantize_4bit(codes, state, torch::kFloat32), *steps, dt)
                                    : dequantize_4bit(codes, state, dt);
                     }});
    } else if (!q.owner.count(k)) {
      const auto dt = output_dtype(t, o);
      out.push_back({k, dt, t.sizes().vec(), [key = k, base = t, steps, dt] {
                       return steps ? detail::apply_merge_steps(key, base, *steps, dt) : base.to(dt);
                     }});
    }
  }
  return out;
}

/// What the report says about a 4-bit base; PEFT's warning when weights are requantised.
void report_4bit(const detail::Bnb4bitWeights& q, const Plan& plan, const MergeCheckpointOptions& o,
                 std::vector<std::string>& notes) {
  if (q.empty()) return;
  std::size_t merged = 0;
  for (const auto& [w, st] : q.states) merged += plan.ops.count(w);
  const std::string counts = std::to_string(q.states.size()) + " bitsandbytes 4-bit weights (" +
                             std::to_string(merged) + " merged)";
  if (o.quantized_base == QuantizedBaseMerge::dequantize) {
    notes.push_back(counts + " written dense, as trained; their quant states and config.json's "
                    "quantization_config dropped (hint: --quantized-base requantize keeps them 4-bit, as PEFT's merge does)");
    return;
  }
  notes.push_back(counts + ": the merged ones requantised like their states, the others copied");
  if (merged > 0) warn("Merge lora module to 4-bit linear may get different generations due to rounding errors.");
}

// ---- the base checkpoint ---------------------------------------------------------------------

/// The base checkpoint (io/hf_checkpoint.hpp), with peft-merge's own messages for what it cannot read.
HfCheckpoint open_base(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec) && !fs::is_regular_file(path, ec))
    throw SerializationError(path.string() + ": no such file or directory (--base wants a HF checkpoint directory "
                             "or a .safetensors file)");
  return open_hf_checkpoint(path);
}

/// The file name a base shard gets under OUT (a single file becomes OUT/model.safetensors).
std::string output_name(const HfCheckpoint& base, std::size_t shard) {
  return base.files.index ? base.files.shard_names[shard] : std::string("model.safetensors");
}


const char* hf_dtype_name(torch::ScalarType t) {
  return t == torch::kBFloat16 ? "bfloat16" : t == torch::kHalf ? "float16" : "float32";
}

}  // namespace

torch::ScalarType parse_merge_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16") return torch::kHalf;
  throw ConfigError::about("peft-merge", "dtype", name, "unknown output dtype", "use float32, bfloat16 or float16");
}

QuantizedBaseMerge parse_quantized_base_merge(const std::string& name) {
  if (name == "dequantize") return QuantizedBaseMerge::dequantize;
  if (name == "requantize") return QuantizedBaseMerge::requantize;
  throw ConfigError::about("peft-merge", "quantized_base", name, "unknown choice for a 4-bit base",
                           "use dequantize (dense output, exact) or requantize (4-bit output, PEFT's lossy merge)");
}

std::vector<std::pair<std::string, torch::Tensor>> merge_state_dict(
    const std::vector<std::pair<std::string, torch::Tensor>>& base, const std::vector<MergeAdapter>& adapters,
    const MergeCheckpointOptions& options, MergeReport* report) {
  std::unordered_map<std::string, torch::Tensor> index;
  for (const auto& [k, t] : base)
    if (!index.emplace(k, t).second) throw SerializationError("base state dict: duplicate key " + ticked(k));
  const auto q = detail::find_bnb_4bit_weights(index, [](const std::string&) { return "base state dict"; });
  const Plan plan = detail::make_merge_plan(dense_view(index, q), adapters, options);
  MergeReport r;
  r.merged = plan.merged;
  r.notes = plan.notes;
  report_4bit(q, plan, options, r.notes);
  TensorList out;
  out.reserve(base.size());
  for (const auto& e : shard_outputs(base, index, plan, q, options)) out.emplace_back(e.key, e.make());
  r.tensors = out.size();
  if (report) *report = std::move(r);
  return out;
}

MergeReport merge_checkpoint(const fs::path& base_path, const std::vector<MergeAdapter>& adapters,
                             const fs::path& out_arg, const MergeCheckpointOptions& options) {
  const fs::path out = out_arg.has_filename() ? out_arg : out_arg.parent_path();  // "dir/" -> "dir"
  std::vector<fs::path> adapter_dirs;
  for (const auto& a : adapters) adapter_dirs.push_back(a.dir);
  detail::clean_merge_scratch(out);
  detail::check_merge_out(out, base_path, adapter_dirs, options.overwrite);
  const HfCheckpoint base = open_base(base_path);
  const auto side_files =
      base.files.dir.empty() ? std::vector<detail::MergeSideFile>{} : detail::merge_side_files(base.files.dir);
  std::unordered_map<std::string, torch::Tensor> index;
  std::unordered_map<std::string, std::size_t> shard_of;
  for (std::size_t si = 0; si < base.shards.size(); ++si)
    for (const auto& [k, t] : base.shards[si].tensors) {
      if (!index.emplace(k, t).second)
        throw SerializationError(base_path.string() + ": " + ticked(k) + " appears in two shards");
      shard_of.emplace(k, si);
    }
  const auto q = detail::find_bnb_4bit_weights(index, [&](const std::string& k) {
    return base.files.shards.empty() ? base_path.string() : base.files.shards[shard_of.at(k)].string();
  });
  const Plan plan = detail::make_merge_plan(dense_view(index, q), adapters, options);

  MergeReport report;
  report.merged = plan.merged;
  report.notes = plan.notes;
  report_4bit(q, plan, options, report.notes);
  MergeProgress progress;
  for (const auto& s : base.shards)
    for (const auto& [k, t] : s.tensors) {
      if (q.owner.count(k) && options.quantized_base == QuantizedBaseMerge::dequantize) continue;
      auto st = q.states.find(k);
      const bool dense = st != q.states.end() && options.quantized_base == QuantizedBaseMerge::dequantize;
      const auto numel = dense ? c10::multiply_integers(st->second.shape) : t.numel();
      const auto dt = dense ? options.dtype.value_or(st->second.dtype)
                            : (q.states.count(k) || q.owner.count(k)) ? t.scalar_type() : output_dtype(t, options);
      progress.tensors_total++;
      progress.bytes_total += static_cast<std::uint64_t>(numel) * c10::elementSize(dt);
    }

  std::error_code ec;
  const fs::path tmp = detail::make_merge_scratch(out);
  std::set<std::string> written;  // keys, for a sharded index's weight_map
  try {
    for (std::size_t si = 0; si < base.shards.size(); ++si) {
      const SafetensorsFile& shard = base.shards[si];
      const std::string name = output_name(base, si);
      const auto entries = shard_outputs(shard.tensors, index, plan, q, options);
      std::vector<SafetensorsTensorSpec> specs;
      for (const auto& e : entries) specs.push_back({e.key, e.dtype, e.shape});
      auto metadata = shard.metadata;
      if (std::none_of(metadata.begin(), metadata.end(), [](const auto& kv) { return kv.first == "format"; }))
        metadata.emplace_back("format", "pt");
      SafetensorsWriter w(tmp / name, std::move(specs), metadata);
      for (const auto& e : entries) {
        const auto t = e.make();
        w.write(t);
        written.insert(e.key);
        progress.tensors_done++;
        progress.bytes_done += static_cast<std::uint64_t>(t.numel()) * c10::elementSize(e.dtype);
        progress.tensor = e.key;
        if (progress.tensors_done == progress.tensors_total) progress.bytes_total = progress.bytes_done;
        if (options.progress) options.progress(progress);
      }
      w.commit();
      report.bytes += w.bytes();
      report.tensors += entries.size();
      report.files.push_back(name);
    }
    if (base.files.index) {
      JsonValue index_json = *base.files.index;
      JsonValue metadata = index_json.find("metadata") ? *index_json.find("metadata") : JsonValue::object();
      if (!metadata.is_object()) metadata = JsonValue::object();
      metadata.set("total_size", JsonValue(static_cast<std::int64_t>(progress.bytes_done)));
      index_json.set("metadata", metadata);
      if (const JsonValue* map = index_json.find("weight_map"); map && map->is_object()) {
        JsonValue kept = JsonValue::object();  // dequantised 4-bit states are gone
        for (const auto& [k, v] : map->as_object())
          if (written.count(k)) kept.set(k, v);
        index_json.set("weight_map", kept);
      }
      write_file_atomically(tmp / "model.safetensors.index.json", index_json.dump(2) + "\n");
      report.files.push_back("model.safetensors.index.json");
    }
    const bool dense_from_4bit = !q.empty() && options.quantized_base == QuantizedBaseMerge::dequantize;
    for (const auto& side : side_files) {
      std::string bytes = side.bytes;  // read (and its real path checked) by merge_side_files
      if (side.name == "config.json" && (options.dtype || dense_from_4bit)) {
        JsonValue cfg = JsonValue::parse(bytes);
        if (cfg.is_object()) {
          if (options.dtype)
            for (const char* field : {"torch_dtype", "dtype"})
              if (cfg.find(field)) cfg.set(field, JsonValue(std::string(hf_dtype_name(*options.dtype))));
          if (dense_from_4bit) cfg.erase("quantization_config");
          bytes = cfg.dump(2) + "\n";
        }
      }
      write_file_atomically(tmp / side.name, bytes);
      report.files.push_back(side.name);
    }
    detail::commit_merge_dir(tmp, out);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return report;
}

}  // namespace peft
