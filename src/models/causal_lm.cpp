// Loading, saving and building the reference decoders (models/causal_lm.hpp).

#include "peft/models/causal_lm.hpp"

#include <torch/nn/functional/loss.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/detail/checkpoint_files.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/quant/detail/checkpoint_states.hpp"
#include "peft/quant/quantize_model.hpp"
#include "peft/format/json_value.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/models/load_4bit.hpp"

namespace peft::models {
namespace {

using detail::ends_with;
using detail::starts_with;

/// The builtin configs. Byte vocabulary: 256 bytes + <|endoftext|> (id 256, also bos/eos).
GPT2Config tiny_gpt2_config() {
  GPT2Config c;
  c.vocab_size = 257;
  c.n_positions = 256;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.0;
  c.extra.set("bos_token_id", 256);
  c.extra.set("eos_token_id", 256);
  return c;
}

LlamaConfig tiny_llama_config() {
  LlamaConfig c;
  c.vocab_size = 257;
  c.hidden_size = 64;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  c.extra.set("bos_token_id", 256);
  c.extra.set("eos_token_id", 256);
  return c;
}

/// A model of the config's architecture, initialised from the global RNG.
/// The sizes config.json asks for, against the tensors the checkpoint's headers describe, before
/// anything is built: a 106-byte config.json must not make us allocate a 160k x 4096 embedding
/// or a billion layers. Checks the layer count (layers.N. / h.N. in the tensor names) and the
/// input embedding's [vocab, hidden]; everything else is compared shape by shape when loading.
void check_config_fits_checkpoint(const JsonValue& config, const std::filesystem::path& dir, const std::string& source) {
  std::int64_t layers = 0;
  const SafetensorsEntry* embedding = nullptr;
  std::vector<peft::detail::ShardHeader> headers;
  HfCheckpointFiles files;
  try {
    files = resolve_hf_checkpoint(dir);
  } catch (const SerializationError&) {
    return;  // no weights: the config's own errors come first, then load_checkpoint says so
  }
  for (const auto& f : files.shards) headers.push_back(peft::detail::read_shard_header(f));
  for (const auto& h : headers)
    for (const auto& e : h.header.entries) {
      for (const char* marker : {"layers.", "h."}) {
        const auto at = e.name.find(std::string(".") + marker);
        const auto start = at == std::string::npos ? (e.name.rfind(marker, 0) == 0 ? 0 : std::string::npos) : at + 1;
        if (start == std::string::npos) continue;
        std::size_t i = start + std::strlen(marker);
        std::int64_t n = 0;
        bool digits = false;
        while (i < e.name.size() && std::isdigit(static_cast<unsigned char>(e.name[i])) && n < (1 << 24))
          n = n * 10 + (e.name[i++] - '0'), digits = true;
        if (digits && i < e.name.size() && e.name[i] == '.') layers = std::max(layers, n + 1);
      }
      if (ends_with(e.name, "embed_tokens.weight") || ends_with(e.name, "wte.weight")) embedding = &e;
    }
  auto number = [&](std::initializer_list<const char*> keys) -> std::pair<std::string, std::int64_t> {
    for (const char* k : keys)
      if (const JsonValue* v = config.find(k); v && v->is_number()) return {k, static_cast<std::int64_t>(v->as_double())};
    return {"", -1};
  };
  const auto [layer_key, n_layers] = number({"num_hidden_layers", "n_layer"});
  if (n_layers > layers)
    throw SerializationError(source + ": " + layer_key + " = " + std::to_string(n_layers) + " but the checkpoint has tensors for " +
                             std::to_string(layers) + " layers (hint: config.json and the weights do not belong together)");
  if (!embedding || embedding->shape.size() != 2) return;
  const auto [vocab_key, vocab] = number({"vocab_size"});
  const auto [hidden_key, hidden] = number({"hidden_size", "n_embd"});
  if ((vocab >= 0 && vocab != embedding->shape[0]) || (hidden >= 0 && hidden != embedding->shape[1]))
    throw SerializationError(source + ": " + vocab_key + " = " + std::to_string(vocab) + ", " + hidden_key + " = " +
                             std::to_string(hidden) + " but the checkpoint's `" + embedding->name + "` is [" +
                             std::to_string(embedding->shape[0]) + ", " + std::to_string(embedding->shape[1]) +
                             "] (hint: config.json and the weights do not belong together)");
}

CausalLM build(const JsonValue& config, const std::string& source) {
  const JsonValue* type = config.is_object() ? config.find("model_type") : nullptr;
  const std::string t = type && type->is_string() ? type->as_string() : "";
  if (t == "gpt2") return std::make_shared<GPT2LMHeadModelImpl>(gpt2_config_from_json(config, source));
  for (const auto& family : llama_family_model_types())
    if (t == family) return std::make_shared<LlamaForCausalLMImpl>(llama_config_from_json(config, source));
  throw ModelConfigError("config", "model_type", type ? type->dump() : "",
                         type ? "unsupported architecture" : "missing from config.json",
                         "the reference models are gpt2, llama, mistral, qwen2, qwen3, gemma and phi3",
                         type ? ConfigError::Kind::NotImplemented : ConfigError::Kind::WrongType)
      .located(source);
}

/// HF checkpoint key -> our key: adds the base-model prefix the original GPT-2 files lack, skips
/// buffers transformers no longer keeps and a tied lm_head.
CheckpointRename checkpoint_rename(CausalLMImpl& model) {
  const std::string prefix = model.model_type() == "gpt2" ? "transformer." : "model.";
  std::set<std::string> keys;
  for (const auto& k : model.checkpoint_keys()) keys.insert(k);
  return [prefix, keys](const std::string& key) -> std::string {
    if (ends_with(key, ".attn.bias") || ends_with(key, ".attn.masked_bias") || ends_with(key, "rotary_emb.inv_freq"))
      return "";
    if (key == "lm_head.weight" && !keys.count(key)) return "";  // tied: the embedding is the head
    if (!keys.count(key) && !starts_with(key, prefix) && keys.count(prefix + key)) return prefix + key;
    return key;
  };
}

/// config.json's `dtype` (transformers 5) or `torch_dtype` (transformers 4); float32 when both are
/// absent or null.
torch::Dtype config_dtype(const JsonValue& config, const std::string& source) {
  for (const char* field : {"dtype", "torch_dtype"}) {
    const JsonValue* v = config.is_object() ? config.find(field) : nullptr;
    if (!v || v->is_null()) continue;
    if (v->is_string()) {
      std::string name = v->as_string();
      if (starts_with(name, "torch.")) name = name.substr(6);
      if (name == "float32" || name == "float") return torch::kFloat32;
      if (name == "bfloat16") return torch::kBFloat16;
      if (name == "float16" || name == "half") return torch::kFloat16;
      if (name == "float64" || name == "double") return torch::kFloat64;
    }
    throw ModelConfigError("config", field, v->dump(), "not a dtype the reference models load in",
                           "float32, bfloat16, float16 or float64; or pass a dtype to load_causal_lm")
        .located(source);
  }
  return torch::kFloat32;
}

/// A pre-quantised (transformers + bitsandbytes) checkpoint: every 4-bit Linear adopts its state
/// and an uninitialised code buffer, which load_checkpoint then fills like any weight. All states
/// are read and checked before any layer changes.
void adopt_4bit_weights(CausalLMImpl& model, const std::filesystem::path& dir, const BitsAndBytesConfig& q,
                        const CheckpointRename& rename) {
  const HfCheckpoint ck = open_hf_checkpoint(dir);
  std::unordered_map<std::string, torch::Tensor> tensors;
  std::unordered_map<std::string, std::size_t> shard_of;
  for (std::size_t i = 0; i < ck.shards.size(); ++i)
    for (const auto& [key, t] : ck.shards[i].tensors) {
      tensors.emplace(key, t);
      shard_of.emplace(key, i);
    }
  const auto found = detail::find_bnb_4bit_weights(
      tensors, [&](const std::string& key) { return ck.files.shards[shard_of.at(key)].string(); });
  const auto modules = model.named_modules();
  std::vector<std::tuple<LinearImpl*, torch::Tensor, QuantState4bit>> todo;
  for (const auto& [wkey, st] : found.states) {
    const std::string mkey = rename(wkey);
    const std::string module_name = mkey.size() > 7 ? mkey.substr(0, mkey.size() - 7) : "";
    const auto* m = modules.find(module_name);
    auto* lin = m ? dynamic_cast<LinearImpl*>(m->get()) : nullptr;
    if (!lin)
      throw SerializationError(dir.string() + ": `" + wkey + "` is 4-bit but the model has no Linear layer `" +
                               module_name + "` (hint: config.json and the weights do not belong together)");
    todo.emplace_back(lin, torch::empty(tensors.at(wkey).sizes(), torch::kUInt8), st.clone());
  }
  const auto compute = bnb_compute_dtype(q);
  const auto device = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
  for (auto& [lin, codes, st] : todo) lin->set_quantized_weight(codes.to(device), st, compute);
}

/// The `quantization_config` for config.json from a model's 4-bit layers (transformers' names);
/// nullopt for a dense model.
std::optional<BitsAndBytesConfig> bnb_config_of(CausalLMImpl& model) {
  std::optional<BitsAndBytesConfig> q;
  // Every layer transformers would convert (Linear, GPT-2's Conv1D) that stays dense here, named
  // in llm_int8_skip_modules: an empty list there would make transformers quantise them.
  std::vector<std::string> dense;
  bool head_quantised = false;
  for (const auto& item : model.named_modules()) {
    if (dynamic_cast<Conv1DImpl*>(item.value().get())) dense.push_back(item.key());
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (!lin) continue;
    if (!lin->quantized()) {
      dense.push_back(item.key());
      continue;
    }
    head_quantised = head_quantised || item.key() == "lm_head";
    if (q) continue;
    const auto* s = lin->quant_state();
    BitsAndBytesConfig c;
    c.load_in_4bit = true;
    c.bnb_4bit_quant_type = to_string(s->state.quant_type);
    c.bnb_4bit_use_double_quant = s->state.nested();
    const auto cd = s->compute_dtype.value_or(torch::kFloat32);
    c.bnb_4bit_compute_dtype = cd == torch::kBFloat16 ? "bfloat16" : cd == torch::kFloat16 ? "float16" : "float32";
    q = c;
  }
  // A tied head is no Linear here but one in transformers' model, which quantises it unless
  // listed (its own default list, get_keys_to_not_convert, holds the head).
  if (q && !head_quantised && std::find(dense.begin(), dense.end(), "lm_head") == dense.end())
    dense.push_back("lm_head");
  if (q) q->llm_int8_skip_modules = dense;
  return q;
}

std::string strip_builtin(const std::string& name) {
  return starts_with(name, "builtin:") ? name.substr(8) : name;
}

/// Restores the global CPU generator on scope exit: the layer constructors draw from it before
/// init_weights overwrites every value from the seeded generator.
class GlobalRngRestore {
 public:
  GlobalRngRestore() : gen_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    state_ = gen_.get_state();
  }
  ~GlobalRngRestore() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(state_);
  }

 private:
  at::Generator gen_;
  torch::Tensor state_;
};

}  // namespace

std::vector<std::string> builtin_names() { return {"tiny-gpt2", "tiny-llama"}; }

CausalLM make_builtin(const std::string& name, uint64_t seed) {
  const std::string n = strip_builtin(name);
  GlobalRngRestore keep_global_rng;
  auto gen = at::detail::createCPUGenerator(seed);
  if (n == "tiny-gpt2") {
    auto m = std::make_shared<GPT2LMHeadModelImpl>(tiny_gpt2_config());
    m->init_weights(gen);
    return m;
  }
  if (n == "tiny-llama") {
    auto m = std::make_shared<LlamaForCausalLMImpl>(tiny_llama_config());
    m->init_weights(gen);
    return m;
  }
  throw ConfigError::about("make_builtin", "name", "\"" + name + "\"", "unknown builtin model",
                           "use builtin:tiny-gpt2 or builtin:tiny-llama, or an HF checkpoint directory");
}

namespace {

/// A checkpoint directory into a model built in place. `stream_quant`: quantise each Linear it
/// picks right after its weight is read (a dense checkpoint only: a pre-quantised one follows its
/// own quantization_config).
CausalLM load_dir(const std::string& dir_or_builtin, torch::Device device, std::optional<torch::Dtype> dtype,
                  const BitsAndBytesConfig* stream_quant) {
  namespace fs = std::filesystem;
  const fs::path dir(dir_or_builtin);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw SerializationError(dir_or_builtin + ": not a directory (an HF checkpoint directory with config.json, "
                             "or builtin:tiny-gpt2 / builtin:tiny-llama)");
  const auto config_path = dir / "config.json";
  const JsonValue config = JsonValue::parse(read_text_file(config_path));
  const torch::Dtype target = dtype ? *dtype : config_dtype(config, config_path.string());
  check_config_fits_checkpoint(config, dir, config_path.string());
  CausalLM model;
  {
    // Weights created uninitialised in place (no RNG draw, no memory committed until loaded).
    SkipInitScope skip_init(target, device);
    model = build(config, config_path.string());
  }
  model->to(device, target);  // what the scope does not reach (norm weights): tiny; a no-op for the rest
  const CheckpointRename rename = checkpoint_rename(*model);
  const JsonValue* qc = config.find("quantization_config");
  if (qc && !qc->is_null()) {
    const auto q = BitsAndBytesConfig::from_json(*qc, config_path.string() + ": quantization_config");
    if (q.load_in_4bit) {
      adopt_4bit_weights(*model, dir, q, rename);
      // The quant states were read above; the stream fills the codes and the dense tensors.
      load_checkpoint(*model, dir, /*strict=*/true, [rename](const std::string& key) {
        return detail::bnb_state_suffix(key).empty() ? rename(key) : std::string();
      });
      return model;
    }
  }
  if (!stream_quant) {
    load_checkpoint(*model, dir, /*strict=*/true, rename);
    return model;
  }
  // The weight key of every Linear to quantise -> its layer; each is quantised as soon as its
  // weight is in, before the next tensor is read.
  const BitsAndBytesConfig& q = *stream_quant;
  const auto qt = bnb_quant_type(q);
  const auto compute = bnb_compute_dtype(q);
  std::map<std::string, LinearImpl*> pending;
  for (const auto& item : model->named_modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get()); lin && !keeps_dense(item.key(), q))
      pending[item.key() + ".weight"] = lin;
  load_checkpoint(*model, dir, /*strict=*/true, rename, [&](const std::string& key) {
    if (auto it = pending.find(key); it != pending.end())
      it->second->quantize_4bit_(qt, q.blocksize, q.bnb_4bit_use_double_quant, compute);
  });
  quantize_model_4bit(*model, q);  // nothing left to quantise; warns about GPT-2 Conv1D layers
  return model;
}

}  // namespace

CausalLM load_causal_lm(const std::string& dir_or_builtin, torch::Device device, std::optional<torch::Dtype> dtype) {
  if (starts_with(dir_or_builtin, "builtin:")) {
    CausalLM model = make_builtin(dir_or_builtin, 0);
    if (dtype)
      model->to(device, *dtype);
    else
      model->to(device);
    return model;
  }
  return load_dir(dir_or_builtin, device, dtype, nullptr);
}

CausalLM load_causal_lm_4bit(const std::string& dir_or_builtin, const BitsAndBytesConfig& q, torch::Device device,
                             std::optional<torch::Dtype> dtype) {
  q.validate();
  if (!q.load_in_4bit)
    throw ConfigError::about("BitsAndBytesConfig", "load_in_4bit", "false", "nothing to quantise",
                             "set load_in_4bit: true, or call load_causal_lm");
  if (starts_with(dir_or_builtin, "builtin:")) {
    CausalLM model = load_causal_lm(dir_or_builtin, device, dtype);
    quantize_model_4bit(*model, q);
    return model;
  }
  return load_dir(dir_or_builtin, device, dtype, &q);
}

void save_causal_lm(CausalLMImpl& model, const std::filesystem::path& dir) {
  const auto params = model.named_parameters();
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  const auto modules = model.named_modules();
  for (const auto& key : model.checkpoint_keys()) {
    const torch::Tensor* t = params.find(key);
    if (!t) throw SerializationError("save_causal_lm: the model has no parameter `" + key + "`");
    tensors.emplace_back(key, t->detach());
    // A 4-bit Linear: bnb's state entries follow its codes, as transformers saves them.
    if (ends_with(key, ".weight"))
      if (const auto* m = modules.find(key.substr(0, key.size() - 7)))
        if (auto* lin = dynamic_cast<LinearImpl*>(m->get()); lin && lin->quantized())
          for (auto& e : lin->quant_state()->state.state_dict_entries(key)) tensors.push_back(std::move(e));
  }
  std::string config = model.config_json();  // before writing anything: may throw
  if (const auto q = bnb_config_of(model)) {
    JsonValue j = JsonValue::parse(config);
    j.set("quantization_config", q->to_json());
    config = j.dump(2, true) + "\n";
  }
  std::filesystem::create_directories(dir);
  save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomically(dir / "config.json", config);
}

torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& input_ids) {
  if (logits.dim() != 3 || input_ids.dim() != 2 || logits.size(0) != input_ids.size(0) ||
      logits.size(1) != input_ids.size(1))
    throw Error("causal_lm_loss: logits must be [B, T, V] and labels [B, T] with the same B and T");
  const auto V = logits.size(2);
  auto shifted_logits = logits.slice(1, 0, logits.size(1) - 1).reshape({-1, V}).to(torch::kFloat32);
  auto shifted_labels = input_ids.slice(1, 1).reshape({-1}).to(logits.device(), torch::kInt64);
  namespace F = torch::nn::functional;
  return F::cross_entropy(shifted_logits, shifted_labels, F::CrossEntropyFuncOptions().ignore_index(-100));
}

}  // namespace peft::models
