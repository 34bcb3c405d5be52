// peft-merge into a bitsandbytes 4-bit checkpoint (io/merge_into_checkpoint.hpp, QuantizedBaseMerge):
// dense output equal to the adapted 4-bit model, requantised output equal to PEFT's in-model
// requantising merge, states that move dtype, and damaged states refused before OUT exists.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/layers/linear.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/quant/quantize_4bit.hpp"
#include "peft/quant/quantize_model.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"

namespace fs = std::filesystem;

namespace {

std::map<std::string, torch::Tensor> load_map(const fs::path& p) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, v] : peft::load_safetensors(p).tensors) m[k] = v;
  return m;
}

peft::JsonValue read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return peft::JsonValue::parse(std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()));
}

bool has_state_entries(const std::map<std::string, torch::Tensor>& m) {
  for (const auto& [k, v] : m)
    if (k.find(".weight.absmax") != std::string::npos || k.find(".weight.quant_state.") != std::string::npos)
      return true;
  return false;
}

/// A tiny Llama saved as a bitsandbytes NF4 checkpoint (double quantisation), and a LoRA (or DoRA)
/// adapter on q_proj and v_proj of that 4-bit model with non-zero B, as after QLoRA training.
struct Case4bit {
  fs::path base, adapter;
  peft::models::CausalLM model{nullptr};  ///< the adapted 4-bit model
  std::unique_ptr<peft::LoraModel> pm;
  torch::Tensor ids, adapted;  ///< input ids and the adapted model's logits
};

Case4bit make_case(const std::string& tag, bool dora) {
  Case4bit c;
  const fs::path dir = peft_test::scratch_dir("merge_4bit_" + tag);
  auto dense = peft::models::make_builtin("tiny-llama", 7);
  peft::BitsAndBytesConfig q;
  q.load_in_4bit = true;
  q.bnb_4bit_quant_type = "nf4";
  q.bnb_4bit_use_double_quant = true;
  peft::quantize_model_4bit(*dense, q);
  c.base = dir / "base";
  peft::models::save_causal_lm(*dense, c.base);
  c.model = peft::models::load_causal_lm(c.base.string());
  peft::LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.use_dora = dora;
  cfg.target_modules = peft::ModuleSpec({"q_proj", "v_proj"});
  c.pm = std::make_unique<peft::LoraModel>(peft::get_peft_model(c.model, cfg));
  {
    torch::NoGradGuard g;
    for (auto& [key, layer] : c.pm->lora_layers()) layer->lora_B("default")->weight.normal_(0, 0.05);
  }
  c.adapter = dir / "adapter";
  peft::save_pretrained(*c.pm, c.adapter);
  c.model->eval();
  c.ids = torch::randint(0, c.model->vocab_size(), {2, 11}, torch::kInt64);
  torch::NoGradGuard g;
  c.adapted = c.model->forward(c.ids);
  return c;
}

torch::Tensor logits(const fs::path& dir, const torch::Tensor& ids) {
  auto m = peft::models::load_causal_lm(dir.string());
  m->eval();
  torch::NoGradGuard g;
  return m->forward(ids);
}

}  // namespace

SEEDED_TEST(MergeCheckpoint4bit, DequantizeWritesADenseCheckpointThatComputesTheAdapted4bitModel) {
  for (const bool dora : {false, true}) {
    SCOPED_TRACE(dora ? "dora" : "lora");
    const Case4bit c = make_case(dora ? "dq_dora" : "dq_lora", dora);
    const fs::path out = c.base.parent_path() / "merged";
    const auto report = peft::merge_checkpoint(c.base, {{c.adapter, 1.0}}, out);
    const auto base = load_map(c.base / "model.safetensors");
    const auto merged = load_map(out / "model.safetensors");
    EXPECT_FALSE(has_state_entries(merged));
    EXPECT_EQ(read_json(out / "config.json").find("quantization_config"), nullptr);
    ASSERT_NE(read_json(c.base / "config.json").find("quantization_config"), nullptr);
    // An unadapted 4-bit weight is written as bitsandbytes dequantises it.
    const std::string k = "model.layers.0.self_attn.k_proj.weight";
    const auto state = peft::QuantState4bit::from_entries(
        {{"absmax", base.at(k + ".absmax")},
         {"quant_map", base.at(k + ".quant_map")},
         {"nested_absmax", base.at(k + ".nested_absmax")},
         {"nested_quant_map", base.at(k + ".nested_quant_map")},
         {"quant_state.bitsandbytes__nf4", base.at(k + ".quant_state.bitsandbytes__nf4")}},
        base.at(k), k, "base");
    EXPECT_TRUE(peft_test::equal(merged.at(k), peft::dequantize_4bit(base.at(k), state)));
    std::size_t dora_merged = 0;
    for (const auto& m : report.merged) dora_merged += m.what == "dora";
    EXPECT_EQ(dora_merged, dora ? report.merged.size() : 0u);
    EXPECT_FALSE(report.notes.empty());
    // The dense checkpoint computes what the adapted 4-bit model computed.
    EXPECT_TRUE(peft_test::close(logits(out, c.ids), c.adapted, 1e-4, 1e-4));
  }
}

SEEDED_TEST(MergeCheckpoint4bit, RequantizeGivesPeftsRequantisingMergeAndCopiesUnadaptedWeights) {
  Case4bit c = make_case("rq", false);
  const fs::path out = c.base.parent_path() / "merged";
  peft::MergeCheckpointOptions o;
  o.quantized_base = peft::QuantizedBaseMerge::requantize;
  peft::ScopedWarningCapture warnings;
  peft::merge_checkpoint(c.base, {{c.adapter, 1.0}}, out, o);
  ASSERT_EQ(warnings.messages().size(), 1u);
  EXPECT_NE(warnings.messages()[0].find("rounding errors"), std::string::npos);
  EXPECT_NE(read_json(out / "config.json").find("quantization_config"), nullptr);
  const auto base = load_map(c.base / "model.safetensors");
  const auto merged = load_map(out / "model.safetensors");
  ASSERT_EQ(merged.size(), base.size());
  for (const auto& [k, v] : base) {
    ASSERT_TRUE(merged.count(k)) << k;
    const bool adapted = k.find("q_proj.weight") != std::string::npos || k.find("v_proj.weight") != std::string::npos;
    if (!adapted) {
      EXPECT_TRUE(peft_test::equal(merged.at(k), v)) << k << " changed";
    }
  }
  // The in-model merge on the 4-bit layers (PEFT's Linear4bit.merge) requantises the same way;
  // the delta's float32 sums may round a code or two differently.
  c.pm->merge_adapter();
  const auto modules = c.model->named_modules();
  std::size_t checked = 0;
  for (const auto& item : modules) {
    auto* lin = dynamic_cast<peft::LinearImpl*>(item.value().get());
    const std::string k = item.key() + ".weight";
    if (!lin || !lin->quantized() || (k.find("q_proj") == std::string::npos && k.find("v_proj") == std::string::npos))
      continue;
    const auto differing = merged.at(k).reshape(-1).ne(lin->weight.reshape(-1)).sum().item<std::int64_t>();
    EXPECT_LE(differing, 2) << k;
    EXPECT_GT(merged.at(k).ne(base.at(k)).sum().item<std::int64_t>(), 0) << k << ": the merge changed no code";
    ++checked;
  }
  EXPECT_TRUE(checked >= 2 && checked % 2 == 0) << checked;  // q_proj and v_proj of every layer
  // The output loads as a 4-bit model again, close to the adapted one (requantisation is lossy).
  auto back = peft::models::load_causal_lm(out.string());
  EXPECT_GT(peft::quantized_footprint(*back).layers, 0);
}

SEEDED_TEST(MergeCheckpoint4bit, OutputDtypeMovesDenseWeightsOrTheDtypeStatesDequantiseTo) {
  Case4bit c = make_case("dtype", false);
  std::vector<std::pair<std::string, torch::Tensor>> base;
  for (auto& kv : load_map(c.base / "model.safetensors")) base.push_back(kv);
  peft::MergeCheckpointOptions o;
  o.dtype = torch::kBFloat16;
  const auto dense = peft::merge_state_dict(base, {{c.adapter, 1.0}}, o);
  for (const auto& [k, v] : dense) EXPECT_EQ(v.scalar_type(), torch::kBFloat16) << k;
  o.quantized_base = peft::QuantizedBaseMerge::requantize;
  peft::ScopedWarningCapture quiet;
  const auto requantised = peft::merge_state_dict(base, {{c.adapter, 1.0}}, o);
  ASSERT_EQ(requantised.size(), base.size());
  const std::string k = "model.layers.0.mlp.up_proj.weight";
  std::map<std::string, torch::Tensor> entries;
  torch::Tensor codes, old_codes;
  for (const auto& [key, v] : requantised) {
    if (key == k) codes = v;
    else if (key.rfind(k + ".", 0) == 0) entries[key.substr(k.size() + 1)] = v;
  }
  for (const auto& [key, v] : base)
    if (key == k) old_codes = v;
  const auto st = peft::QuantState4bit::from_entries(entries, codes, k, "merged");
  EXPECT_EQ(st.dtype, torch::kBFloat16);
  EXPECT_TRUE(peft_test::equal(codes, old_codes));  // only the state's dtype moved
}

SEEDED_TEST(MergeCheckpoint4bit, ADamagedStateOrAnUnknownChoiceIsRefusedBeforeOutExists) {
  Case4bit c = make_case("damaged", false);
  const fs::path damaged = c.base.parent_path() / "damaged";
  fs::copy(c.base, damaged, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto tensors = peft::load_safetensors(damaged / "model.safetensors").tensors;
  for (auto& [k, v] : tensors)
    if (k == "model.layers.0.self_attn.o_proj.weight.absmax") v = v.slice(0, 0, 1).clone();
  peft::save_safetensors(damaged / "model.safetensors", tensors, {{"format", "pt"}});
  const fs::path out = c.base.parent_path() / "merged_damaged";
  try {
    peft::merge_checkpoint(damaged, {{c.adapter, 1.0}}, out);
    ADD_FAILURE() << "damaged state accepted";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("o_proj.weight.absmax"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
  try {
    peft::parse_quantized_base_merge("dense");
    ADD_FAILURE() << "unknown choice accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("quantized_base"), std::string::npos) << e.what();
  }
}
