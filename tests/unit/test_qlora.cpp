// QLoRA's 4-bit base: bitsandbytes-exact quantisation (golden files from real bitsandbytes in
// tests/data/bnb4bit, written by tests/python/make_bnb4bit_cases.py), hand-checkable blocks, the
// 4-bit peft::Linear (forward, backward memory, dtype/device moves, merge) and LoRA/DoRA on it
// against PEFT 0.20's lora.Linear4bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/init/loftq.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/load_4bit.hpp"
#include "peft/quant/quantize_model.hpp"
#include "peft/layers/adapter_settings.hpp"
#include "peft/layers/linear.hpp"
#include "peft/quant/quantize_4bit.hpp"
#include "peft/warnings.hpp"
#include "support/cpu_memory_counter.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"

namespace fs = std::filesystem;
using peft::QuantState4bit;
using peft::QuantType4bit;

namespace {

const fs::path kData = fs::path(PEFT_TEST_DATA_DIR) / "bnb4bit";

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::map<std::string, torch::Tensor> load_map(const fs::path& p) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, v] : peft::load_safetensors(p).tensors) m[k] = v;
  return m;
}

torch::ScalarType dtype_of(const std::string& s) {
  return s == "float16" ? torch::kFloat16 : s == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
}

// Codes of a packed tensor as one uint8 per element (high nibble first).
torch::Tensor unpack(const torch::Tensor& packed, std::int64_t n) {
  const auto p = packed.reshape(-1);
  return torch::stack({p.__rshift__(4), p.bitwise_and(15)}, 1).reshape(-1).slice(0, 0, n);
}

}  // namespace

TEST(Quantize4bit, EveryGoldenCaseGivesBitsandbytesCodesAbsmaxStateAndValues) {
  const auto cases = peft::JsonValue::parse(read_text(kData / "quant_cases.json"));
  auto t = load_map(kData / "quant_cases.safetensors");
  ASSERT_GE(cases.find("cases")->as_array().size(), 6u);
  for (const auto& c : cases.find("cases")->as_array()) {
    const std::string name = c.find("name")->as_string();
    SCOPED_TRACE(name);
    const auto qt = peft::parse_quant_type_4bit(c.find("quant_type")->as_string(), "case", "quant_type");
    const auto& input = t.at(name + ".input");
    ASSERT_EQ(input.scalar_type(), dtype_of(c.find("dtype")->as_string()));
    auto [packed, st] = peft::quantize_4bit(input, qt, c.find("blocksize")->as_int(),
                                            c.find("compress_statistics")->as_bool());
    EXPECT_TRUE(peft_test::equal(packed, t.at(name + ".packed")));
    EXPECT_TRUE(peft_test::equal(st.absmax, t.at(name + ".absmax")));
    EXPECT_TRUE(peft_test::equal(st.quant_map, t.at(name + ".quant_map")));
    if (c.find("compress_statistics")->as_bool()) {
      EXPECT_TRUE(peft_test::equal(st.nested_absmax, t.at(name + ".nested_absmax")));
      EXPECT_TRUE(peft_test::equal(st.nested_quant_map, t.at(name + ".nested_quant_map")));
    }
    EXPECT_EQ(st.json(), c.find("quant_state")->as_string());
    const auto deq = peft::dequantize_4bit(packed, st);
    EXPECT_EQ(deq.scalar_type(), input.scalar_type());
    EXPECT_TRUE(peft_test::equal(deq, t.at(name + ".dequant")));
    // The stored state read back (as from a checkpoint) dequantises the file's codes the same way.
    std::map<std::string, torch::Tensor> entries;
    for (auto& [k, v] : st.state_dict_entries("w")) entries[k.substr(2)] = v;
    const auto back = QuantState4bit::from_entries(entries, t.at(name + ".packed"), "w", "case");
    EXPECT_TRUE(peft_test::equal(peft::dequantize_4bit(t.at(name + ".packed"), back), t.at(name + ".dequant")));
  }
}

TEST(Quantize4bit, DynamicMapIsBitsandbytesOwn) {
  auto t = load_map(kData / "quant_cases.safetensors");
  EXPECT_TRUE(peft_test::equal(peft::dynamic_map_8bit(), t.at("dynamic_map")));
}

TEST(Quantize4bit, HandMadeNf4BlockPacksHighNibbleFirstAndRoundsTiesDown) {
  // One block of 64 with absmax 2: scaled values 1, -1, 0, 0.5625 (nearest code 0.5626 = 13),
  // the midpoint of codes 7 and 8 (a tie: the lower code, 7) and just above it (8).
  auto a = torch::zeros({64});
  a[0] = 2.0f;
  a[1] = -2.0f;
  a[3] = 1.125f;
  const float mid = (0.0f + static_cast<float>(0.07958029955625534)) / 2;
  a[4] = mid * 2.0f;
  a[5] = std::nextafter(mid, 1.0f) * 2.0f;
  auto [packed, st] = peft::quantize_4bit(a, QuantType4bit::nf4, 64);
  ASSERT_EQ(packed.sizes(), (std::vector<std::int64_t>{32, 1}));
  const auto p = packed.reshape(-1);
  EXPECT_EQ(p[0].item<int>(), 0xF0);  // codes 15 (1.0) and 0 (-1.0)
  EXPECT_EQ(p[1].item<int>(), 0x7D);  // 0 -> 7, 0.5625 -> 13
  EXPECT_EQ(p[2].item<int>(), 0x78);  // the tie -> 7, just above -> 8
  EXPECT_EQ(p[3].item<int>(), 0x77);  // zeros
  EXPECT_FLOAT_EQ(st.absmax[0].item<float>(), 2.0f);
  const auto d = peft::dequantize_4bit(packed, st);
  EXPECT_FLOAT_EQ(d[3].item<float>(), static_cast<float>(0.5626170039176941) * 2.0f);
}

TEST(Quantize4bit, Fp4ZeroBlockPacksAsZeroAndSmallPositiveValuesTakeTheNegativeZeroCode) {
  // bnb's default backend (followed here; docs/qlora.md): 0 and tiny negatives -> code 0,
  // tiny positives -> code 8 (-0). An all-zero block is 0x00 (NF4: 0x77).
  auto a = torch::zeros({128});
  a[64] = 1.0f;
  a[65] = 1e-4f;
  a[66] = -1e-4f;
  auto [packed, st] = peft::quantize_4bit(a, QuantType4bit::fp4, 64);
  const auto codes = unpack(packed, 128);
  EXPECT_EQ(codes.slice(0, 0, 64).sum().item<int>(), 0);
  EXPECT_EQ(codes[64].item<int>(), 3);  // 1.0 is FP4 code 3 (12 / 12)
  EXPECT_EQ(codes[65].item<int>(), 8);
  EXPECT_EQ(codes[66].item<int>(), 0);
  EXPECT_EQ(st.absmax[0].item<float>(), 0.0f);
  auto [nf, nst] = peft::quantize_4bit(torch::zeros({64}), QuantType4bit::nf4, 64);
  EXPECT_TRUE((nf == 0x77).all().item<bool>());
}

TEST(Quantize4bit, PartialLastBlockAndOddCountKeepTheirOwnAbsmaxAndPad) {
  auto a = torch::full({67}, 0.5f);
  a[66] = -4.0f;  // the partial block's own absmax
  auto [packed, st] = peft::quantize_4bit(a, QuantType4bit::nf4, 64);
  EXPECT_EQ(packed.numel(), 34);
  ASSERT_EQ(st.absmax.numel(), 2);
  EXPECT_FLOAT_EQ(st.absmax[1].item<float>(), 4.0f);
  const auto codes = unpack(packed, 68);
  EXPECT_EQ(codes[66].item<int>(), 0);  // -1 after scaling
  EXPECT_EQ(codes[67].item<int>(), 7);  // the pad is a zero
  EXPECT_EQ(peft::dequantize_4bit(packed, st).sizes(), a.sizes());
}

TEST(Quantize4bit, BadArgumentsAreConfigErrorsNamingTheField) {
  const auto a = torch::randn({8, 8});
  try {
    peft::quantize_4bit(a, QuantType4bit::nf4, 48);
    FAIL();
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "blocksize");
    EXPECT_EQ(e.value(), "48");
  }
  EXPECT_THROW(peft::quantize_4bit(a.to(torch::kFloat64)), peft::ConfigError);
  EXPECT_THROW(peft::parse_quant_type_4bit("int4", "BitsAndBytesConfig", "bnb_4bit_quant_type"), peft::ConfigError);
}

TEST(QuantState4bitEntries, MalformedCheckpointEntriesAreRefusedNamingTheKey) {
  auto w = torch::randn({16, 8});
  auto [packed, st] = peft::quantize_4bit(w, QuantType4bit::nf4, 64, true);
  std::map<std::string, torch::Tensor> good;
  for (auto& [k, v] : st.state_dict_entries("fc.weight")) good[k.substr(std::string("fc.weight.").size())] = v;
  auto refused = [&](std::map<std::string, torch::Tensor> e, const torch::Tensor& p, const std::string& needle) {
    try {
      QuantState4bit::from_entries(e, p, "fc.weight", "model.safetensors");
      return ::testing::AssertionFailure() << "accepted";
    } catch (const peft::SerializationError& err) {
      const std::string m = err.what();
      if (m.find(needle) == std::string::npos || m.find("model.safetensors") == std::string::npos)
        return ::testing::AssertionFailure() << m;
      return ::testing::AssertionSuccess();
    }
  };
  EXPECT_NO_THROW(QuantState4bit::from_entries(good, packed, "fc.weight", "f"));
  auto e = good;
  e.erase("absmax");
  EXPECT_TRUE(refused(e, packed, "fc.weight.absmax"));
  e = good;
  e.erase("nested_absmax");
  EXPECT_TRUE(refused(e, packed, "fc.weight.nested_absmax"));
  e = good;
  e["absmax"] = torch::zeros({3}, torch::kUInt8);
  EXPECT_TRUE(refused(e, packed, "fc.weight.absmax"));
  EXPECT_TRUE(refused(good, packed.slice(0, 0, 10), "fc.weight"));
  e = good;
  e["quant_state.bitsandbytes__nf4"] = torch::tensor({'{', 'x'}, torch::kUInt8);
  EXPECT_TRUE(refused(e, packed, "not valid JSON"));
  e = good;
  e["quant_map"] = peft::code_4bit(QuantType4bit::fp4);
  EXPECT_TRUE(refused(e, packed, "quant_map"));
  e = good;
  e["quant_state.bitsandbytes__fp4"] = e["quant_state.bitsandbytes__nf4"];
  EXPECT_TRUE(refused(e, packed, "both"));
  e = good;
  const std::string bad_json = R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [16, -8]})";
  auto bytes = torch::empty({static_cast<std::int64_t>(bad_json.size())}, torch::kUInt8);
  std::memcpy(bytes.data_ptr(), bad_json.data(), bad_json.size());
  e["quant_state.bitsandbytes__nf4"] = bytes;
  EXPECT_TRUE(refused(e, packed, "shape"));
}

class Linear4bit : public peft_test::SeededTest {};

TEST_F(Linear4bit, ForwardAndInputGradientEqualTheDequantisedDenseLayer) {
  peft::Linear dense(torch::nn::LinearOptions(40, 24));
  peft::Linear q(torch::nn::LinearOptions(40, 24));
  q->weight.detach().copy_(dense->weight.detach());
  q->bias.detach().copy_(dense->bias.detach());
  q->quantize_4bit_(QuantType4bit::nf4, 64, true);
  ASSERT_TRUE(q->quantized());
  EXPECT_EQ(q->weight.scalar_type(), torch::kUInt8);
  EXPECT_EQ(q->weight.numel(), 40 * 24 / 2);
  EXPECT_FALSE(q->weight.requires_grad());
  { torch::NoGradGuard g; dense->weight.copy_(q->dense_weight()); }
  auto x = torch::randn({3, 5, 40}, torch::requires_grad());
  auto x2 = x.detach().clone().requires_grad_();
  auto y = q(x), y2 = dense(x2);
  EXPECT_TRUE(peft_test::close(y, y2, 1e-5, 1e-6));
  const auto probe = torch::randn_like(y);
  (y * probe).sum().backward();
  (y2 * probe).sum().backward();
  EXPECT_TRUE(peft_test::close(x.grad(), x2.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(peft_test::close(q->bias.grad(), dense->bias.grad(), 1e-5, 1e-6));
}

TEST_F(Linear4bit, ComputeDtypeCastsInputAndOutputBackLikeBitsandbytes) {
  peft::Linear q(torch::nn::LinearOptions(64, 32));
  q->quantize_4bit_(QuantType4bit::fp4, 64, false, torch::kBFloat16);
  const auto x = torch::randn({4, 64});
  const auto y = q(x);
  EXPECT_EQ(y.scalar_type(), torch::kFloat32);
  const auto W = peft::dequantize_4bit(q->weight, q->quant_state()->state, torch::kBFloat16);
  const auto ref = torch::linear(x.to(torch::kBFloat16), W, q->bias.to(torch::kBFloat16)).to(torch::kFloat32);
  EXPECT_TRUE(peft_test::equal(y, ref));
}

TEST_F(Linear4bit, NoDequantisedWeightStaysAliveBetweenForwardAndBackward) {
  auto* counter = peft::testing::CpuMemoryCounter::install();
  if (!counter) GTEST_SKIP() << "the CPU allocator cannot be counted here";
  peft::Linear q(torch::nn::LinearOptions(1024, 1024).bias(false));
  q->quantize_4bit_();
  const auto x = torch::randn({2, 1024}, torch::requires_grad());
  const auto before = counter->live_bytes();
  auto y = q(x);
  const auto held = counter->live_bytes() - before;  // y and whatever the graph saved
  const std::int64_t dense_bytes = 1024 * 1024 * 4;
  EXPECT_LT(held, dense_bytes / 16) << held << " bytes held after forward";
  y.sum().backward();
  EXPECT_EQ(x.grad().sizes(), x.sizes());
}

TEST_F(Linear4bit, DtypeMovesKeepThePackedCodesAndCloneKeepsTheState) {
  peft::Linear q(torch::nn::LinearOptions(32, 16));
  q->quantize_4bit_(QuantType4bit::nf4, 32, true);
  const auto codes = q->weight.clone();
  const auto x = torch::randn({2, 32});
  const auto y = q(x);
  q->to(torch::kBFloat16);
  EXPECT_EQ(q->weight.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(peft_test::equal(q->weight, codes));
  EXPECT_EQ(q->bias.scalar_type(), torch::kBFloat16);
  q->to(torch::kFloat32);
  EXPECT_TRUE(peft_test::equal(q(x), (q(x))));
  auto copy = std::dynamic_pointer_cast<peft::LinearImpl>(q->clone());
  ASSERT_TRUE(copy && copy->quantized());
  EXPECT_TRUE(peft_test::equal(copy->weight, codes));
  EXPECT_TRUE(peft_test::close(copy->forward(x), y, 1e-2, 1e-2));  // bias went through bf16
  q->dequantize_();
  EXPECT_FALSE(q->quantized());
  EXPECT_EQ(q->weight.sizes(), (std::vector<std::int64_t>{16, 32}));
  EXPECT_TRUE(peft_test::equal(q->weight, copy->dense_weight()));
}

TEST_F(Linear4bit, WrongStateOrDtypeIsRefusedWithTheLayerUnchanged) {
  peft::Linear q(torch::nn::LinearOptions(32, 16));
  const auto w = q->weight.detach().clone();
  auto [packed, st] = peft::quantize_4bit(torch::randn({16, 16}));
  EXPECT_THROW(q->set_quantized_weight(packed, st), peft::ConfigError);
  EXPECT_THROW(q->quantize_4bit_(QuantType4bit::nf4, 100), peft::ConfigError);
  EXPECT_FALSE(q->quantized());
  EXPECT_TRUE(peft_test::equal(q->weight, w));
  q->quantize_4bit_();
  EXPECT_THROW(q->quantize_4bit_(), peft::ConfigError);
}

// ---- LoRA / DoRA on the 4-bit base against PEFT 0.20's lora.Linear4bit ----

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl(std::int64_t i, std::int64_t h, std::int64_t o)
      : fc1(register_module("fc1", peft::Linear(torch::nn::LinearOptions(i, h)))),
        fc2(register_module("fc2", peft::Linear(torch::nn::LinearOptions(h, o).bias(false)))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  peft::Linear fc1, fc2;
};
TORCH_MODULE(Net);

// The bnb checkpoint's tensors of `prefix` (e.g. "fc1.weight."), suffixes as keys.
std::map<std::string, torch::Tensor> entries_of(const std::map<std::string, torch::Tensor>& sd, const std::string& prefix) {
  std::map<std::string, torch::Tensor> e;
  for (const auto& [k, v] : sd)
    if (k.rfind(prefix, 0) == 0) e[k.substr(prefix.size())] = v;
  return e;
}

Net load_4bit_net(const fs::path& dir) {
  const auto c = peft::JsonValue::parse(read_text(dir / "case.json"));
  Net net(c.find("in")->as_int(), c.find("hidden")->as_int(), c.find("out")->as_int());
  const auto sd = load_map(dir / "base_model.safetensors");
  for (auto [name, layer] : {std::pair<std::string, peft::Linear>{"fc1", net->fc1}, {"fc2", net->fc2}}) {
    const auto& packed = sd.at(name + ".weight");
    layer->set_quantized_weight(packed, QuantState4bit::from_entries(entries_of(sd, name + ".weight."), packed,
                                                                      name + ".weight", "base_model.safetensors"),
                                torch::kFloat32);
    if (sd.count(name + ".bias")) layer->bias.detach().copy_(sd.at(name + ".bias"));
  }
  return net;
}

}  // namespace

class Lora4bitGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(Lora4bitGolden, OutputsGradientsAndRequantisedMergeMatchPeft) {
  const fs::path dir = kData / GetParam();
  Net net = load_4bit_net(dir);
  auto in = load_map(dir / "input.safetensors");
  auto exp = load_map(dir / "expected.safetensors");
  // The base state written back is transformers' state_dict, byte for byte.
  const auto sd = load_map(dir / "base_model.safetensors");
  for (auto [name, layer] : {std::pair<std::string, peft::Linear>{"fc1", net->fc1}, {"fc2", net->fc2}})
    for (auto& [k, v] : layer->quant_state()->state.state_dict_entries(name + ".weight"))
      EXPECT_TRUE(peft_test::equal(v, sd.at(k))) << k;

  auto pm = peft::from_pretrained(net, dir / "adapter", "default", /*is_trainable=*/true);
  // PEFT's counts: a 4-bit weight counts as the weights it stands for (Params4bit: numel · 2).
  {
    const auto c = peft::JsonValue::parse(read_text(dir / "case.json"));
    const auto i = c.find("in")->as_int(), h = c.find("hidden")->as_int(), o = c.find("out")->as_int();
    const auto [trainable, all] = pm.get_nb_trainable_parameters();
    EXPECT_EQ(all - trainable, i * h + h + h * o);
  }
  net->train();
  auto y = net->forward(in.at("x"));
  EXPECT_TRUE(peft_test::close(y, exp.at("lora"), 1e-4, 1e-5));
  (y * in.at("probe")).sum().backward();
  int grads = 0;
  const auto params = net->named_parameters();  // kept: find() points into it
  for (const auto& [key, g] : exp) {
    if (key.rfind("grad.", 0) != 0) continue;
    const std::string pname = key.substr(5);
    const auto* p = params.find(pname);
    ASSERT_NE(p, nullptr) << pname;
    EXPECT_TRUE(peft_test::close(p->grad(), g, 1e-4, 1e-5)) << pname;
    ++grads;
  }
  EXPECT_GE(grads, 4);
  net->eval();
  torch::NoGradGuard no_grad;
  {
    peft::ScopedWarningCapture quiet;
    pm.disable_adapter_layers();
    EXPECT_TRUE(peft_test::close(net->forward(in.at("x")), exp.at("base"), 1e-5, 1e-6));
    pm.enable_adapter_layers();
  }
  peft::ScopedWarningCapture warnings;
  pm.merge_adapter();
  EXPECT_FALSE(warnings.messages().empty());
  EXPECT_TRUE(net->fc1->quantized());
  // PEFT requantises W + ΔW; the codes may differ only where W + ΔW rounds an ulp apart.
  for (const std::string name : {"fc1", "fc2"}) {
    auto layer = name == "fc1" ? net->fc1 : net->fc2;
    const auto want = exp.at("merged." + name + ".weight");
    const auto diff = (unpack(layer->weight, want.numel() * 2) != unpack(want, want.numel() * 2)).sum().item<int>();
    EXPECT_LE(diff, 2) << name << ": " << diff << " codes differ";
  }
  EXPECT_TRUE(peft_test::close(net->forward(in.at("x")), exp.at("merged"), 1e-3, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Lora4bitGolden, ::testing::Values("layer_nf4", "layer_nf4_nested_dora", "layer_fp4_nested"));

// ---- whole models: quantise, save as transformers + bitsandbytes do, load back ----

namespace {

torch::Tensor logits_of(peft::models::CausalLMImpl& m, const torch::Tensor& ids) {
  torch::NoGradGuard g;
  m.eval();
  return m.forward(ids);
}

peft::BitsAndBytesConfig nf4_double() {
  peft::BitsAndBytesConfig q;
  q.load_in_4bit = true;
  q.bnb_4bit_quant_type = "nf4";
  q.bnb_4bit_use_double_quant = true;
  return q;
}

}  // namespace

TEST(QuantizeModel4bit, EveryLinearButTheHeadIsQuantisedAndComputesWithItsDequantisedWeight) {
  auto model = peft::models::make_builtin("tiny-llama", 3);
  auto dense = peft::models::make_builtin("tiny-llama", 3);  // the same weights
  const auto names = peft::quantize_model_4bit(*model, nf4_double());
  std::int64_t linears = 0;
  for (const auto& m : model->named_modules())
    if (dynamic_cast<peft::LinearImpl*>(m.value().get())) ++linears;
  const bool has_head = model->named_modules().contains("lm_head");
  EXPECT_EQ(static_cast<std::int64_t>(names.size()), linears - (has_head ? 1 : 0));
  for (const auto& n : names) EXPECT_EQ(n.find("lm_head"), std::string::npos) << n;
  const auto f = peft::quantized_footprint(*model);
  EXPECT_EQ(f.layers, static_cast<std::int64_t>(names.size()));
  EXPECT_EQ(f.code_bytes, f.parameters / 2);
  // absmax: one byte per block of 64 (nested), nested absmax, and the two maps per layer.
  EXPECT_GT(f.state_bytes, f.parameters / 64);
  // The quantised model computes exactly what its dequantised weights compute (compute fp32).
  peft::dequantize_model(*dense);  // no-op: dense has no 4-bit layers
  const auto mods = model->named_modules();
  const auto dmods = dense->named_modules();
  for (const auto& n : names) {
    auto* q = dynamic_cast<peft::LinearImpl*>(mods[n].get());
    auto* d = dynamic_cast<peft::LinearImpl*>(dmods[n].get());
    torch::NoGradGuard g;
    d->weight.copy_(q->dense_weight());
  }
  const auto ids = torch::randint(0, 50, {2, 9});
  EXPECT_TRUE(peft_test::close(logits_of(*model, ids), logits_of(*dense, ids), 1e-5, 1e-5));
  EXPECT_THROW(peft::quantize_model_4bit(*model, peft::BitsAndBytesConfig{}), peft::ConfigError);  // load_in_4bit false
  auto bad = nf4_double();
  bad.bnb_4bit_compute_dtype = "int8";
  EXPECT_THROW(peft::quantize_model_4bit(*dense, bad), peft::ConfigError);
  EXPECT_EQ(peft::quantized_footprint(*dense).layers, 0);
}

TEST(QuantizeModel4bit, SavedModelIsATransformersBnbCheckpointThatLoadsBackIdentically) {
  // tests/python/check_bnb_checkpoint.py reads these two directories with real bitsandbytes.
  const auto dense_dir = peft_test::scratch_dir("qlora_save_dense");
  peft::models::save_causal_lm(*peft::models::make_builtin("tiny-llama", 5), dense_dir);
  auto model = peft::models::make_builtin("tiny-llama", 5);
  peft::quantize_model_4bit(*model, nf4_double());
  const auto dir = peft_test::scratch_dir("qlora_save");
  peft::models::save_causal_lm(*model, dir);
  const auto config = peft::JsonValue::parse(read_text(dir / "config.json"));
  const auto* qc = config.find("quantization_config");
  ASSERT_NE(qc, nullptr);
  EXPECT_EQ(qc->find("quant_method")->as_string(), "bitsandbytes");
  EXPECT_EQ(qc->find("bnb_4bit_quant_type")->as_string(), "nf4");
  EXPECT_TRUE(qc->find("bnb_4bit_use_double_quant")->as_bool());
  // The (tied) head stays dense: named, or transformers would quantise its lm_head Linear.
  std::vector<std::string> skipped;
  for (const auto& v : qc->find("llm_int8_skip_modules")->as_array()) skipped.push_back(v.as_string());
  EXPECT_NE(std::find(skipped.begin(), skipped.end(), "lm_head"), skipped.end());
  const auto file = load_map(dir / "model.safetensors");
  EXPECT_EQ(file.at("model.layers.0.self_attn.q_proj.weight").scalar_type(), torch::kUInt8);
  EXPECT_TRUE(file.count("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"));
  EXPECT_TRUE(file.count("model.layers.0.mlp.down_proj.weight.nested_absmax"));

  auto back = peft::models::load_causal_lm(dir.string());
  EXPECT_EQ(peft::quantized_footprint(*back).layers, peft::quantized_footprint(*model).layers);
  const auto ids = torch::randint(0, 50, {2, 7});
  EXPECT_TRUE(peft_test::equal(logits_of(*back, ids), logits_of(*model, ids)));
  // Quantised while streaming a dense checkpoint: the same codes as quantising after loading.
  auto streamed = peft::models::load_causal_lm_4bit(dense_dir.string(), nf4_double());
  EXPECT_TRUE(peft_test::equal(logits_of(*streamed, ids), logits_of(*model, ids)));
  const auto mods = model->named_modules();
  for (const auto& item : streamed->named_modules()) {
    auto* lin = dynamic_cast<peft::LinearImpl*>(item.value().get());
    if (!lin || !lin->quantized()) continue;
    EXPECT_TRUE(peft_test::equal(lin->weight, dynamic_cast<peft::LinearImpl*>(mods[item.key()].get())->weight))
        << item.key();
  }
  // A damaged state is refused before the model exists.
  const auto damaged = peft_test::scratch_dir("qlora_save_damaged");
  fs::copy(dir, damaged, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto tensors = peft::load_safetensors(damaged / "model.safetensors").tensors;
  for (auto& [k, v] : tensors)
    if (k == "model.layers.0.mlp.up_proj.weight.absmax") v = v.slice(0, 0, 1).clone();
  peft::save_safetensors(damaged / "model.safetensors", tensors, {{"format", "pt"}});
  EXPECT_THROW(peft::models::load_causal_lm(damaged.string()), peft::SerializationError);
}

TEST_F(Linear4bit, BaseRewritingInitsAreRefusedOnA4bitLayerAndPlainAdaptersStayFp32) {
  peft::Linear q(torch::nn::LinearOptions(32, 16));
  q->quantize_4bit_(QuantType4bit::nf4, 64, false, torch::kBFloat16);
  peft::AdapterSettings s;
  s.r = 4;
  s.init = peft::InitMethod::Pissa;
  s.init_name = "pissa";
  const auto codes = q->weight.clone();
  try {
    q->update_layer("p", s);
    FAIL() << "pissa accepted on a 4-bit layer";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "init_lora_weights");
  }
  EXPECT_FALSE(q->has_adapter("p"));
  EXPECT_TRUE(peft_test::equal(q->weight, codes));
  s.init = peft::InitMethod::Default;
  s.init_name = "True";
  q->update_layer("a", s);
  EXPECT_EQ(q->lora_factors("a").A.scalar_type(), torch::kFloat32);
  q->set_adapter({"a"});
  const auto y = q(torch::randn({3, 32}, torch::kBFloat16));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
}

TEST_F(Linear4bit, LoftqFourBitBaseIsStoredWithoutErrorByAnNf4BaseWithoutDoubleQuantisation) {
  // PEFT 0.20's LoftQ quantises with bnb's NF4 (blocksize 64, no double quantisation): the base
  // it leaves is exactly representable, so the real 4-bit base computes what LoftQ initialised.
  const auto W = torch::randn({24, 40});
  const auto f = peft::loftq_init(W, 4, 4, 2);
  auto [codes, st] = peft::quantize_4bit(f.base_weight, QuantType4bit::nf4, 64, false);
  EXPECT_TRUE(peft_test::equal(peft::dequantize_4bit(codes, st), f.base_weight));
  peft::Linear lin(torch::nn::LinearOptions(40, 24).bias(false));
  lin->weight.detach().copy_(f.base_weight);
  const auto x = torch::randn({3, 40});
  const auto dense = lin(x);
  lin->quantize_4bit_(QuantType4bit::nf4, 64, false);
  EXPECT_TRUE(peft_test::equal(lin(x), dense));
}

TEST(Quantize4bit, DequantisingWithAStateOfOtherSizesIsRefusedBeforeReadingAnything) {
  auto [packed, st] = peft::quantize_4bit(torch::randn({10, 64}), QuantType4bit::nf4, 64, true);
  auto bad = st;
  bad.absmax = st.absmax.slice(0, 0, 3);
  EXPECT_THROW(peft::dequantize_4bit(packed, bad), peft::ConfigError);
  bad = st;
  bad.quant_map = st.quant_map.slice(0, 0, 8);
  EXPECT_THROW(peft::dequantize_4bit(packed, bad), peft::ConfigError);
  bad = st;
  bad.blocksize = 0;
  EXPECT_THROW(peft::dequantize_4bit(packed, bad), peft::ConfigError);
  bad = st;
  bad.shape = {20, -32};
  EXPECT_THROW(peft::dequantize_4bit(packed, bad), peft::ConfigError);
  EXPECT_THROW(peft::dequantize_4bit(packed.slice(0, 0, 5), st), peft::ConfigError);
}

TEST(Quantize4bit, TheTensorOpsPathOfOtherDevicesEqualsTheCpuLoop) {
  for (const bool nested : {false, true})
    for (const auto dt : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      auto [packed, st] = peft::quantize_4bit(torch::randn({7, 45}), QuantType4bit::fp4, 32, nested);
      EXPECT_TRUE(peft_test::equal(peft::detail::dequantize_4bit_tensor_ops(packed, st.absmax_float(), st, dt),
                                   peft::dequantize_4bit(packed, st, dt).reshape(-1)));
    }
}
