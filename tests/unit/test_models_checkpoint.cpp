// Reference decoders (models/): HF parameter names, HF checkpoint loading and config.json.
// (Their math, save/load and LoRA training: test_models_math.cpp.)

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_decoders.hpp"
#include "support/test_helpers.hpp"

namespace fs = std::filesystem;
using namespace peft::models;
using peft_test::ids_for;
using peft_test::param_names;
using peft_test::small_gpt2;
using peft_test::small_llama;

namespace {

std::vector<std::string> hf_gpt2_keys(int layers, bool tied) {
  std::vector<std::string> k = {"transformer.wte.weight", "transformer.wpe.weight"};
  for (int i = 0; i < layers; ++i) {
    const std::string b = "transformer.h." + std::to_string(i);
    for (const char* s : {".ln_1.weight", ".ln_1.bias", ".attn.c_attn.weight", ".attn.c_attn.bias",
                          ".attn.c_proj.weight", ".attn.c_proj.bias", ".ln_2.weight", ".ln_2.bias",
                          ".mlp.c_fc.weight", ".mlp.c_fc.bias", ".mlp.c_proj.weight", ".mlp.c_proj.bias"})
      k.push_back(b + s);
  }
  k.insert(k.end(), {"transformer.ln_f.weight", "transformer.ln_f.bias"});
  if (!tied) k.push_back("lm_head.weight");
  return k;
}

std::vector<std::string> hf_llama_keys(int layers, bool tied) {
  std::vector<std::string> k = {"model.embed_tokens.weight"};
  for (int i = 0; i < layers; ++i) {
    const std::string b = "model.layers." + std::to_string(i);
    for (const char* s : {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
                          ".self_attn.o_proj.weight", ".mlp.gate_proj.weight", ".mlp.up_proj.weight",
                          ".mlp.down_proj.weight", ".input_layernorm.weight", ".post_attention_layernorm.weight"})
      k.push_back(b + s);
  }
  k.push_back("model.norm.weight");
  if (!tied) k.push_back("lm_head.weight");
  return k;
}

/// Distinct known values per key: tensor i = (arange(numel) + 1000 i) / 4096, in the model's shapes.
std::vector<std::pair<std::string, torch::Tensor>> known_tensors(CausalLMImpl& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto params = m.named_parameters();
  int i = 0;
  for (const auto& key : m.checkpoint_keys()) {
    const auto& p = params[key];
    out.emplace_back(key, ((torch::arange(p.numel(), torch::kFloat32) + 1000.0 * i++) / 4096.0).reshape(p.sizes()));
  }
  return out;
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

void expect_params_equal(CausalLMImpl& m, const std::vector<std::pair<std::string, torch::Tensor>>& want) {
  auto params = m.named_parameters();
  for (const auto& [key, t] : want) {
    ASSERT_TRUE(params.contains(key)) << key;
    EXPECT_TRUE(peft_test::equal(params[key], t)) << key;
  }
}

}  // namespace

// ---------------------------------------------------------------- names

SEEDED_TEST(Gpt2Names, NamedParametersEqualHfStateDictKeysInOrder) {
  GPT2LMHeadModel tied(small_gpt2(true));
  EXPECT_EQ(param_names(*tied), hf_gpt2_keys(2, true));
  EXPECT_EQ(tied->checkpoint_keys(), hf_gpt2_keys(2, true));
  GPT2LMHeadModel untied(small_gpt2(false));
  EXPECT_EQ(param_names(*untied), hf_gpt2_keys(2, false));
  EXPECT_TRUE(untied->named_buffers().is_empty());
  // Conv1D stores [in, out] like HF: c_attn [d, 3d], c_fc [d, 4d].
  auto p = untied->named_parameters();
  EXPECT_EQ(p["transformer.h.0.attn.c_attn.weight"].sizes(), (torch::IntArrayRef{8, 24}));
  EXPECT_EQ(p["transformer.h.1.mlp.c_fc.weight"].sizes(), (torch::IntArrayRef{8, 32}));
  EXPECT_EQ(p["lm_head.weight"].sizes(), (torch::IntArrayRef{11, 8}));
}

SEEDED_TEST(LlamaNames, NamedParametersEqualHfStateDictKeysInOrder) {
  LlamaForCausalLM untied(small_llama(false));
  EXPECT_EQ(param_names(*untied), hf_llama_keys(2, false));
  EXPECT_TRUE(untied->named_buffers().is_empty());  // no inv_freq buffer
  LlamaForCausalLM tied(small_llama(true));
  EXPECT_EQ(param_names(*tied), hf_llama_keys(2, true));
  auto p = untied->named_parameters();
  EXPECT_EQ(p["model.layers.0.self_attn.k_proj.weight"].sizes(), (torch::IntArrayRef{8, 16}));  // 2 kv heads x 4
  EXPECT_EQ(p["model.layers.0.mlp.down_proj.weight"].sizes(), (torch::IntArrayRef{16, 24}));

  auto c = small_llama();
  c.attention_bias = c.mlp_bias = true;
  LlamaForCausalLM biased(c);
  auto keys = param_names(*biased);
  EXPECT_EQ(keys, biased->checkpoint_keys());
  EXPECT_EQ(keys[1], "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(keys[2], "model.layers.0.self_attn.q_proj.bias");
  EXPECT_NE(std::find(keys.begin(), keys.end(), "model.layers.1.mlp.down_proj.bias"), keys.end());
}

// ---------------------------------------------------------------- HF checkpoints

SEEDED_TEST(ModelsCheckpoint, HfDirectoryLoadsWithTheRightKeysAndValues) {
  const auto dir = peft_test::scratch_dir("models_hf_llama");
  LlamaForCausalLM shape_donor(small_llama(false));
  auto tensors = known_tensors(*shape_donor);
  peft::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_text(dir / "config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 13, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "rope_scaling": null, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "transformers_version": "4.46.0"})");
  // Without a dtype the config's torch_dtype applies (test_streaming_load.cpp); here float32.
  EXPECT_EQ(load_causal_lm(dir.string())->parameters()[0].scalar_type(), torch::kBFloat16);
  auto m = load_causal_lm(dir.string(), torch::kCPU, torch::kFloat32);
  EXPECT_EQ(m->model_type(), "llama");
  EXPECT_EQ(param_names(*m), hf_llama_keys(2, false));
  expect_params_equal(*m, tensors);
  auto* llama = dynamic_cast<LlamaForCausalLMImpl*>(m.get());
  ASSERT_NE(llama, nullptr);
  EXPECT_EQ(llama->config.rope_theta, 500000.0);
  EXPECT_EQ(llama->config.rms_norm_eps, 1e-5);
  // Unknown fields survive a save; the dtype written is the model's.
  auto json = peft::JsonValue::parse(m->config_json());
  EXPECT_EQ(json.find("eos_token_id")->as_int(), 2);
  EXPECT_EQ(json.find("torch_dtype")->as_string(), "float32");
  EXPECT_EQ(json.find("transformers_version"), nullptr);
}

SEEDED_TEST(ModelsCheckpoint, ShardedIndexLoads) {
  const auto dir = peft_test::scratch_dir("models_hf_sharded");
  GPT2LMHeadModel donor(small_gpt2(false));
  auto tensors = known_tensors(*donor);
  const std::size_t half = tensors.size() / 2;
  std::vector<std::pair<std::string, torch::Tensor>> a(tensors.begin(), tensors.begin() + half),
      b(tensors.begin() + half, tensors.end());
  peft::save_safetensors(dir / "model-00001-of-00002.safetensors", a);
  peft::save_safetensors(dir / "model-00002-of-00002.safetensors", b);
  peft::JsonValue map = peft::JsonValue::object();
  for (const auto& [k, t] : a) map.set(k, "model-00001-of-00002.safetensors");
  for (const auto& [k, t] : b) map.set(k, "model-00002-of-00002.safetensors");
  peft::JsonValue index = peft::JsonValue::object();
  index.set("metadata", peft::JsonValue::object());
  index.set("weight_map", map);
  write_text(dir / "model.safetensors.index.json", index.dump(2));
  write_text(dir / "config.json", gpt2_config_to_json(small_gpt2(false), torch::kFloat32));
  auto m = load_causal_lm(dir.string());
  EXPECT_EQ(m->model_type(), "gpt2");
  expect_params_equal(*m, tensors);
}

SEEDED_TEST(ModelsCheckpoint, TiedModelWithoutLmHeadAndOriginalGpt2KeysLoad) {
  // The original gpt2 files: no "transformer." prefix, old attn.bias / masked_bias buffers.
  const auto dir = peft_test::scratch_dir("models_hf_tied");
  GPT2LMHeadModel donor(small_gpt2(true));
  auto tensors = known_tensors(*donor);
  std::vector<std::pair<std::string, torch::Tensor>> file;
  for (const auto& [k, t] : tensors) file.emplace_back(k.substr(std::string("transformer.").size()), t);
  file.emplace_back("h.0.attn.bias", torch::ones({1, 1, 16, 16}));
  file.emplace_back("h.0.attn.masked_bias", torch::tensor(-1e4));
  peft::save_safetensors(dir / "model.safetensors", file);
  write_text(dir / "config.json", R"({"model_type": "gpt2", "vocab_size": 11, "n_ctx": 16, "n_embd": 8,
    "n_layer": 2, "n_head": 2, "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"]})");
  auto m = load_causal_lm(dir.string());
  expect_params_equal(*m, tensors);
  EXPECT_EQ(m->max_positions(), 16);
  // Tied: the head is the embedding.
  auto* g = dynamic_cast<GPT2LMHeadModelImpl*>(m.get());
  auto ids = ids_for(11, 1, 5);
  m->eval();
  auto expected = torch::matmul(g->transformer->forward(ids), g->transformer->wte->weight.t());
  EXPECT_TRUE(peft_test::close(m->forward(ids), expected, 1e-5, 1e-6));
}

SEEDED_TEST(ModelsCheckpoint, WrongShapeIsASerializationErrorAndLeavesTheModelUnchanged) {
  const auto dir = peft_test::scratch_dir("models_hf_badshape");
  LlamaForCausalLM donor(small_llama(true));
  auto tensors = known_tensors(*donor);
  tensors.back().second = torch::zeros({17});  // model.norm.weight is [16]
  peft::save_safetensors(dir / "model.safetensors", tensors);
  write_text(dir / "config.json", llama_config_to_json(small_llama(true), torch::kFloat32));
  try {
    load_causal_lm(dir.string());
    FAIL() << "no error";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos) << e.what();
  }
  LlamaForCausalLM target(small_llama(true));
  std::vector<torch::Tensor> before;
  for (const auto& p : target->parameters()) before.push_back(p.clone());
  EXPECT_THROW(peft::load_checkpoint(*target, dir), peft::SerializationError);
  auto after = target->parameters();
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(peft_test::equal(before[i], after[i]));
}

SEEDED_TEST(ModelsCheckpoint, MissingAndUnexpectedKeysAreNamed) {
  const auto dir = peft_test::scratch_dir("models_hf_missing");
  LlamaForCausalLM donor(small_llama(false));
  auto tensors = known_tensors(*donor);
  tensors.pop_back();  // lm_head.weight: the config says untied
  tensors.emplace_back("model.extra.weight", torch::zeros({2}));
  peft::save_safetensors(dir / "model.safetensors", tensors);
  write_text(dir / "config.json", llama_config_to_json(small_llama(false), torch::kFloat32));
  try {
    load_causal_lm(dir.string());
    FAIL() << "no error";
  } catch (const peft::SerializationError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("Missing: lm_head.weight"), std::string::npos) << what;
    EXPECT_NE(what.find("Unexpected: model.extra.weight"), std::string::npos) << what;
  }
}

// ---------------------------------------------------------------- config.json

namespace {
peft::models::ModelConfigError config_error(const std::string& json) {
  const auto dir = peft_test::scratch_dir("models_bad_config");
  write_text(dir / "config.json", json);
  try {
    load_causal_lm(dir.string());
  } catch (const peft::models::ModelConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no ModelConfigError for " << json;
  return ModelConfigError("x", "", "", "", "");
}
}  // namespace

TEST(ModelsConfig, BadConfigsAreTypedErrorsNamingFieldAndValue) {
  auto e = config_error(R"({"model_type": "bert", "vocab_size": 10})");
  EXPECT_EQ(e.field(), "model_type");
  EXPECT_EQ(e.value(), "\"bert\"");
  EXPECT_EQ(e.kind(), peft::ConfigError::Kind::NotImplemented);
  EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();

  e = config_error(R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_layer": 1, "n_head": 2})");
  EXPECT_EQ(e.field(), "n_embd");
  EXPECT_EQ(e.kind(), peft::ConfigError::Kind::WrongType);

  e = config_error(R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": "2"})");
  EXPECT_EQ(e.field(), "n_head");
  EXPECT_EQ(e.value(), "\"2\"");

  e = config_error(R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 3})");
  EXPECT_EQ(e.field(), "n_head");
  EXPECT_NE(std::string(e.what()).find("n_embd = 8"), std::string::npos) << e.what();

  e = config_error(R"({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8, "n_layer": 1,
                      "n_head": 2, "activation_function": "mish"})");
  EXPECT_EQ(e.field(), "activation_function");

  const std::string llama = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                                "num_hidden_layers": 1, "num_attention_heads": 2, )";
  e = config_error(llama + R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_EQ(e.field(), "rope_type");
  EXPECT_EQ(e.value(), "\"yarn\"");
  EXPECT_NE(std::string(e.what()).find("rope_scaling"), std::string::npos) << e.what();
  e = config_error(llama + R"("num_key_value_heads": 3})");
  EXPECT_EQ(e.field(), "num_key_value_heads");
  e = config_error(llama + R"("rms_norm_eps": -1})");
  EXPECT_EQ(e.field(), "rms_norm_eps");
  // A ModelConfigError is a peft::ConfigError.
  EXPECT_THROW(llama_config_from_json(peft::JsonValue::parse(R"({"model_type": "gpt2"})")), peft::ConfigError);
}

TEST(ModelsConfig, TheOriginalGpt2ConfigReadsAndKeepsItsOtherFields) {
  // openai-community/gpt2's config.json (abridged only in task_specific_params).
  auto c = gpt2_config_from_json(peft::JsonValue::parse(R"({
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
    "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
    "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
    "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
    "vocab_size": 50257})"));
  EXPECT_EQ(c.n_positions, 1024);
  EXPECT_EQ(c.inner_dim(), 3072);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.resid_pdrop, 0.1);
  ASSERT_NE(c.extra.find("task_specific_params"), nullptr);
  EXPECT_EQ(c.extra.find("eos_token_id")->as_int(), 50256);
  EXPECT_EQ(c.extra.find("model_type"), nullptr);  // regenerated on save, not kept twice
  auto written = peft::JsonValue::parse(gpt2_config_to_json(c, torch::kFloat16));
  EXPECT_EQ(written.find("torch_dtype")->as_string(), "float16");
  EXPECT_EQ(*written.find("task_specific_params"), *c.extra.find("task_specific_params"));
  EXPECT_TRUE(written.find("n_inner")->is_null());
  // Errors name the model's config, not LoraConfig.
  GPT2Config bad = c;
  bad.n_layer = 0;
  try {
    bad.validate();
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("GPT2Config.n_layer = 0: must be positive", 0), 0u) << e.what();
  }
}

TEST(ModelsConfig, RopeSpellingsOfTransformers4And5AreRead) {
  const std::string base = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                               "num_hidden_layers": 1, "num_attention_heads": 2, )";
  auto v5 = llama_config_from_json(peft::JsonValue::parse(
      base + R"("rope_parameters": {"rope_type": "default", "rope_theta": 1234.0}})"));
  EXPECT_EQ(v5.rope_theta, 1234.0);
  EXPECT_EQ(v5.rope_type, "default");
  auto v4 = llama_config_from_json(peft::JsonValue::parse(
      base + R"("rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"));
  EXPECT_EQ(v4.rope_theta, 500000.0);
  EXPECT_EQ(v4.rope_type, "llama3");
  EXPECT_EQ(v4.rope_factor, 8.0);
  // What we write reads back to the same config.
  auto again = llama_config_from_json(peft::JsonValue::parse(llama_config_to_json(v4, torch::kBFloat16)));
  EXPECT_EQ(again.rope_theta, 500000.0);
  EXPECT_EQ(again.rope_type, "llama3");
  EXPECT_EQ(again.rope_original_max_position_embeddings, 8192);
  auto old = llama_config_from_json(peft::JsonValue::parse(base + R"("rope_scaling": {"type": "linear", "factor": 2.0}})"));
  EXPECT_EQ(old.rope_type, "linear");
}
