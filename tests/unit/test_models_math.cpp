// Reference decoders (models/): the math of each block against hand-computed values, the loss,
// save/load and dtypes, LoRA training on the builtins, CUDA. (Names, HF checkpoints and
// config.json: test_models_checkpoint.cpp.)

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <ctime>

#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_decoders.hpp"
#include "support/test_helpers.hpp"

using namespace peft::models;
using peft_test::ids_for;
using peft_test::param_names;
using peft_test::small_gpt2;
using peft_test::small_llama;

SEEDED_TEST(LlamaRope, ScalingTypesChangeInverseFrequenciesAsTransformersDoes) {
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
  EXPECT_TRUE(peft_test::close(llama_inv_freq(c), plain / 4.0));
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

SEEDED_TEST(ModelsMath, GeluNewMatchesHandValues) {
  auto x = torch::tensor({-2.0, -1.0, 0.0, 0.5, 1.0, 2.0}, torch::kFloat64);
  auto want = torch::tensor({-0.04540230591222494, -0.15880800939172324, 0.0, 0.34571400982514394,
                             0.8411919906082768, 1.954597694087775}, torch::kFloat64);
  EXPECT_TRUE(peft_test::close(gelu_new(x), want, 0, 1e-12));
  EXPECT_TRUE(peft_test::close(act("gelu_pytorch_tanh", x), want, 0, 1e-12));
  // Exact GELU differs: gelu(1) = 0.8413447.
  EXPECT_NEAR(act("gelu", x)[4].item<double>(), 0.8413447460685429, 1e-12);
  EXPECT_NEAR(act("silu", x)[4].item<double>(), 1.0 / (1.0 + std::exp(-1.0)), 1e-12);
}

SEEDED_TEST(ModelsMath, RmsNormAndLayerNormMatchHandValues) {
  auto x = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}});
  // rms = sqrt(30 / 4) = 2.7386128; weight 2 doubles the output.
  auto y = rms_norm(x, torch::full({4}, 2.0f), 1e-6);
  auto want = torch::tensor({{0.36514835f, 0.7302967f, 1.0954450f, 1.4605934f}}) * 2;
  EXPECT_TRUE(peft_test::close(y, want, 1e-6, 1e-6));
  // bf16 in -> bf16 out, normalised in fp32.
  EXPECT_EQ(rms_norm(x.to(torch::kBFloat16), torch::ones({4}, torch::kBFloat16), 1e-6).scalar_type(), torch::kBFloat16);
  // GPT-2's LayerNorm uses layer_norm_epsilon: mean 2.5, var 1.25.
  auto c = small_gpt2();
  c.layer_norm_epsilon = 1e-5;
  GPT2LMHeadModel m(c);
  EXPECT_EQ(m->transformer->ln_f->options.eps(), 1e-5);
  auto ln = torch::nn::LayerNorm(torch::nn::LayerNormOptions({4}).eps(c.layer_norm_epsilon));
  auto want_ln = torch::tensor({{-1.3416354f, -0.4472118f, 0.4472118f, 1.3416354f}});
  EXPECT_TRUE(peft_test::close(ln(x), want_ln, 1e-6, 1e-6));
}

SEEDED_TEST(LlamaRope, AttentionScoresDependOnlyOnRelativePosition) {
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
  EXPECT_TRUE(peft_test::close(s0, s7, 1e-4, 1e-5));  // same (m - n) -> same score
  EXPECT_TRUE(peft_test::not_close(s0[0][0][0][1], s0[0][0][0][3]));  // different distances differ
  // Position 0 is the identity rotation.
  auto [cos, sin] = rope_cos_sin(torch::zeros({1}, torch::kInt64), inv, torch::kFloat32);
  EXPECT_TRUE(peft_test::close(apply_rotary(q.slice(2, 0, 1), cos, sin), q.slice(2, 0, 1)));
  // rotate_half: [1 2 3 4] -> [-3 -4 1 2].
  EXPECT_TRUE(peft_test::equal(rotate_half(torch::tensor({1, 2, 3, 4})), torch::tensor({-3, -4, 1, 2})));
}

SEEDED_TEST(ModelsMath, ChangingAFutureTokenLeavesEarlierLogitsUnchanged) {
  std::vector<CausalLM> models = {make_builtin("tiny-gpt2", 1), make_builtin("tiny-llama", 1)};
  for (auto& m : models) {
    m->eval();
    auto ids = ids_for(m->vocab_size(), 2, 12, 3);
    auto changed = ids.clone();
    changed.index_put_({torch::indexing::Slice(), 7}, (ids.index({torch::indexing::Slice(), 7}) + 1) % m->vocab_size());
    auto a = m->forward(ids), b = m->forward(changed);
    EXPECT_TRUE(peft_test::equal(a.slice(1, 0, 7), b.slice(1, 0, 7))) << m->model_type();
    EXPECT_TRUE(peft_test::not_close(a.slice(1, 7), b.slice(1, 7))) << m->model_type();
  }
}

SEEDED_TEST(LlamaGqa, EqualsMultiHeadAttentionWithDuplicatedKeyValueWeights) {
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
  EXPECT_TRUE(peft_test::close(gqa->forward(ids), mha->forward(ids), 1e-5, 1e-6));
  EXPECT_TRUE(peft_test::equal(repeat_kv(torch::tensor({1.0f, 2.0f}).view({1, 2, 1, 1}), 2).flatten(),
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

SEEDED_TEST(ModelsSave, SaveThenLoadIsBitIdenticalForBothBuiltins) {
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
    for (const auto& p : a) EXPECT_TRUE(peft_test::equal(p.value(), b[p.key()])) << p.key();
    auto ids = ids_for(m->vocab_size(), 2, 10);
    EXPECT_TRUE(peft_test::equal(m->forward(ids), back->forward(ids))) << name;
    auto json = peft::JsonValue::parse(peft::read_text_file(dir / "config.json"));
    EXPECT_EQ(json.find("model_type")->as_string(), m->model_type());
    EXPECT_EQ(json.find("architectures")->as_array().size(), 1u);
  }
}

SEEDED_TEST(ModelsSave, Bfloat16ModelsRunAndSaveTheirDtype) {
  for (const auto& name : builtin_names()) {
    auto fp32 = load_causal_lm("builtin:" + name);
    auto bf16 = load_causal_lm("builtin:" + name, torch::kCPU, torch::kBFloat16);
    auto ids = ids_for(257, 1, 16);
    auto a = fp32->forward(ids), b = bf16->forward(ids);
    EXPECT_EQ(b.scalar_type(), torch::kBFloat16) << name;
    EXPECT_TRUE(peft_test::close(a, b.to(torch::kFloat32), 0, 0.05f)) << name;
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

SEEDED_TEST(ModelsSave, BuiltinsAreDeterministicPerSeedAndLeaveTheGlobalRngAlone) {
  torch::manual_seed(123);
  auto expected_next = torch::rand({1});
  torch::manual_seed(123);
  auto a = make_builtin("tiny-gpt2", 5);
  EXPECT_TRUE(peft_test::equal(torch::rand({1}), expected_next));
  auto b = make_builtin("builtin:tiny-gpt2", 5), c = make_builtin("tiny-gpt2", 6);
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  EXPECT_TRUE(peft_test::equal(pa[0], pb[0]));
  EXPECT_FALSE(torch::equal(pa[0], pc[0]));
}

// ---------------------------------------------------------------- LoRA on the builtins

SEEDED_TEST(ModelsLora, DefaultTargetsTrainAndTheAdapterRoundTrips) {
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
    EXPECT_TRUE(peft_test::close(fresh->forward(ids), want_logits, 1e-5, 1e-6)) << name;
  }
}

// ---------------------------------------------------------------- CUDA

SEEDED_TEST(ModelsCuda, ForwardOnCudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const auto& name : builtin_names()) {
    auto cpu = load_causal_lm("builtin:" + name);
    auto gpu = load_causal_lm("builtin:" + name, torch::kCUDA);
    auto ids = ids_for(257, 2, 64);
    EXPECT_TRUE(peft_test::close(gpu->forward(ids.to(torch::kCUDA)).cpu(), cpu->forward(ids), 1e-3, 1e-4)) << name;
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
