#include "support/fixtures.hpp"

#include <cstdlib>
#include <stdexcept>

#include "peft/format/atomic_file.hpp"

#ifndef PEFT_DEFAULT_FIXTURES
#define PEFT_DEFAULT_FIXTURES "tests/fixtures"
#endif

namespace peft_test {

namespace {
std::filesystem::path fixtures_root() {
  const char* env = std::getenv("PEFT_FIXTURES");
  return env && *env ? env : PEFT_DEFAULT_FIXTURES;
}
bool is_suite(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "manifest.json") || std::filesystem::exists(dir / "configs.json");
}
}  // namespace

std::filesystem::path fixtures_dir() {
  const auto root = fixtures_root();
  if (is_suite(root / "peft")) return root / "peft";
  return root;
}

std::vector<std::filesystem::path> fixture_roots() {
  const auto root = fixtures_root();
  std::vector<std::filesystem::path> out;
  for (const char* suite : {"peft", "peft-layers"})
    if (is_suite(root / suite)) out.push_back(root / suite);
  if (out.empty()) out.push_back(root);
  return out;
}

std::filesystem::path hf_models_dir() {
  const char* env = std::getenv("PEFT_HF_MODELS");
  if (env && *env) return env;
  return fixtures_root() / "hf_models";
}

std::filesystem::path scratch_dir(const std::string& name) {
  const char* base = std::getenv("PEFT_TEST_TMP");
  auto dir = std::filesystem::path(base ? base : std::filesystem::temp_directory_path().string()) /
             ("peft_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

peft::JsonValue read_json(const std::filesystem::path& path) {
  return peft::JsonValue::parse(peft::read_text_file(path, 1u << 30));
}

namespace {
std::int64_t dim(const peft::JsonValue& dims, const char* key) {
  const peft::JsonValue* v = dims.find(key);
  if (!v || !v->is_int()) throw std::runtime_error(std::string("model_dims lacks integer ") + key);
  return v->as_int();
}
}  // namespace

std::vector<peft::ModuleInfo> catalogue_inventory(const std::string& model, const peft::JsonValue& dims) {
  using peft::ModuleKind;
  std::vector<peft::ModuleInfo> m;
  auto add = [&](std::string key, ModuleKind kind, std::string type, bool bias = false) {
    m.push_back({std::move(key), kind, std::move(type), bias});
  };
  if (model == "mlp" || model == "mlp_nobias") {
    const peft::JsonValue* b = dims.find("bias");
    bool bias = model == "mlp" && (!b || !b->is_bool() || b->as_bool());
    add("", ModuleKind::Container, "MLP");
    add("lin0", ModuleKind::Linear, "Linear", bias);
    add("relu", ModuleKind::Other, "ReLU");
    add("drop", ModuleKind::Other, "Dropout");
    add("lin1", ModuleKind::Linear, "Linear", bias);
    add("sm", ModuleKind::Other, "LogSoftmax");
  } else if (model == "decoder") {
    const auto layers = dim(dims, "n_layers");
    add("", ModuleKind::Container, "Decoder");
    add("model", ModuleKind::Container, "LlamaModel");
    add("model.embed_tokens", ModuleKind::Embedding, "Embedding");
    add("model.layers", ModuleKind::Container, "ModuleList");
    for (std::int64_t i = 0; i < layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i);
      add(p, ModuleKind::Container, "LlamaBlock");
      add(p + ".self_attn", ModuleKind::Container, "LlamaAttention");
      for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
        add(p + ".self_attn." + n, ModuleKind::Linear, "Linear");
      add(p + ".mlp", ModuleKind::Container, "LlamaMLP");
      for (const char* n : {"gate_proj", "up_proj", "down_proj"})
        add(p + ".mlp." + n, ModuleKind::Linear, "Linear");
    }
    add("lm_head", ModuleKind::Linear, "Linear");
  } else if (model == "gpt2") {
    const auto layers = dim(dims, "n_layers");
    add("", ModuleKind::Container, "GPT2");
    add("transformer", ModuleKind::Container, "GPT2Model");
    add("transformer.wte", ModuleKind::Embedding, "Embedding");
    add("transformer.h", ModuleKind::Container, "ModuleList");
    for (std::int64_t i = 0; i < layers; ++i) {
      const std::string p = "transformer.h." + std::to_string(i);
      add(p, ModuleKind::Container, "GPT2Block");
      add(p + ".attn", ModuleKind::Container, "GPT2Attention");
      add(p + ".attn.c_attn", ModuleKind::Conv1D, "Conv1D", true);
      add(p + ".attn.c_proj", ModuleKind::Conv1D, "Conv1D", true);
      add(p + ".mlp", ModuleKind::Container, "GPT2MLP");
      add(p + ".mlp.c_fc", ModuleKind::Conv1D, "Conv1D", true);
      add(p + ".mlp.c_proj", ModuleKind::Conv1D, "Conv1D", true);
    }
    add("lm_head", ModuleKind::Linear, "Linear");
  } else {
    throw std::runtime_error("unknown catalogue model `" + model + "`");
  }
  return m;
}

std::string catalogue_class_name(const std::string& model) {
  if (model == "mlp" || model == "mlp_nobias") return "MLP";
  if (model == "decoder") return "Decoder";
  if (model == "gpt2") return "GPT2";
  throw std::runtime_error("unknown catalogue model `" + model + "`");
}

}  // namespace peft_test
