// optimizer.safetensors metadata and validation (peft/train/detail/adamw_state_layout.hpp).

#include "peft/train/detail/adamw_state_layout.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"

namespace peft::train::detail {

namespace {

std::string exact(double v) {  // %a round-trips every double
  char s[64];
  std::snprintf(s, sizeof s, "%a", v);
  return s;
}

std::string group_key(std::size_t g, const char* field) { return "group." + std::to_string(g) + "." + field; }

}  // namespace

std::vector<std::pair<std::string, std::string>> adamw_state_metadata(const std::vector<AdamWGroupOptions>& groups,
                                                                      const std::vector<std::int64_t>& steps) {
  std::vector<std::pair<std::string, std::string>> m = {{"format", kAdamWStateFormat},
                                                        {"param_groups", std::to_string(groups.size())}};
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const AdamWGroupOptions& o = groups[g];
    m.emplace_back(group_key(g, "params"), std::to_string(o.params));
    m.emplace_back(group_key(g, "lr"), exact(o.lr));
    m.emplace_back(group_key(g, "beta1"), exact(o.beta1));
    m.emplace_back(group_key(g, "beta2"), exact(o.beta2));
    m.emplace_back(group_key(g, "eps"), exact(o.eps));
    m.emplace_back(group_key(g, "weight_decay"), exact(o.weight_decay));
    m.emplace_back(group_key(g, "amsgrad"), o.amsgrad ? "true" : "false");
  }
  for (std::size_t i = 0; i < steps.size(); ++i)
    if (steps[i] >= 0) m.emplace_back("state." + std::to_string(i) + ".step", std::to_string(steps[i]));
  return m;
}

AdamWStateLayout validate_adamw_state(const SafetensorsHeader& header, const std::vector<AdamWGroupOptions>& groups,
                                      const std::vector<ParamSpec>& params, const std::string& where) {
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : header.metadata)
    if (!meta.emplace(k, v).second) throw SerializationError(where + ": metadata key `" + k + "` repeats");
  std::map<std::string, std::string> used;  // the keys read, to refuse any other
  auto get = [&](const std::string& key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) throw SerializationError(where + ": metadata `" + key + "` missing");
    used.insert(*it);
    return it->second;
  };
  auto count = [&](const std::string& key, std::uint64_t max) -> std::uint64_t {
    const std::string& v = get(key);
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
      throw SerializationError(where + ": metadata `" + key + "` = \"" + v + "\" is not a count");
    const std::uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (n > max) throw SerializationError(where + ": metadata `" + key + "` = " + v + " exceeds " + std::to_string(max));
    return n;
  };
  auto real = [&](std::size_t g, const char* field, double lo, double hi, bool hi_open) {
    const std::string& v = get(group_key(g, field));
    char* end = nullptr;
    const double d = v.empty() ? NAN : std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !std::isfinite(d) || d < lo || d > hi || (hi_open && d == hi))
      throw SerializationError(where + ": metadata `" + group_key(g, field) + "` = \"" + v + "\" is not in [" +
                               std::to_string(lo) + ", " + std::to_string(hi) + (hi_open ? ")" : "]"));
    return d;
  };

  if (const std::string& format = get("format"); format != kAdamWStateFormat)
    throw SerializationError(where + ": format \"" + format + "\", expected \"" + kAdamWStateFormat +
                             "\" (hint: written by another program or version)");
  const std::uint64_t n_groups = count("param_groups", groups.size());
  if (n_groups != groups.size())
    throw SerializationError(where + ": " + std::to_string(n_groups) + " parameter group(s), the optimizer has " +
                             std::to_string(groups.size()) + " (hint: the checkpoint belongs to another setup)");
  AdamWStateLayout out;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    AdamWGroupOptions o;
    o.params = static_cast<std::size_t>(count(group_key(g, "params"), params.size()));
    if (o.params != groups[g].params)
      throw SerializationError(where + ": group " + std::to_string(g) + " holds " + std::to_string(o.params) +
                               " parameters, the optimizer's " + std::to_string(groups[g].params) +
                               " (hint: the checkpoint belongs to another config)");
    o.lr = real(g, "lr", 0, HUGE_VAL, false);
    o.beta1 = real(g, "beta1", 0, 1, true);
    o.beta2 = real(g, "beta2", 0, 1, true);
    o.eps = real(g, "eps", 0, HUGE_VAL, false);
    if (o.eps <= 0) throw SerializationError(where + ": metadata `" + group_key(g, "eps") + "` must be > 0");
    o.weight_decay = real(g, "weight_decay", 0, HUGE_VAL, false);
    const std::string& ams = get(group_key(g, "amsgrad"));
    if (ams != "true" && ams != "false")
      throw SerializationError(where + ": metadata `" + group_key(g, "amsgrad") + "` = \"" + ams + "\", expected true or false");
    o.amsgrad = ams == "true";
    out.groups.push_back(o);
  }

  std::map<std::string, int> entries;
  for (std::size_t e = 0; e < header.entries.size(); ++e) entries.emplace(header.entries[e].name, static_cast<int>(e));
  std::vector<bool> tensor_used(header.entries.size(), false);
  out.params.resize(params.size());
  std::size_t i = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t k = 0; k < groups[g].params; ++k, ++i) {
      if (i >= params.size()) throw SerializationError(where + ": more group members than parameters");
      const std::string prefix = "state." + std::to_string(i) + ".";
      auto tensor = [&](const char* name, bool wanted) -> int {
        auto it = entries.find(prefix + name);
        if (!wanted) {
          if (it != entries.end())
            throw SerializationError(where + ": `" + prefix + name + "` present, but " +
                                     (meta.count(prefix + "step") ? "amsgrad is off" : "the parameter has no state"));
          return -1;
        }
        if (it == entries.end()) throw SerializationError(where + ": tensor `" + prefix + name + "` missing");
        const SafetensorsEntry& en = header.entries[static_cast<std::size_t>(it->second)];
        if (en.dtype != params[i].dtype || en.shape != params[i].shape)
          throw SerializationError(where + ": `" + en.name + "` is " + en.dtype + " " + peft::detail::shape_string(en.shape) +
                                   ", its parameter " + params[i].dtype + " " + peft::detail::shape_string(params[i].shape) +
                                   " (hint: the checkpoint belongs to another config)");
        tensor_used[static_cast<std::size_t>(it->second)] = true;
        return it->second;
      };
      AdamWStateLayout::Param& p = out.params[i];
      const bool has_state = meta.count(prefix + "step") > 0;
      if (has_state) {
        p.step = static_cast<std::int64_t>(count(prefix + "step", std::uint64_t{1} << 53));
        if (p.step < 1) throw SerializationError(where + ": metadata `" + prefix + "step` = 0 (a state exists after a step)");
      }
      p.exp_avg = tensor("exp_avg", has_state);
      p.exp_avg_sq = tensor("exp_avg_sq", has_state);
      p.max_exp_avg_sq = tensor("max_exp_avg_sq", has_state && out.groups[g].amsgrad);
    }
  }
  if (i != params.size())
    throw SerializationError(where + ": the groups hold " + std::to_string(i) + " parameters, the optimizer " +
                             std::to_string(params.size()));
  for (const auto& [k, v] : meta)
    if (!used.count(k)) throw SerializationError(where + ": unexpected metadata key `" + k + "`");
  for (std::size_t e = 0; e < header.entries.size(); ++e)
    if (!tensor_used[e]) throw SerializationError(where + ": unexpected tensor `" + header.entries[e].name + "`");
  return out;
}

}  // namespace peft::train::detail
