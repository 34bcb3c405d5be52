// The Llama-family switches checked by hand (models/llama.hpp, model_config.hpp): config.json
// defaults and refusals per model_type, Qwen3's q/k norm placement, sliding windows, LongRoPE,
// partial rotary, and gradient checkpointing (same loss and gradients).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "peft/models/causal_lm.hpp"
#include "peft/models/checkpointing.hpp"
#include "peft/models/gpt2.hpp"
#include "peft/models/llama.hpp"
#include "peft/models/rope.hpp"
#include "peft/tuner/lora_model.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_decoders.hpp"

using namespace peft::models;
using peft::JsonValue;

namespace {

/// A tiny config.json of `type` with `extra` fields merged in.
JsonValue family_json(const std::string& type, const std::string& extra = "") {
  std::string text = R"({"model_type": ")" + type + R"(", "vocab_size": 17, "hidden_size": 16,
      "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2)";
  if (!extra.empty()) text += ", " + extra;
  return JsonValue::parse(text + "}");
}

LlamaConfig parse(const std::string& type, const std::string& extra = "") {
  return llama_config_from_json(family_json(type, extra));
}

std::string refusal(const std::string& type, const std::string& extra) {
  try {
    parse(type, extra);
  } catch (const ModelConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ModelFamilyConfig, EachTypeTakesTransformersDefaults) {
  auto gemma = parse("gemma");
  EXPECT_EQ(gemma.attn_head_dim(), 256);  // GemmaConfig.head_dim, not hidden / heads
  EXPECT_TRUE(gemma.tie_word_embeddings);
  EXPECT_TRUE(gemma.unit_offset_norm && gemma.scale_embeddings);
  EXPECT_EQ(gemma.hidden_act, "gelu_pytorch_tanh");
  // hidden_act is legacy in Gemma: hidden_activation (or its gelu_pytorch_tanh default) wins.
  EXPECT_EQ(parse("gemma", R"("hidden_act": "silu")").hidden_act, "gelu_pytorch_tanh");
  EXPECT_EQ(parse("gemma", R"("hidden_act": "silu", "hidden_activation": "gelu")").hidden_act, "gelu");

  EXPECT_EQ(parse("mistral").sliding_window, 4096);  // MistralConfig's default when absent
  EXPECT_EQ(parse("mistral", R"("sliding_window": null)").sliding_window, 0);
  EXPECT_EQ(parse("qwen2", R"("sliding_window": 8)").sliding_window, 0);  // use_sliding_window false
  EXPECT_EQ(parse("qwen2", R"("sliding_window": 8, "use_sliding_window": true)").sliding_window, 8);
  EXPECT_EQ(parse("phi3").sliding_window, 0);
  EXPECT_EQ(parse("phi3").rms_norm_eps, 1e-5);
  EXPECT_TRUE(parse("phi3").fused_projections);
  EXPECT_TRUE(parse("qwen3").qk_norm);
  auto qwen2 = parse("qwen2");
  EXPECT_TRUE(qwen2.qkv_bias());
  EXPECT_FALSE(qwen2.o_bias());
  EXPECT_EQ(parse("llama").rms_norm_eps, 1e-6);
}

TEST(ModelFamilyConfig, ResultChangingSettingsWeDoNotImplementAreRefusedByName) {
  EXPECT_NE(refusal("gemma", R"("final_logit_softcapping": 30.0)").find("final_logit_softcapping"), std::string::npos);
  EXPECT_NE(refusal("gemma", R"("attn_logit_softcapping": 50.0)").find("attn_logit_softcapping"), std::string::npos);
  EXPECT_NE(refusal("llama", R"("rope_scaling": {"rope_type": "dynamic", "factor": 2.0})").find("dynamic"),
            std::string::npos);
  EXPECT_NE(refusal("llama", R"("sliding_window": 16)").find("sliding_window"), std::string::npos);
  EXPECT_NE(refusal("llama", R"("rope_scaling": {"type": "longrope", "short_factor": [1], "long_factor": [1]})")
                .find("longrope"),
            std::string::npos);
  EXPECT_NE(refusal("phi3", R"("rope_scaling": {"type": "longrope", "short_factor": [1.0], "long_factor": [1.0]})")
                .find("short_factor"),
            std::string::npos);  // needs rotary_dim / 2 = 2 values
  EXPECT_NE(refusal("mistral", R"("layer_types": ["full_attention", "full_attention"])").find("layer_types"),
            std::string::npos);
  EXPECT_EQ(refusal("gemma", R"("final_logit_softcapping": null)"), "");
}

TEST(ModelFamilyConfig, ConfigJsonRoundTripsEveryFamily) {
  for (const auto& type : llama_family_model_types()) {
    std::string extra;
    if (type == "phi3")
      extra = R"("partial_rotary_factor": 0.5, "max_position_embeddings": 64, "original_max_position_embeddings": 16,
                 "rope_scaling": {"type": "longrope", "short_factor": [1.0], "long_factor": [2.0]})";
    if (type == "mistral") extra = R"("sliding_window": 5)";
    auto c = parse(type, extra);
    auto back = llama_config_from_json(JsonValue::parse(llama_config_to_json(c, torch::kFloat32)));
    EXPECT_EQ(back.model_type, type);
    EXPECT_EQ(back.attn_head_dim(), c.attn_head_dim()) << type;
    EXPECT_EQ(back.sliding_window, c.sliding_window) << type;
    EXPECT_EQ(back.rope_type, c.rope_type) << type;
    EXPECT_EQ(back.rope_long_factor, c.rope_long_factor) << type;
    EXPECT_EQ(back.partial_rotary_factor, c.partial_rotary_factor) << type;
    EXPECT_EQ(back.hidden_act, c.hidden_act) << type;
    EXPECT_EQ(back.tie_word_embeddings, c.tie_word_embeddings) << type;
    EXPECT_EQ(JsonValue::parse(llama_config_to_json(c, torch::kFloat32)).find("architectures")->dump(),
              "[\"" + c.causal_lm_class() + "\"]");
  }
}

SEEDED_TEST(ModelFamilies, Qwen3NormalisesEachQueryAndKeyHeadBeforeTheRotation) {
  auto c = parse("qwen3", R"("head_dim": 8)");
  LlamaForCausalLMImpl model(c);
  {
    torch::NoGradGuard g;
    for (auto& p : model.named_parameters())
      if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  auto& attn = *model.model->layers[0]->as<LlamaDecoderLayerImpl>()->self_attn;
  const std::int64_t T = 5;
  auto x = torch::randn({1, T, 16});
  LlamaLayerInputs in;
  std::tie(in.cos, in.sin) = model.model->rope.cos_sin(torch::arange(T).unsqueeze(0), torch::kFloat32);
  in.cos = in.cos.unsqueeze(1);
  in.sin = in.sin.unsqueeze(1);
  auto got = attn.forward(x, in);

  // By hand: per head, q / rms(q) * q_norm.weight, then the rotation; GQA with 2 kv heads.
  auto head_norm = [&](const torch::Tensor& t, const torch::Tensor& w) {
    return t * torch::rsqrt(t.pow(2).mean(-1, true) + c.rms_norm_eps) * w;
  };
  auto q = head_norm(torch::linear(x, attn.q_proj->weight).view({1, T, 4, 8}), attn.q_norm->weight).transpose(1, 2);
  auto k = head_norm(torch::linear(x, attn.k_proj->weight).view({1, T, 2, 8}), attn.k_norm->weight).transpose(1, 2);
  auto v = torch::linear(x, attn.v_proj->weight).view({1, T, 2, 8}).transpose(1, 2);
  q = apply_rotary(q, in.cos, in.sin);
  k = apply_rotary(k, in.cos, in.sin).repeat_interleave(2, 1);
  v = v.repeat_interleave(2, 1);
  auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(8.0);
  scores = scores.masked_fill(torch::ones({T, T}, torch::kBool).triu(1), -INFINITY);
  auto out = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({1, T, 32});
  EXPECT_TRUE(peft_test::close(got, torch::linear(out, attn.o_proj->weight), 1e-5, 1e-6));
}

SEEDED_TEST(ModelFamilies, SlidingWindowOneLayerSeesOnlyTheLastWindowTokens) {
  // One layer, window 3: the last position's output depends on the last 3 tokens only, and
  // rotary scores depend on relative positions, so it equals the output of those 3 tokens alone.
  auto c = parse("mistral", R"("sliding_window": 3)");
  LlamaForCausalLMImpl model(c);
  model.eval();
  torch::NoGradGuard g;
  auto ids = torch::randint(17, {1, 9}, torch::kInt64);
  auto full = model.forward(ids).select(1, 8);
  auto window = model.forward(ids.slice(1, 6)).select(1, 2);
  EXPECT_TRUE(peft_test::close(full, window, 1e-4, 1e-5));
  // Without the window the earlier tokens matter.
  c.sliding_window = 0;
  LlamaForCausalLMImpl plain(c);
  auto from = model.named_parameters();
  for (auto& p : plain.named_parameters()) p.value().copy_(*from.find(p.key()));
  EXPECT_TRUE(peft_test::not_close(plain.forward(ids).select(1, 8), window, 1e-4, 1e-5));
}

SEEDED_TEST(ModelFamilies, LongRopeScalesCosSinAndSwitchesFactorsPastTheOriginalLength) {
  auto c = parse("phi3", R"("head_dim": 8, "max_position_embeddings": 64, "original_max_position_embeddings": 16,
      "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.0, 1.0, 1.0], "long_factor": [2.0, 2.0, 4.0, 4.0]})");
  LlamaRope rope(c);
  const double scale = std::sqrt(1.0 + std::log(64.0 / 16.0) / std::log(16.0));
  auto inv = rope_inv_freq(8, c.rope_theta);
  auto short_pos = torch::arange(10).unsqueeze(0);
  auto [cos_s, sin_s] = rope.cos_sin(short_pos, torch::kFloat32);
  auto [want_cos_s, want_sin_s] = rope_cos_sin(short_pos, inv, torch::kFloat32);
  EXPECT_TRUE(peft_test::close(cos_s, want_cos_s * scale, 1e-5, 1e-6));
  EXPECT_TRUE(peft_test::close(sin_s, want_sin_s * scale, 1e-5, 1e-6));
  auto long_pos = torch::arange(20).unsqueeze(0);  // max + 1 = 20 > 16: long factors
  auto [cos_l, sin_l] = rope.cos_sin(long_pos, torch::kFloat32);
  auto [want_cos_l, want_sin_l] =
      rope_cos_sin(long_pos, inv / torch::tensor({2.0f, 2.0f, 4.0f, 4.0f}), torch::kFloat32);
  EXPECT_TRUE(peft_test::close(cos_l, want_cos_l * scale, 1e-5, 1e-6));
}

SEEDED_TEST(ModelFamilies, PartialRotaryRotatesOnlyTheLeadingFeatures) {
  auto x = torch::randn({1, 2, 3, 8});
  auto inv = rope_inv_freq(4, 10000.0);
  auto [cos, sin] = rope_cos_sin(torch::arange(3), inv, torch::kFloat32);
  auto y = apply_rotary(x, cos, sin);
  EXPECT_TRUE(torch::equal(y.slice(-1, 4), x.slice(-1, 4)));
  EXPECT_TRUE(peft_test::close(y.slice(-1, 0, 4), apply_rotary(x.slice(-1, 0, 4).contiguous(), cos, sin)));
  auto c = parse("phi3", R"("head_dim": 8, "partial_rotary_factor": 0.5)");
  EXPECT_EQ(c.rotary_dim(), 4);
  LlamaForCausalLMImpl model(c);  // builds and runs with a 4-wide rotary table
  torch::NoGradGuard g;
  EXPECT_EQ(model.forward(torch::zeros({1, 3}, torch::kInt64)).sizes(), (std::vector<int64_t>{1, 3, 17}));
}

namespace {

/// Loss and every gradient of one step with dropout everywhere, the RNG seeded the same way.
std::pair<torch::Tensor, std::vector<torch::Tensor>> step(CausalLMImpl& m, const torch::Tensor& ids, bool ckpt) {
  m.set_gradient_checkpointing(ckpt);
  m.train();
  m.zero_grad();
  torch::manual_seed(7);
  auto loss = causal_lm_loss(m.forward(ids), ids);
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : m.parameters())
    grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return {loss.detach(), grads};
}

void expect_same_step(CausalLMImpl& m, const torch::Tensor& ids, const std::string& what) {
  auto [loss0, grads0] = step(m, ids, false);
  auto [loss1, grads1] = step(m, ids, true);
  EXPECT_TRUE(peft_test::close(loss1, loss0, 1e-6, 1e-7)) << what;
  ASSERT_EQ(grads0.size(), grads1.size());
  std::size_t with_grad = 0;
  for (std::size_t i = 0; i < grads0.size(); ++i) {
    ASSERT_EQ(grads0[i].defined(), grads1[i].defined()) << what << " parameter " << i;
    if (!grads0[i].defined()) continue;
    ++with_grad;
    EXPECT_TRUE(peft_test::close(grads1[i], grads0[i], 1e-5, 1e-7)) << what << " parameter " << i;
  }
  EXPECT_GT(with_grad, 0u) << what;
}

}  // namespace

SEEDED_TEST(GradientCheckpointing, SameLossAndGradientsWithDropoutInEveryBlock) {
  auto g = peft_test::small_gpt2();
  g.resid_pdrop = g.attn_pdrop = g.embd_pdrop = 0.1;
  GPT2LMHeadModelImpl gpt2(g);
  expect_same_step(gpt2, peft_test::ids_for(g.vocab_size, 2, 9), "gpt2 full fine-tune");

  auto c = parse("phi3", R"("resid_pdrop": 0.1, "attention_dropout": 0.1)");
  auto phi = std::make_shared<LlamaForCausalLMImpl>(c);
  expect_same_step(*phi, peft_test::ids_for(17, 2, 9), "phi3 full fine-tune");

  // LoRA over a frozen base: the blocks' inputs need no gradient, the adapters still get theirs.
  auto llama = std::make_shared<LlamaForCausalLMImpl>(parse("llama"));
  peft::LoraConfig cfg;
  cfg.r = 2;
  cfg.lora_dropout = 0.2;
  cfg.target_modules = peft::ModuleSpec({"q_proj", "v_proj", "down_proj"});
  cfg.init_lora_weights = "gaussian";
  auto pm = peft::get_peft_model(llama, cfg);
  expect_same_step(*llama, peft_test::ids_for(17, 2, 9), "llama LoRA");
}

SEEDED_TEST(GradientCheckpointing, FreesTheBlockActivationsUntilBackward) {
  // checkpoint() keeps no graph of fn: the output's grad_fn is the checkpoint node, whose only
  // saved tensor is the input.
  auto w = torch::randn({4, 4}, torch::requires_grad());
  auto x = torch::randn({3, 4});
  auto y = checkpoint([&](const torch::Tensor& h) { return torch::tanh(torch::matmul(h, w)).sin(); }, x);
  ASSERT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn()->name().find("CheckpointFunction"), std::string::npos) << y.grad_fn()->name();
  y.sum().backward();
  auto want = torch::autograd::grad({torch::tanh(torch::matmul(x, w)).sin().sum()}, {w})[0];
  EXPECT_TRUE(peft_test::close(w.grad(), want));
}

TEST(ModelFamilyConfig, TransformersFiveSpellingsAreRead) {
  // transformers 5 writes rope_parameters (theta inside), layer_types and dtype.
  auto c = parse("qwen3", R"("num_hidden_layers": 2, "head_dim": 8, "dtype": "bfloat16",
      "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
      "sliding_window": 4, "use_sliding_window": true, "layer_types": ["full_attention", "sliding_attention"])");
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.layer_window(0), 0);
  EXPECT_EQ(c.layer_window(1), 4);
  auto llama3 = parse("llama", R"("rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  EXPECT_EQ(llama3.rope_type, "llama3");
  EXPECT_EQ(llama3.rope_theta, 5e5);
  EXPECT_EQ(llama3.rope_factor, 8.0);
}
