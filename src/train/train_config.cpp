// YAML training config of peft-finetune. Each key is read from the yaml-cpp node so that every
// error can point at the line and column of the offending value; the `lora:` section goes to
// lora_config_from_yaml, which locates its own errors the same way.

#include "peft/detail/edit_distance.hpp"
#include "peft/detail/shortened.hpp"
#include "peft/train/train_config.hpp"
#include "peft/detail/threads.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "peft/format/atomic_file.hpp"
#include "peft/train/lora_yaml.hpp"
#include "detail/bounded_yaml.hpp"

namespace peft::train {
namespace fs = std::filesystem;

namespace {

const std::map<std::string, std::vector<std::string>>& all_keys() {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"", {"base_model", "data", "training", "output_dir", "resume", "pretrain", "lora", "quantization"}},
      {"quantization",
       {"load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
        "bnb_4bit_quant_storage", "llm_int8_skip_modules"}},
      {"data",
       {"file", "jsonl_field", "heldout_fraction", "format", "heldout_file", "chat_template", "completion_only_loss",
        "assistant_only_loss", "packing", "max_length"}},
      {"training",
       {"steps", "num_train_epochs", "batch_size", "seq_len", "lr", "warmup_steps", "schedule", "min_lr_ratio", "weight_decay",
        "grad_accum", "max_grad_norm", "seed", "device", "dtype", "threads", "eval_every", "eval_batches", "save_every",
        "keep_checkpoints", "log_every", "gradient_checkpointing", "ddp_backend", "ddp_timeout"}},
      {"pretrain", {"file", "steps", "batch_size", "lr", "warmup_steps", "save_dir"}},
  };
  return keys;
}

using peft::detail::edit_distance;

class Reader {
 public:
  Reader(std::string source, fs::path base_dir) : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  std::string where(const YAML::Mark& m) const { return peft::detail::yaml_where(source_, m); }
  static std::string shown(const YAML::Node& n) {
    if (n.IsScalar()) return peft::detail::shortened(n.Tag() == "!" ? "\"" + n.Scalar() + "\"" : n.Scalar());
    if (n.IsMap()) return "<mapping>";
    if (n.IsSequence()) return "<list>";
    return "null";
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& key, const std::string& problem,
                         const std::string& hint, ConfigError::Kind kind = ConfigError::Kind::InvalidValue) const {
    throw TrainConfigError(where(n.Mark()), key, shown(n), problem, hint, kind);
  }

  /// Plain (unquoted) scalar text, or a wrong-type error.
  std::string plain(const YAML::Node& n, const std::string& key, const std::string& want) const {
    if (!n.IsScalar() || n.Tag() == "!" || n.Scalar().empty() || n.Scalar() == "~" || n.Scalar() == "null")
      fail(n, key, "expected " + want, "write it unquoted, e.g. `" + key.substr(key.rfind('.') + 1) + ": " +
                                           (want == "a number" ? "0.001" : want == "true or false" ? "true" : "10") + "`",
           ConfigError::Kind::WrongType);
    return n.Scalar();
  }
  std::int64_t integer(const YAML::Node& n, const std::string& key, std::int64_t min,
                       const std::string& hint) const {
    const std::string s = plain(n, key, "an integer");
    if (!peft::detail::is_yaml_int(s)) fail(n, key, "expected an integer", hint, ConfigError::Kind::WrongType);
    std::int64_t v = 0;
    try {
      v = std::stoll(s);
    } catch (const std::out_of_range&) {
      fail(n, key, "integer out of range", hint);
    }
    if (v < min) fail(n, key, "must be >= " + std::to_string(min), hint);
    return v;
  }
  double number(const YAML::Node& n, const std::string& key) const {
    const std::string s = plain(n, key, "a number");
    if (!peft::detail::is_yaml_float(s))
      fail(n, key, "expected a number", "e.g. 0.001 or 1e-3", ConfigError::Kind::WrongType);
    const double v = peft::detail::yaml_float_value(s);
    if (!std::isfinite(v)) fail(n, key, "must be finite", "e.g. 0.001 or 1e-3");
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& key) const {
    const std::string s = plain(n, key, "true or false");
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    fail(n, key, "expected true or false", "write `true` or `false`", ConfigError::Kind::WrongType);
  }
  std::string string(const YAML::Node& n, const std::string& key, const std::string& hint) const {
    if (!n.IsScalar() || n.Scalar().empty())
      fail(n, key, "expected a non-empty string", hint, ConfigError::Kind::WrongType);
    return n.Scalar();
  }
  std::string choice(const YAML::Node& n, const std::string& key, const std::vector<std::string>& options) const {
    std::string list;
    for (const auto& o : options) list += (list.empty() ? "" : ", ") + o;
    const std::string s = string(n, key, "one of " + list);
    if (std::find(options.begin(), options.end(), s) == options.end()) {
      const std::string guess = closest_key(s, options);
      fail(n, key, "unknown value", guess.empty() ? "one of " + list : "did you mean `" + guess + "`? (one of " + list + ")");
    }
    return s;
  }
  fs::path path(const YAML::Node& n, const std::string& key) const {
    fs::path p = string(n, key, "a file or directory path (relative paths are relative to the config file)");
    return p.is_absolute() || base_dir_.empty() ? p : base_dir_ / p;
  }
  fs::path existing_file(const YAML::Node& n, const std::string& key) const {
    fs::path p = path(n, key);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      fail(n, key, "no such file: " + p.string(), "relative paths are relative to the config file's directory");
    return p;
  }

  /// Walk a mapping, rejecting unknown and duplicate keys, and call `f(key, value)` for each.
  void each(const YAML::Node& map, const std::string& section,
            const std::function<void(const std::string&, const YAML::Node&)>& f) const {
    const std::string shown_section = section.empty() ? "the top level" : "`" + section + ":`";
    if (!map.IsMap())
      fail(map, section.empty() ? "<root>" : section, shown_section + " must be a mapping of keys",
           "see README \"Fine-tuning from the command line\" for the keys", ConfigError::Kind::WrongType);
    const auto& allowed = all_keys().at(section);
    std::set<std::string> seen;
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      const std::string dotted = section.empty() ? key : section + "." + key;
      if (!seen.insert(key).second)
        throw TrainConfigError(where(kv.first.Mark()), dotted, "", "duplicate key", "remove one of them");
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        const std::string guess = closest_key(key, allowed);
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        throw TrainConfigError(where(kv.first.Mark()), dotted, "", "unknown key in " + shown_section,
                               guess.empty() ? "known keys: " + list : "did you mean `" + guess + "`?",
                               ConfigError::Kind::WrongType);
      }
      f(key, kv.second);
    }
  }

 private:
  std::string source_;
  fs::path base_dir_;
};

void read_training(const Reader& r, const YAML::Node& node, TrainingConfig& t) {
  r.each(node, "training", [&](const std::string& k, const YAML::Node& v) {
    const std::string key = "training." + k;
    if (k == "steps") t.steps = r.integer(v, key, 1, "the number of optimizer steps, e.g. 200");
    else if (k == "num_train_epochs") {
      t.num_train_epochs = r.number(v, key);
      if (t.num_train_epochs <= 0) r.fail(v, key, "must be > 0", "passes over the training records, e.g. 3; replaces steps");
    } else if (k == "batch_size") t.batch_size = r.integer(v, key, 1, "sequences per micro-batch, e.g. 8");
    else if (k == "seq_len") t.seq_len = r.integer(v, key, 2, "tokens per sequence, e.g. 64 (at most the model's positions)");
    else if (k == "lr") {
      t.lr = r.number(v, key);
      if (t.lr <= 0) r.fail(v, key, "must be > 0", "e.g. 1e-3 for LoRA");
    } else if (k == "warmup_steps") t.warmup_steps = r.integer(v, key, 0, "0 disables warm-up");
    else if (k == "schedule") {
      const std::string s = r.choice(v, key, {"cosine", "linear", "constant"});
      t.schedule = s == "cosine" ? DecayKind::Cosine : s == "linear" ? DecayKind::Linear : DecayKind::Constant;
    } else if (k == "min_lr_ratio") {
      t.min_lr_ratio = r.number(v, key);
      if (t.min_lr_ratio < 0 || t.min_lr_ratio > 1) r.fail(v, key, "must be in [0, 1]", "the final lr is lr * min_lr_ratio");
    } else if (k == "weight_decay") {
      t.weight_decay = r.number(v, key);
      if (t.weight_decay < 0) r.fail(v, key, "must be >= 0", "0 disables weight decay");
    } else if (k == "grad_accum") t.grad_accum = r.integer(v, key, 1, "micro-batches per optimizer step, 1 = none");
    else if (k == "max_grad_norm") {
      t.max_grad_norm = r.number(v, key);
      if (t.max_grad_norm < 0) r.fail(v, key, "must be >= 0", "0 disables gradient clipping");
    } else if (k == "seed") t.seed = static_cast<std::uint64_t>(r.integer(v, key, 0, "a non-negative integer"));
    else if (k == "device") {
      t.device = r.string(v, key, "cpu, cuda or cuda:N");
      const bool cuda_n = t.device.rfind("cuda:", 0) == 0 && t.device.size() > 5 &&
                          std::all_of(t.device.begin() + 5, t.device.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (t.device != "cpu" && t.device != "cuda" && !cuda_n) r.fail(v, key, "unknown device", "cpu, cuda or cuda:N");
    } else if (k == "dtype") {
      const std::string s = r.choice(v, key, {"float32", "fp32", "bfloat16", "bf16"});
      t.dtype = s == "fp32" ? "float32" : s == "bf16" ? "bfloat16" : s;
    } else if (k == "threads") {
      // Each thread is an OS thread of the intra-op pool: 100000 of them hang the process.
      t.threads = r.integer(v, key, 0, "0 = one per CPU core");
      if (t.threads > max_threads())
        r.fail(v, key, "more than " + std::to_string(max_threads()) + " threads (4 per CPU core, at most 1024)",
               "0 = one per CPU core");
    }
    else if (k == "eval_every") t.eval_every = r.integer(v, key, 0, "0 = evaluate only before and after training");
    else if (k == "eval_batches") t.eval_batches = r.integer(v, key, 0, "0 = every held-out block");
    else if (k == "save_every") t.save_every = r.integer(v, key, 0, "0 = no periodic checkpoints");
    else if (k == "keep_checkpoints") t.keep_checkpoints = r.integer(v, key, 1, "how many of the newest checkpoints to keep");
    else if (k == "log_every") t.log_every = r.integer(v, key, 1, "steps between metrics lines, e.g. 10");
    else if (k == "gradient_checkpointing") t.gradient_checkpointing = r.boolean(v, key);
    else if (k == "ddp_backend") t.ddp_backend = r.choice(v, key, {"auto", "gloo", "nccl"});
    else if (k == "ddp_timeout") {
      t.ddp_timeout = r.number(v, key);
      if (!(t.ddp_timeout > 0) || t.ddp_timeout > 1e7)
        r.fail(v, key, "must be in (0, 1e7] seconds", "how long a rank waits for the others, e.g. 1800");
    }
  });
}

}  // namespace

std::int64_t max_threads() { return detail::max_cpu_threads(); }

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, key.size() / 3) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(key, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

const std::vector<std::string>& train_config_keys(const std::string& section) { return all_keys().at(section); }

TrainConfig train_config_from_yaml(const std::string& text, const std::string& source_name,
                                   std::optional<fs::path> base_dir) {
  TrainConfig cfg;
  cfg.base_dir = base_dir ? *base_dir : fs::path(source_name).parent_path();
  Reader r(source_name, cfg.base_dir);
  YAML::Node root = peft::detail::load_bounded_yaml(text, source_name);
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  bool has_lora = false;
  YAML::Node pretrain_node, base_node;
  r.each(root, "", [&](const std::string& k, const YAML::Node& v) {
    if (k == "base_model") {
      base_node = v;
      cfg.base_model = r.string(v, k, "builtin:tiny-gpt2, builtin:tiny-llama or a Hugging Face model directory");
      if (cfg.base_model.rfind("builtin:", 0) == 0) {
        const std::string name = cfg.base_model.substr(8);
        if (name != "tiny-gpt2" && name != "tiny-llama")
          r.fail(v, k, "unknown builtin model", "builtin:tiny-gpt2 or builtin:tiny-llama");
      } else {
        const fs::path dir = r.path(v, k);
        std::error_code ec;
        if (!fs::is_regular_file(dir / "config.json", ec))
          r.fail(v, k, "not a model directory (no config.json in " + dir.string() + ")",
                 "a Hugging Face checkpoint directory (config.json + model.safetensors), or builtin:tiny-gpt2");
        cfg.base_model = dir.string();
      }
    } else if (k == "data") {
      r.each(v, "data", [&](const std::string& dk, const YAML::Node& dv) {
        const std::string key = "data." + dk;
        if (dk == "file") cfg.data.file = r.existing_file(dv, key);
        else if (dk == "jsonl_field") cfg.data.jsonl_field = r.string(dv, key, "the JSONL field holding the text, e.g. text");
        else if (dk == "heldout_fraction") {
          cfg.data.heldout_fraction = r.number(dv, key);
          if (cfg.data.heldout_fraction <= 0 || cfg.data.heldout_fraction >= 1)
            r.fail(dv, key, "must be in (0, 1)", "e.g. 0.1 keeps the last 10% of the blocks for evaluation");
        } else if (dk == "format") cfg.data.format = r.choice(dv, key, {"auto", "text", "prompt_completion", "messages"});
        else if (dk == "heldout_file") cfg.data.heldout_file = r.existing_file(dv, key);
        else if (dk == "chat_template") cfg.data.chat_template = r.existing_file(dv, key);
        else if (dk == "completion_only_loss") cfg.data.completion_only_loss = r.boolean(dv, key);
        else if (dk == "assistant_only_loss") cfg.data.assistant_only_loss = r.boolean(dv, key);
        else if (dk == "packing") cfg.data.packing = r.boolean(dv, key);
        else if (dk == "max_length")
          cfg.data.max_length = r.integer(dv, key, 2, "tokens per record after truncation, e.g. 256 (omit it for training.seq_len)");
      });
    } else if (k == "training") {
      read_training(r, v, cfg.training);
    } else if (k == "output_dir") {
      // Outputs are relative to the working directory (like every command-line tool), inputs to
      // the config file (so a config and its data can move together).
      cfg.output_dir = r.string(v, k, "a directory for the adapter, checkpoints and metrics");
    } else if (k == "resume") {
      if (v.IsScalar() && v.Tag() != "!" &&
          (v.Scalar() == "true" || v.Scalar() == "false" || v.Scalar() == "True" || v.Scalar() == "False")) {
        cfg.resume = r.boolean(v, k);
      } else {
        cfg.resume = true;
        cfg.resume_from = r.string(v, k, "true, false or a checkpoint directory");
        std::error_code ec;
        if (!fs::is_directory(cfg.resume_from, ec))
          r.fail(v, k, "no such checkpoint directory: " + cfg.resume_from.string(),
                 "true resumes from the newest checkpoint in output_dir/checkpoints");
      }
    } else if (k == "pretrain") {
      pretrain_node = v;
      PretrainConfig p;
      r.each(v, "pretrain", [&](const std::string& pk, const YAML::Node& pv) {
        const std::string key = "pretrain." + pk;
        if (pk == "file") p.file = r.existing_file(pv, key);
        else if (pk == "steps") p.steps = r.integer(pv, key, 1, "pre-training optimizer steps, e.g. 300");
        else if (pk == "batch_size") p.batch_size = r.integer(pv, key, 1, "e.g. 16");
        else if (pk == "lr") {
          p.lr = r.number(pv, key);
          if (p.lr <= 0) r.fail(pv, key, "must be > 0", "e.g. 3e-3");
        } else if (pk == "warmup_steps") p.warmup_steps = r.integer(pv, key, 0, "0 disables warm-up");
        else if (pk == "save_dir") {
          p.save_dir = r.string(pv, key, "a directory name inside output_dir, e.g. base");
          if (fs::path(p.save_dir).is_absolute() || p.save_dir.find("..") != std::string::npos)
            r.fail(pv, key, "must be a relative directory inside output_dir", "e.g. base");
        }
      });
      cfg.pretrain = p;
    } else if (k == "lora") {
      has_lora = true;
    } else if (k == "quantization") {
      BitsAndBytesConfig q;
      r.each(v, "quantization", [&](const std::string& qk, const YAML::Node& qv) {
        const std::string key = "quantization." + qk;
        if (qk == "load_in_4bit") q.load_in_4bit = r.boolean(qv, key);
        else if (qk == "load_in_8bit") q.load_in_8bit = r.boolean(qv, key);
        else if (qk == "bnb_4bit_quant_type") q.bnb_4bit_quant_type = r.choice(qv, key, {"nf4", "fp4"});
        else if (qk == "bnb_4bit_use_double_quant") q.bnb_4bit_use_double_quant = r.boolean(qv, key);
        else if (qk == "bnb_4bit_compute_dtype")
          q.bnb_4bit_compute_dtype = r.choice(qv, key, {"float32", "bfloat16", "float16"});
        else if (qk == "bnb_4bit_quant_storage") q.bnb_4bit_quant_storage = r.choice(qv, key, {"uint8"});
        else if (qk == "llm_int8_skip_modules") {
          if (!qv.IsSequence()) r.fail(qv, key, "must be a list of module names", "e.g. [lm_head]");
          std::vector<std::string> names;
          for (const auto& e : qv) {
            names.push_back(r.string(e, key, "a module name, e.g. lm_head"));
            if (names.back().empty()) r.fail(e, key, "an empty name would keep every module dense", "remove it");
          }
          q.llm_int8_skip_modules = names;
        }
      });
      if (q.load_in_8bit)
        r.fail(v, "quantization.load_in_8bit", "8-bit loading (LLM.int8) is not implemented by peft-cpp",
               "use load_in_4bit: true", ConfigError::Kind::NotImplemented);
      if (!q.load_in_4bit)
        r.fail(v, "quantization.load_in_4bit", "a quantization section needs load_in_4bit: true",
               "add load_in_4bit: true, or remove the section for a dense base");
      cfg.quantization = q;
    }
  });
  if (cfg.pretrain && cfg.base_model.rfind("builtin:", 0) != 0)
    r.fail(pretrain_node, "pretrain", "pre-training needs a builtin base_model (it starts from random weights)",
           "remove `pretrain:` or set base_model: builtin:tiny-gpt2");
  if (cfg.training.eval_batches < 0) cfg.training.eval_batches = 0;
  if (has_lora) {
    cfg.lora = lora_config_from_yaml(text, "lora", source_name);
  } else {
    // Default adapter: every linear layer but the output head, r 8, alpha 16.
    cfg.lora.r = 8;
    cfg.lora.lora_alpha = 16;
    cfg.lora.target_modules = ModuleSpec("all-linear");
  }
  return cfg;
}

TrainConfig load_train_config(const fs::path& path) {
  return train_config_from_yaml(read_text_file(path, 1u << 20), path.string());
}

}  // namespace peft::train
