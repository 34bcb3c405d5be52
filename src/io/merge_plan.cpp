// The merge plan and one tensor's maths (io/detail/merge_plan.hpp), for peft-merge.

#include "peft/io/detail/merge_plan.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "peft/config/lora_config.hpp"
#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/layers/lora_math.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/variants/dora.hpp"

namespace peft::detail {
namespace {

namespace fs = std::filesystem;
const std::string kRoot = adapter_keys::kRoot;
using adapter_keys::LoraTensor;
using adapter_keys::lora_key;
using Op = MergeOp;
using Plan = MergePlan;

std::string leaf_of(const std::string& m) {
  const auto p = m.rfind('.');
  return p == std::string::npos ? m : m.substr(p + 1);
}
std::string parent_of(const std::string& m) {
  const auto p = m.rfind('.');
  return p == std::string::npos ? std::string() : m.substr(0, p);
}

/// PEFT names an adapter's modules after the model class it wrapped (`transformer.h.0.attn.c_attn`
/// for GPT2LMHeadModel), while some checkpoints (the hub's `gpt2`) store the inner model without
/// that first component (`h.0.attn.c_attn.weight`). When none of the adapter's names is in the
/// base but every one is once their shared first component is dropped, rename them all (and say
/// so); anything else is left for make_plan to report. Returns the dropped component or "".
std::string align_with_base_prefix(MergeAdapterData& a,
                                   const std::unordered_map<std::string, torch::Tensor>& base) {
  std::vector<std::string> keys;  // base keys the adapter needs, as written in the adapter
  for (const auto& [m, f] : a.modules) keys.push_back(m + ".weight");
  for (const auto& [m, t] : a.tokens) keys.push_back(m + ".weight");
  for (const auto& [k, t] : a.replacements) keys.push_back(k);
  if (keys.empty()) return "";
  const auto first = [](const std::string& k) { return k.substr(0, k.find('.')); };
  const std::string prefix = first(keys.front());
  for (const std::string& k : keys)
    if (base.count(k) || k.find('.') == std::string::npos || first(k) != prefix ||
        !base.count(k.substr(prefix.size() + 1)))
      return "";
  const auto strip = [&](const std::string& k) { return k.substr(prefix.size() + 1); };
  std::map<std::string, MergeFactors> modules;
  for (auto& [m, f] : a.modules) modules.emplace(strip(m), std::move(f));
  a.modules = std::move(modules);
  std::map<std::string, std::pair<std::vector<std::int64_t>, torch::Tensor>> tokens;
  for (auto& [m, t] : a.tokens) tokens.emplace(strip(m), std::move(t));
  a.tokens = std::move(tokens);
  for (auto& [k, t] : a.replacements) k = strip(k);
  return prefix;
}

}  // namespace

/// Validate every adapter against the base and build the per-tensor steps. `base` maps every
/// base key to a tensor (possibly a view of a mapped file: only shapes and dtypes are read).
Plan make_merge_plan(const std::unordered_map<std::string, torch::Tensor>& base, const std::vector<MergeAdapter>& specs,
               const MergeCheckpointOptions& options) {
  if (specs.empty()) throw Error("peft-merge: no adapter given (hint: --adapter DIR)");
  Plan plan;
  plan.adapters.reserve(specs.size());
  for (const auto& s : specs) {
    plan.adapters.push_back(read_merge_adapter(s));
    const std::string dropped = align_with_base_prefix(plan.adapters.back(), base);
    if (!dropped.empty())
      plan.notes.push_back(s.dir.string() + ": the base checkpoint has no `" + dropped +
                           ".` prefix (e.g. the hub's gpt2); matched the adapter's modules without it");
  }

  struct Pending {
    std::size_t adapter;
    std::string module;
    Op op;
  };
  std::vector<Pending> pending;
  // Layouts decided from shapes, by leaf name and by every enclosing module ("a.b" for "a.b.c.d").
  std::map<std::string, std::set<bool>> by_leaf, by_ancestor;
  for (std::size_t ai = 0; ai < plan.adapters.size(); ++ai) {
    const MergeAdapterData& a = plan.adapters[ai];
    const std::string fname = a.file.string() + ": ";
    const LayerSettingsResolver settings(a.cfg);
    for (const auto& [key, t] : a.replacements) {
      auto it = base.find(key);
      if (it == base.end())
        throw SerializationError(fname + ticked(kRoot + key) + " (bias=\"all\" or modules_to_save) has no " +
                                 ticked(key) + " in the base checkpoint (is this adapter for another base model?)");
      if (it->second.sizes() != t.sizes())
        throw SerializationError(fname + ticked(kRoot + key) + " has shape " + shape_string(t.sizes()) +
                                 ", the base's " + ticked(key) + " has " + shape_string(it->second.sizes()));
      Op op;
      op.kind = Op::Replace;
      op.adapter = ai;
      op.replacement = t;
      plan.ops[key].push_back(op);
      plan.merged.push_back({key, "replaced", ai, 0, 0.0, false});
    }
    for (const auto& [m, tok] : a.tokens) {
      const std::string wkey = m + ".weight";
      auto it = base.find(wkey);
      if (it == base.end())
        throw SerializationError(fname + "trainable tokens of " + ticked(m) + " have no " + ticked(wkey) +
                                 " in the base checkpoint (is this adapter for another base model?)");
      const torch::Tensor& W = it->second;
      if (W.dim() != 2 || W.size(1) != tok.second.size(1))
        throw SerializationError(fname + "trainable tokens of " + ticked(m) + " " + shape_string(tok.second.sizes()) +
                                 " do not fit the base " + ticked(wkey) + " " + shape_string(W.sizes()));
      for (auto i : tok.first)
        if (i < 0 || i >= W.size(0))
          throw SerializationError(fname + "token index " + std::to_string(i) + " of " + ticked(m) +
                                   " is outside the " + std::to_string(W.size(0)) + " rows of " + ticked(wkey));
      Op op;
      op.kind = Op::Rows;
      op.adapter = ai;
      op.replacement = tok.second;
      op.rows = tok.first;
      plan.ops[wkey].push_back(op);
      plan.merged.push_back({wkey, "tokens", ai, 0, 0.0, false});
    }
    std::size_t contradicting = 0;
    for (const auto& [m, f] : a.modules) {
      const std::string wkey = m + ".weight";
      auto it = base.find(wkey);
      if (it == base.end())
        throw SerializationError(fname + "module " + ticked(m) + " has no " + ticked(wkey) +
                                 " in the base checkpoint (is this adapter for another base model?)");
      const torch::Tensor& W = it->second;
      using Layout = MergeFactors::Layout;
      const bool conv = f.layout == Layout::Conv;
      if (!W.is_floating_point() || (conv ? W.dim() != f.A.dim() : W.dim() != 2))
        throw UnsupportedModuleError("base " + ticked(wkey) + " " + shape_string(W.sizes()) + " " +
                                     c10::toString(W.scalar_type()) + " is not a floating-point " +
                                     (conv ? std::to_string(f.A.dim()) + "-dim convolution weight"
                                           : std::string("matrix")) +
                                     " (the adapter's factors are " + shape_string(f.A.sizes()) + " / " +
                                     shape_string(f.B.sizes()) + ")");
      const LayerSettings s = settings(m);
      if (f.A.size(0) != s.r)
        throw SerializationError(fname + ticked(lora_key(m, LoraTensor::A)) + " has rank " +
                                 std::to_string(f.A.size(0)) + " but adapter_config.json gives r = " +
                                 std::to_string(s.r) + " for this module" +
                                 (s.rank_pattern_key ? " (rank_pattern \"" + *s.rank_pattern_key + "\")" : ""));
      const std::int64_t in = f.A.size(1), out = f.B.size(0);
      // Conv: W [out, in, k…] against A [r, in, k…], B [out, r, 1…] (groups 1: grouped ones were
      // refused with the adapter). Embedding: W [num, dim] against A [r, num], B [dim, r].
      const bool fits_conv = conv && W.size(0) == out && W.sizes().slice(1) == f.A.sizes().slice(1);
      const bool fits_linear = !conv && f.layout != Layout::Embedding && W.size(0) == out && W.size(1) == in;
      const bool fits_conv1d = !conv && W.size(0) == in && W.size(1) == out;
      if (!fits_linear && !fits_conv1d && !fits_conv)
        throw SerializationError(fname + ticked(kRoot + m) + ": lora_A " + shape_string(f.A.sizes()) + " / lora_B " +
                                 shape_string(f.B.sizes()) + " do not fit the base weight " + ticked(wkey) + " " +
                                 shape_string(W.sizes()) + " (is this adapter for another base model?)");
      Op op;
      op.kind = Op::Lora;
      op.adapter = ai;
      op.f = &f;
      op.scaling = s.scaling;
      op.weight = a.weight;
      op.r = s.r;
      if (conv || f.layout == Layout::Embedding) {
        op.fan_in_fan_out = !conv;  // an Embedding's delta (B A)ᵀ is laid out like a Conv1D's
      } else if (options.fan_in_fan_out) {
        op.fan_in_fan_out = *options.fan_in_fan_out;
        if (op.fan_in_fan_out ? !fits_conv1d : !fits_linear)
          throw SerializationError(fname + ticked(kRoot + m) + " does not fit the base weight " + ticked(wkey) + " " +
                                   shape_string(W.sizes()) + " with the forced fan_in_fan_out = " +
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
          throw SerializationError(fname + ticked(lora_key(m, LoraTensor::B_bias)) + " " + shape_string(f.b_bias.sizes()) +
                                   " does not fit the base bias " + ticked(bkey) + " " + shape_string(bt->second.sizes()));
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
    const MergeAdapterData& a = plan.adapters[p.adapter];
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
    const MergeFactors& f = *p.op.f;
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
        throw SerializationError(a.file.string() + ": " + ticked(lora_key(p.module, LoraTensor::B_bias)) +
                                 " does not fit the base bias " + ticked(bkey) + " " + shape_string(bt->second.sizes()));
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
torch::Tensor apply_merge_steps(const std::string& key, const torch::Tensor& base, const std::vector<Op>& steps,
                          torch::ScalarType out_dtype) {
  torch::NoGradGuard no_grad;
  auto t = base.to(torch::kFloat32);
  for (const auto& op : steps) {
    if (op.kind == Op::Replace) {
      t = op.replacement.to(torch::kFloat32);
      continue;
    }
    if (op.kind == Op::Rows) {  // PEFT's TrainableTokensLayer merge: index_copy_ of the new rows
      t = t.index_copy(0, torch::tensor(op.rows, torch::kLong), op.replacement.to(torch::kFloat32));
      continue;
    }
    const auto s = op.scaling * op.weight;
    if (op.kind == Op::LoraBias) {
      t = t + op.f->b_bias.to(torch::kFloat32) * s;
      continue;
    }
    if (op.f->layout == MergeFactors::Layout::Conv) {
      // Δ = (B.view(out, r) @ A.view(r, −1)).view(W.shape) · s; DoRA: W' = m / ‖W + Δ‖ · (W + Δ),
      // the norm over every dim but the output channel (PEFT's conv merge).
      const auto r = op.f->A.size(0);
      const auto delta = torch::mm(op.f->B.to(torch::kFloat32).reshape({t.size(0), r}),
                                   op.f->A.to(torch::kFloat32).reshape({r, -1}))
                             .reshape(t.sizes()) *
                         s;
      t = t + delta;
      if (op.f->magnitude.defined()) {
        std::vector<std::int64_t> per_channel(static_cast<std::size_t>(t.dim()), 1);
        per_channel[0] = -1;
        const auto norm = t.flatten(1).norm(2, 1);
        t = (op.f->magnitude.to(torch::kFloat32).flatten() / norm).view(per_channel) * t;
      }
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

}  // namespace peft::detail
