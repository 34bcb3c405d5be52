// Reference decoders (models/): HF parameter names, HF checkpoint loading, config.json, the math
// of each block against hand-computed values, and LoRA training on the builtins.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <fstream>

#include "peft/io/adapters.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "support/test_helpers.hpp"

namespace fs = std::filesystem;
using namespace peft::models;
using peft_test::param_names;

namespace {

GPT2Config small_gpt2(bool tied = true) {
  GPT2Config c;
  c.vocab_size = 11;
  c.n_positions = 16;
  c.n_embd = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.0;
  c.tie_word_embeddings = tied;
  return c;
}

LlamaConfig small_llama(bool tied = false, std::int64_t kv_heads = 2) {
  LlamaConfig c;
  c.vocab_size = 13;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = tied;
  return c;
}

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

torch::Tensor ids_for(std::int64_t vocab, std::int64_t B, std::int64_t T, std::uint64_t seed = 0) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(vocab, {B, T}, gen, torch::kInt64);
}

void expect_params_equal(CausalLMImpl& m, const std::vector<std::pair<std::string, torch::Tensor>>& want) {
  auto params = m.named_parameters();
  for (const auto& [key, t] : want) {
    ASSERT_TRUE(params.contains(key)) << key;
    EXPECT_TRUE(torch::equal(params[key], t)) << key;
  }
}

}  // namespace

// ---------------------------------------------------------------- names

TEST(Gpt2Names, NamedParametersEqualHfStateDictKeysInOrder) {
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

TEST(LlamaNames, NamedParametersEqualHfStateDictKeysInOrder) {
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

TEST(ModelsCheckpoint, HfDirectoryLoadsWithTheRightKeysAndValues) {
  const auto dir = peft_test::scratch_dir("models_hf_llama");
  LlamaForCausalLM shape_donor(small_llama(false));
  auto tensors = known_tensors(*shape_donor);
  peft::save_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_text(dir / "config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 13, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "rope_scaling": null, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "transformers_version": "4.46.0"})");
  auto m = load_causal_lm(dir.string());
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

TEST(ModelsCheckpoint, ShardedIndexLoads) {
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

TEST(ModelsCheckpoint, TiedModelWithoutLmHeadAndOriginalGpt2KeysLoad) {
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
  EXPECT_TRUE(torch::allclose(m->forward(ids), expected, 1e-5, 1e-6));
}

TEST(ModelsCheckpoint, WrongShapeIsASerializationErrorAndLeavesTheModelUnchanged) {
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
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i]));
}

TEST(ModelsCheckpoint, MissingAndUnexpectedKeysAreNamed) {
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

TEST(LlamaRope, ScalingTypesChangeInverseFrequenciesAsTransformersDoes) {
  LlamaConfig c = small_llama();
  c.head_dim = 16;
  c.rope_theta = 10000.0;
  auto plain = llama_inv_freq(c);
  // inv_freq[i] = 1 / 10000^(2i/16): hand values for i = 0, 1, 7.
  EXPECT_FLOAT_EQ(plain[0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(plain[1].item<float>(), 0.31622776f);
  EXPECT_NEAR(plain[7].item<float>(), 3.1622776e-4f, 1e-10);
  c.rope_type = "linear";
  c.rope_factor = 4.0;
  EXPECT_TRUE(torch::allclose(llama_inv_freq(c), plain / 4.0));
  // llama3 with original context 64, low 1, high 4: wavelength 2 pi / f. Short wavelengths
  // (< 16) are kept, long ones (> 64) divided by the factor.
  c.rope_type = "llama3";
  c.rope_original_max_position_embeddings = 64;
  c.rope_low_freq_factor = 1.0;
  c.rope_high_freq_factor = 4.0;
  auto l3 = llama_inv_freq(c);
  auto wavelen = 2 * M_PI / plain;
  for (int i = 0; i < 8; ++i) {
    const double w = wavelen[i].item<double>();
    if (w < 16) {
      EXPECT_FLOAT_EQ(l3[i].item<float>(), plain[i].item<float>()) << i;
    } else if (w > 64) {
      EXPECT_FLOAT_EQ(l3[i].item<float>(), plain[i].item<float>() / 4.0f) << i;
    } else {
      const double s = (64 / w - 1.0) / 3.0;
      EXPECT_NEAR(l3[i].item<double>(), (1 - s) * plain[i].item<double>() / 4 + s * plain[i].item<double>(), 1e-7);
    }
  }
}

// ---------------------------------------------------------------- math

TEST(ModelsMath, GeluNewMatchesHandValues) {
  auto x = torch::tensor({-2.0, -1.0, 0.0, 0.5, 1.0, 2.0}, torch::kFloat64);
  auto want = torch::tensor({-0.04540230591222494, -0.15880800939172324, 0.0, 0.34571400982514394,
                             0.8411919906082768, 1.954597694087775}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(gelu_new(x), want, 0, 1e-12));
  EXPECT_TRUE(torch::allclose(act("gelu_pytorch_tanh", x), want, 0, 1e-12));
  // Exact GELU differs: gelu(1) = 0.8413447.
  EXPECT_NEAR(act("gelu", x)[4].item<double>(), 0.8413447460685429, 1e-12);
  EXPECT_NEAR(act("silu", x)[4].item<double>(), 1.0 / (1.0 + std::exp(-1.0)), 1e-12);
}

TEST(ModelsMath, RmsNormAndLayerNormMatchHandValues) {
  auto x = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}});
  // rms = sqrt(30 / 4) = 2.7386128; weight 2 doubles the output.
  auto y = rms_norm(x, torch::full({4}, 2.0f), 1e-6);
  auto want = torch::tensor({{0.36514835f, 0.7302967f, 1.0954450f, 1.4605934f}}) * 2;
  EXPECT_TRUE(torch::allclose(y, want, 1e-6, 1e-6));
  // bf16 in -> bf16 out, normalised in fp32.
  EXPECT_EQ(rms_norm(x.to(torch::kBFloat16), torch::ones({4}, torch::kBFloat16), 1e-6).scalar_type(), torch::kBFloat16);
  // GPT-2's LayerNorm uses layer_norm_epsilon: mean 2.5, var 1.25.
  auto c = small_gpt2();
  c.layer_norm_epsilon = 1e-5;
  GPT2LMHeadModel m(c);
  EXPECT_EQ(m->transformer->ln_f->options.eps(), 1e-5);
  auto ln = torch::nn::LayerNorm(torch::nn::LayerNormOptions({4}).eps(c.layer_norm_epsilon));
  auto want_ln = torch::tensor({{-1.3416354f, -0.4472118f, 0.4472118f, 1.3416354f}});
  EXPECT_TRUE(torch::allclose(ln(x), want_ln, 1e-6, 1e-6));
}

TEST(LlamaRope, AttentionScoresDependOnlyOnRelativePosition) {
  torch::manual_seed(0);
  const std::int64_t d = 8, T = 6;
  auto inv = rope_inv_freq(d, 10000.0);
  auto q = torch::randn({1, 1, 1, d}).expand({1, 1, T, d});
  auto k = torch::randn({1, 1, 1, d}).expand({1, 1, T, d});
  auto scores = [&](std::int64_t offset) {
    auto [cos, sin] = rope_cos_sin(torch::arange(T) + offset, inv, torch::kFloat32);
    return torch::matmul(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin).transpose(-1, -2));
  };
  auto s0 = scores(0), s7 = scores(7);
  EXPECT_TRUE(torch::allclose(s0, s7, 1e-4, 1e-5));  // same (m - n) -> same score
  EXPECT_FALSE(torch::allclose(s0[0][0][0][1], s0[0][0][0][3]));  // different distances differ
  // Position 0 is the identity rotation.
  auto [cos, sin] = rope_cos_sin(torch::zeros({1}, torch::kInt64), inv, torch::kFloat32);
  EXPECT_TRUE(torch::allclose(apply_rotary(q.slice(2, 0, 1), cos, sin), q.slice(2, 0, 1)));
  // rotate_half: [1 2 3 4] -> [-3 -4 1 2].
  EXPECT_TRUE(torch::equal(rotate_half(torch::tensor({1, 2, 3, 4})), torch::tensor({-3, -4, 1, 2})));
}

TEST(ModelsMath, ChangingAFutureTokenLeavesEarlierLogitsUnchanged) {
  std::vector<CausalLM> models = {make_builtin("tiny-gpt2", 1), make_builtin("tiny-llama", 1)};
  for (auto& m : models) {
    m->eval();
    auto ids = ids_for(m->vocab_size(), 2, 12, 3);
    auto changed = ids.clone();
    changed.index_put_({torch::indexing::Slice(), 7}, (ids.index({torch::indexing::Slice(), 7}) + 1) % m->vocab_size());
    auto a = m->forward(ids), b = m->forward(changed);
    EXPECT_TRUE(torch::equal(a.slice(1, 0, 7), b.slice(1, 0, 7))) << m->model_type();
    EXPECT_FALSE(torch::allclose(a.slice(1, 7), b.slice(1, 7))) << m->model_type();
  }
}

TEST(LlamaGqa, EqualsMultiHeadAttentionWithDuplicatedKeyValueWeights) {
  auto gqa_cfg = small_llama(false, 2);
  auto mha_cfg = small_llama(false, 4);
  LlamaForCausalLM gqa(gqa_cfg), mha(mha_cfg);
  auto src = gqa->named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& p : mha->named_parameters()) {
    const auto& key = p.key();
    if (key.find("k_proj") != std::string::npos || key.find("v_proj") != std::string::npos) {
      // kv head j serves query heads 2j, 2j+1: repeat each head's 4 rows twice.
      auto w = src[key].view({2, 1, 4, 16}).expand({2, 2, 4, 16}).reshape({16, 16});
      p.value().copy_(w);
    } else {
      p.value().copy_(src[key]);
    }
  }
  auto ids = ids_for(13, 2, 9);
  EXPECT_TRUE(torch::allclose(gqa->forward(ids), mha->forward(ids), 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(repeat_kv(torch::tensor({1.0f, 2.0f}).view({1, 2, 1, 1}), 2).flatten(),
                           torch::tensor({1.0f, 1.0f, 2.0f, 2.0f})));
}

TEST(ModelsLoss, CausalLmLossEqualsAManualComputation) {
  // B=1, T=3, V=2: positions 0 and 1 predict tokens 1 and 2; label -100 is ignored.
  auto logits = torch::tensor({{{0.0f, 1.0f}, {2.0f, 0.0f}, {5.0f, 5.0f}}});
  auto ids = torch::tensor({{0, 1, 0}}, torch::kInt64);
  const double l0 = -std::log(std::exp(1.0) / (1 + std::exp(1.0)));   // token 1 at position 0
  const double l1 = -std::log(std::exp(2.0) / (std::exp(2.0) + 1.0));  // token 0 at position 1
  EXPECT_NEAR(causal_lm_loss(logits, ids).item<double>(), (l0 + l1) / 2, 1e-6);
  auto masked = torch::tensor({{0, 1, -100}}, torch::kInt64);
  EXPECT_NEAR(causal_lm_loss(logits, masked).item<double>(), l0, 1e-6);
  EXPECT_EQ(causal_lm_loss(logits.to(torch::kBFloat16), ids).scalar_type(), torch::kFloat32);
  EXPECT_THROW(causal_lm_loss(logits, ids.flatten()), peft::Error);
}

// ---------------------------------------------------------------- save / load / dtype

TEST(ModelsSave, SaveThenLoadIsBitIdenticalForBothBuiltins) {
  for (const auto& name : builtin_names()) {
    auto m = make_builtin(name, 7);
    const auto dir = peft_test::scratch_dir("models_roundtrip_" + name);
    save_causal_lm(*m, dir);
    auto file = peft::load_safetensors(dir / "model.safetensors");
    std::vector<std::string> file_keys;
    for (const auto& kv : file.tensors) file_keys.push_back(kv.first);
    EXPECT_EQ(file_keys, m->checkpoint_keys());  // tied: no lm_head.weight
    auto back = load_causal_lm(dir.string());
    EXPECT_EQ(param_names(*back), param_names(*m));
    auto a = m->named_parameters(), b = back->named_parameters();
    for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
    auto ids = ids_for(m->vocab_size(), 2, 10);
    EXPECT_TRUE(torch::equal(m->forward(ids), back->forward(ids))) << name;
    auto json = peft::JsonValue::parse(peft::read_text_file(dir / "config.json"));
    EXPECT_EQ(json.find("model_type")->as_string(), m->model_type());
    EXPECT_EQ(json.find("architectures")->as_array().size(), 1u);
  }
}

TEST(ModelsSave, Bfloat16ModelsRunAndSaveTheirDtype) {
  for (const auto& name : builtin_names()) {
    auto fp32 = load_causal_lm("builtin:" + name);
    auto bf16 = load_causal_lm("builtin:" + name, torch::kCPU, torch::kBFloat16);
    auto ids = ids_for(257, 1, 16);
    auto a = fp32->forward(ids), b = bf16->forward(ids);
    EXPECT_EQ(b.scalar_type(), torch::kBFloat16) << name;
    EXPECT_LT((a - b.to(torch::kFloat32)).abs().max().item<float>(), 0.05f) << name;
    causal_lm_loss(b, ids).backward();  // trains in bf16
    EXPECT_TRUE(bf16->parameters()[0].grad().defined()) << name;
  }
  auto bf16 = load_causal_lm("builtin:tiny-llama", torch::kCPU, torch::kBFloat16);
  const auto dir = peft_test::scratch_dir("models_bf16");
  save_causal_lm(*bf16, dir);
  EXPECT_EQ(peft::load_safetensors(dir / "model.safetensors").tensors[0].second.scalar_type(), torch::kBFloat16);
  EXPECT_NE(peft::read_text_file(dir / "config.json").find("\"torch_dtype\": \"bfloat16\""), std::string::npos);
  EXPECT_THROW(make_builtin("tiny-bert"), peft::ConfigError);
  EXPECT_THROW(load_causal_lm("/nonexistent/dir"), peft::SerializationError);
}

TEST(ModelsSave, BuiltinsAreDeterministicPerSeedAndLeaveTheGlobalRngAlone) {
  torch::manual_seed(123);
  auto expected_next = torch::rand({1});
  torch::manual_seed(123);
  auto a = make_builtin("tiny-gpt2", 5);
  EXPECT_TRUE(torch::equal(torch::rand({1}), expected_next));
  auto b = make_builtin("builtin:tiny-gpt2", 5), c = make_builtin("tiny-gpt2", 6);
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  EXPECT_TRUE(torch::equal(pa[0], pb[0]));
  EXPECT_FALSE(torch::equal(pa[0], pc[0]));
}

// ---------------------------------------------------------------- LoRA on the builtins

TEST(ModelsLora, DefaultTargetsTrainAndTheAdapterRoundTrips) {
  for (const auto& name : builtin_names()) {
    auto model = make_builtin(name, 0);
    peft::LoraConfig cfg;  // target_modules unset: PEFT's default for the model_type
    cfg.r = 4;
    cfg.lora_alpha = 8;
    cfg.fan_in_fan_out = name == "tiny-gpt2";  // Conv1D, as PEFT's GPT-2 examples set it
    peft::LoraModelOptions opts;
    opts.plan.model_type = model->model_type();
    opts.plan.output_layer = "lm_head";
    auto pm = peft::get_peft_model(model, cfg, "default", opts);
    const auto targets = pm.targeted_module_names();
    ASSERT_FALSE(targets.empty());
    const std::string want = name == "tiny-gpt2" ? "attn.c_attn" : "self_attn.q_proj";
    EXPECT_NE(targets[0].find(want), std::string::npos) << targets[0];
    torch::optim::AdamW opt(pm.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
    auto ids = ids_for(257, 4, 32, 11);
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      opt.zero_grad();
      auto loss = causal_lm_loss(model->forward(ids), ids);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    EXPECT_LT(last, first - 0.05) << name;
    const auto dir = peft_test::scratch_dir("models_lora_" + name);
    peft::save_pretrained(pm, dir);
    model->eval();
    auto want_logits = model->forward(ids);
    auto fresh = make_builtin(name, 0);
    auto pm2 = peft::from_pretrained(fresh, dir, "default", false, opts);
    fresh->eval();
    EXPECT_TRUE(torch::allclose(fresh->forward(ids), want_logits, 1e-5, 1e-6)) << name;
  }
}

// ---------------------------------------------------------------- CUDA

TEST(ModelsCuda, ForwardOnCudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const auto& name : builtin_names()) {
    auto cpu = load_causal_lm("builtin:" + name);
    auto gpu = load_causal_lm("builtin:" + name, torch::kCUDA);
    auto ids = ids_for(257, 2, 64);
    EXPECT_TRUE(torch::allclose(gpu->forward(ids.to(torch::kCUDA)).cpu(), cpu->forward(ids), 1e-3, 1e-4)) << name;
    auto bf16 = load_causal_lm("builtin:" + name, torch::kCUDA, torch::kBFloat16);
    auto loss = causal_lm_loss(bf16->forward(ids.to(torch::kCUDA)), ids.to(torch::kCUDA));
    loss.backward();
    EXPECT_TRUE(std::isfinite(loss.item<float>()));
  }
}

// Timing of one training step of the builtins (batch 8 x 128, AdamW on every weight), for the
// README numbers: ./peft_unit_tests --gtest_also_run_disabled_tests --gtest_filter='*TrainStepTime*'
TEST(ModelsBench, DISABLED_TrainStepTime) {
  for (const auto& name : builtin_names()) {
    auto m = make_builtin(name, 0);
    torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(1e-3));
    auto ids = ids_for(257, 8, 128);
    auto step = [&] {
      opt.zero_grad();
      causal_lm_loss(m->forward(ids), ids).backward();
      opt.step();
    };
    for (int i = 0; i < 3; ++i) step();
    const int n = 20;
    auto t0 = std::chrono::steady_clock::now();
    const auto c0 = std::clock();
    for (int i = 0; i < n; ++i) step();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
    const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC / n;
    std::int64_t count = 0;
    for (const auto& p : m->parameters()) count += p.numel();
    std::cerr << name << ": " << count << " parameters, train step (8 x 128) " << ms << " ms wall, " << cpu_ms
              << " ms CPU, torch threads " << torch::get_num_threads() << "\n";
  }
}
