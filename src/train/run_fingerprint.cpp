// The run fingerprint of a training config (peft/train/run_fingerprint.hpp).

#include "peft/train/run_fingerprint.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "peft/config/config_json.hpp"
#include "peft/error.hpp"
#include "peft/format/checksum.hpp"

namespace peft::train {

namespace {

/// Round-trip exact text of a double ("0.001" stays "0.001"; 17 digits where needed).
std::string number(double v) {
  char s[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(s, sizeof s, "%.*g", precision, v);
    if (std::strtod(s, nullptr) == v) break;
  }
  return s;
}

/// A data file by content: what is trained on matters, not where it lies.
std::string file_identity(const std::filesystem::path& p) {
  if (p.empty()) return "";
  try {
    const FileChecksum c = checksum_file(p);
    return std::to_string(c.size) + " bytes, crc32 " + crc32_hex(c.crc32);
  } catch (const SerializationError&) {
    return "unreadable";
  }
}

const char* schedule_name(DecayKind k) {
  switch (k) {
    case DecayKind::Cosine: return "cosine";
    case DecayKind::Linear: return "linear";
    case DecayKind::Constant: return "constant";
  }
  return "?";
}

std::string canonical_text(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string text;
  for (const auto& [k, v] : fields) text += k + '\0' + v + '\0';
  return text;
}

}  // namespace

std::string RunFingerprint::hash() const { return crc32_hex(crc32_of(canonical_text(fields))); }

JsonValue RunFingerprint::to_json() const {
  JsonValue config = JsonValue::object();
  for (const auto& [k, v] : fields) config.set(k, v);
  JsonValue o = JsonValue::object();
  o.set("fingerprint", hash());
  o.set("config", std::move(config));
  return o;
}

RunFingerprint RunFingerprint::from_json(const JsonValue& j, const std::string& where) {
  const JsonValue* fp = j.find("fingerprint");
  const JsonValue* config = j.find("config");
  if (!fp || !fp->is_string() || !config || !config->is_object())
    throw SerializationError(where + ": `run` needs a string `fingerprint` and an object `config`");
  RunFingerprint r;
  for (const auto& [k, v] : config->as_object()) {
    if (!v.is_string()) throw SerializationError(where + ": run.config." + k + " is not a string");
    if (!r.fields.empty() && !(r.fields.back().first < k))
      throw SerializationError(where + ": run.config keys are not sorted or repeat (at `" + k + "`)");
    r.fields.emplace_back(k, v.as_string());
  }
  if (r.hash() != fp->as_string())
    throw SerializationError(where + ": run.fingerprint " + fp->as_string() + " does not match run.config (" +
                             r.hash() + "): the file was altered");
  return r;
}

std::string RunFingerprint::differences(const RunFingerprint& now, std::size_t max) const {
  std::string out;
  std::size_t shown = 0, total = 0;
  auto note = [&](const std::string& key, const std::string* a, const std::string* b) {
    if (++total > max) return;
    ++shown;
    out += (out.empty() ? "" : "; ") + key + ": " + (a ? "\"" + *a + "\"" : std::string("(none)")) +
           " (checkpoint) vs " + (b ? "\"" + *b + "\"" : std::string("(none)")) + " (now)";
  };
  auto i = fields.begin();
  auto k = now.fields.begin();
  while (i != fields.end() || k != now.fields.end()) {
    if (k == now.fields.end() || (i != fields.end() && i->first < k->first)) {
      note(i->first, &i->second, nullptr);
      ++i;
    } else if (i == fields.end() || k->first < i->first) {
      note(k->first, nullptr, &k->second);
      ++k;
    } else {
      if (i->second != k->second) note(i->first, &i->second, &k->second);
      ++i, ++k;
    }
  }
  if (total > shown) out += "; and " + std::to_string(total - shown) + " more";
  return out;
}

RunFingerprint run_fingerprint(const TrainConfig& c) {
  std::vector<std::pair<std::string, std::string>> f;
  auto add = [&](const std::string& k, std::string v) { f.emplace_back(k, std::move(v)); };
  add("base_model", c.base_model);
  if (c.pretrain) {
    const PretrainConfig& p = *c.pretrain;
    add("pretrain.file", file_identity(p.file));
    add("pretrain.steps", std::to_string(p.steps));
    add("pretrain.batch_size", std::to_string(p.batch_size));
    add("pretrain.lr", number(p.lr));
    add("pretrain.warmup_steps", std::to_string(p.warmup_steps));
    add("pretrain.save_dir", p.save_dir);
  }
  const DataConfig& d = c.data;
  add("data.file", file_identity(d.file));
  add("data.heldout_file", file_identity(d.heldout_file));
  add("data.chat_template", file_identity(d.chat_template));
  add("data.jsonl_field", d.jsonl_field);
  add("data.heldout_fraction", number(d.heldout_fraction));
  add("data.format", d.format);
  add("data.completion_only_loss", d.completion_only_loss ? "true" : "false");
  add("data.assistant_only_loss", d.assistant_only_loss ? "true" : "false");
  add("data.packing", d.packing ? "true" : "false");
  add("data.max_length", std::to_string(d.max_length));
  const TrainingConfig& t = c.training;
  add("training.batch_size", std::to_string(t.batch_size));
  add("training.seq_len", std::to_string(t.seq_len));
  add("training.lr", number(t.lr));
  add("training.warmup_steps", std::to_string(t.warmup_steps));
  add("training.schedule", schedule_name(t.schedule));
  add("training.min_lr_ratio", number(t.min_lr_ratio));
  add("training.weight_decay", number(t.weight_decay));
  add("training.grad_accum", std::to_string(t.grad_accum));
  add("training.max_grad_norm", number(t.max_grad_norm));
  add("training.seed", std::to_string(t.seed));
  add("training.dtype", t.dtype);
  const JsonValue lora = to_json_value(c.lora);
  if (lora.is_object())
    for (const auto& [k, v] : lora.as_object())
      if (k != "base_model_name_or_path") add("lora." + k, v.is_string() ? v.as_string() : v.dump());
  std::sort(f.begin(), f.end());
  return RunFingerprint{std::move(f)};
}

}  // namespace peft::train
