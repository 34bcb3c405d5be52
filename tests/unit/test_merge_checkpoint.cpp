// peft::merge_checkpoint / merge_state_dict (io/merge_into_checkpoint.hpp): the golden merged state
// dicts of every fixture case, hand-checkable small merges, layouts, errors that leave the output
// directory as it was, and merged reference-model checkpoints that reproduce the adapted logits.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "peft/config/lora_config.hpp"
#include "peft/error.hpp"
#include "peft/io/adapters.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/config/config_json.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/layers/conv.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/tuner/lora_model.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"

namespace fs = std::filesystem;
using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;

namespace {

bool rewrites_base(const fs::path& adapter_dir) {
  peft::ScopedWarningCapture quiet;
  switch (peft::load_adapter_config(adapter_dir).init_method()) {
    case peft::InitMethod::Pissa:
    case peft::InitMethod::PissaNiter:
    case peft::InitMethod::Olora:
    case peft::InitMethod::Corda:
    case peft::InitMethod::Loftq:
      return true;
    default:
      return false;
  }
}

/// A fixture case the merge tool can reproduce: base file, adapter dirs in merge order, tolerance.
struct MergeCase {
  std::string name;
  fs::path dir;
  std::vector<fs::path> adapters;
  double atol = 1e-5;
  bool converted = false;  ///< uses adapter_converted/ (an init that rewrote the base)
};

/// Every case of the manifest whose active adapters are plain LoRA on the original base (or have
/// PEFT's converted adapter), with the `merged.*` tolerance of its checks.
std::vector<MergeCase> merge_cases(std::vector<std::string>* skipped = nullptr) {
  const fs::path root = peft_test::fixtures_dir();
  std::vector<MergeCase> out;
  const peft::JsonValue manifest = peft_test::read_json(root / "manifest.json");
  for (const auto& c : manifest.find("cases")->as_array()) {
    MergeCase mc;
    mc.name = c.as_string();
    mc.dir = root / mc.name;
    const peft::JsonValue cj = peft_test::read_json(mc.dir / "case.json");
    std::map<std::string, fs::path> dirs;
    for (const auto& a : cj.find("adapters")->as_array())
      dirs[a.find("name")->as_string()] = mc.dir / a.find("dir")->as_string();
    for (const auto& a : cj.find("active_adapters")->as_array()) mc.adapters.push_back(dirs.at(a.as_string()));
    for (const auto& chk : cj.find("checks")->as_array())
      if (chk.find("key")->as_string() == "merged.*") mc.atol = chk.find("atol")->as_double();
    bool rewrite = false;
    for (const auto& a : mc.adapters) rewrite = rewrite || rewrites_base(a);
    if (rewrite) {
      if (mc.adapters.size() == 1 && fs::exists(mc.dir / "adapter_converted" / "adapter_config.json")) {
        mc.adapters = {mc.dir / "adapter_converted"};
        mc.converted = true;
      } else {
        if (skipped) skipped->push_back(mc.name);
        continue;
      }
    }
    out.push_back(mc);
  }
  return out;
}

/// Max |a - b| over the expected `merged.*` keys; also checks the key sets and dtypes agree.
double compare_with_expected(const MergeCase& mc, const TensorList& merged, std::string* problem) {
  const auto expected = peft::load_safetensors(mc.dir / "expected.safetensors");
  std::map<std::string, torch::Tensor> got(merged.begin(), merged.end());
  double worst = 0.0;
  std::set<std::string> seen;
  for (const auto& [key, t] : expected.tensors) {
    if (key.rfind("merged.", 0) != 0) continue;
    const std::string k = key.substr(7);
    seen.insert(k);
    auto it = got.find(k);
    if (it == got.end()) {
      *problem += " missing " + k;
      continue;
    }
    if (it->second.scalar_type() != t.scalar_type()) *problem += " dtype of " + k;
    if (it->second.sizes() != t.sizes()) {
      *problem += " shape of " + k;
      continue;
    }
    worst = std::max(worst, peft_test::max_abs_diff(it->second.to(torch::kFloat32), t.to(torch::kFloat32)));
  }
  for (const auto& [k, t] : got)
    if (!seen.count(k)) *problem += " unexpected " + k;
  return worst;
}

TensorList load_dir(const fs::path& dir) {
  TensorList out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors")
      for (auto& kv : peft::load_safetensors(e.path()).tensors) out.push_back(kv);
  return out;
}

/// Every file under `dir` with its size and content hash, for "nothing changed" checks.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> s;
  if (!fs::exists(dir)) return s;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    s[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? peft::read_text_file(e.path(), 1u << 30) : "<dir>";
  return s;
}

/// Names in `parent` starting with ".<name>.peft-merge" (temporary directories left behind).
std::size_t leftovers(const fs::path& parent) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(parent))
    n += e.path().filename().string().find(".peft-merge-") != std::string::npos;
  return n;
}

/// A small adapter directory: config text + tensors (on-disk keys without the root prefix).
fs::path write_adapter(const fs::path& dir, const std::string& config_json, const TensorList& tensors) {
  fs::create_directories(dir);
  peft::write_file_atomically(dir / "adapter_config.json", config_json);
  TensorList t;
  for (const auto& [k, v] : tensors) t.emplace_back("base_model.model." + k, v);
  peft::save_safetensors(dir / "adapter_model.safetensors", t, {{"format", "pt"}});
  return dir;
}

torch::Tensor T(std::vector<float> v, std::vector<int64_t> shape) {
  return torch::tensor(v, torch::kFloat32).reshape(shape).clone();
}

torch::Tensor get(const TensorList& l, const std::string& k) {
  for (const auto& [key, t] : l)
    if (key == k) return t;
  ADD_FAILURE() << "no " << k;
  return torch::Tensor();
}

}  // namespace

// ---- golden: every fixture case PEFT merged ---------------------------------------------------

TEST(MergeCheckpointGolden, EveryPlainLoraCaseMatchesPeftsMergeAndUnload) {
  std::vector<std::string> skipped;
  const auto cases = merge_cases(&skipped);
  ASSERT_FALSE(cases.empty()) << "no fixture cases in " << peft_test::fixtures_dir();
  const fs::path scratch = peft_test::scratch_dir("merge_golden");
  double worst = 0.0;
  std::size_t converted = 0;
  for (const auto& mc : cases) {
    std::vector<peft::MergeAdapter> adapters;
    for (const auto& a : mc.adapters) adapters.push_back({a, 1.0});
    const fs::path out = scratch / mc.name;
    peft::ScopedWarningCapture quiet;
    ASSERT_NO_THROW(peft::merge_checkpoint(mc.dir / "base_model.safetensors", adapters, out)) << mc.name;
    std::string problem;
    const double err = compare_with_expected(mc, load_dir(out), &problem);
    EXPECT_TRUE(problem.empty()) << mc.name << ":" << problem;
    EXPECT_LE(err, mc.atol) << mc.name;
    worst = std::max(worst, err);
    converted += mc.converted;
  }
  std::cout << "[ merge    ] " << cases.size() << " fixture cases merged (" << converted
            << " through adapter_converted/), max abs error " << worst << "; skipped:";
  for (const auto& s : skipped) std::cout << " " << s;
  std::cout << "\n";
}

TEST(MergeCheckpointGolden, InMemoryMergeMatchesPeftToo) {
  const auto cases = merge_cases();
  ASSERT_FALSE(cases.empty());
  for (const auto& mc : cases) {
    std::vector<peft::MergeAdapter> adapters;
    for (const auto& a : mc.adapters) adapters.push_back({a, 1.0});
    peft::ScopedWarningCapture quiet;
    const auto base = peft::load_safetensors(mc.dir / "base_model.safetensors");
    std::string problem;
    EXPECT_LE(compare_with_expected(mc, peft::merge_state_dict(base.tensors, adapters), &problem), mc.atol) << mc.name;
    EXPECT_TRUE(problem.empty()) << mc.name << ":" << problem;
  }
}

TEST(MergeCheckpointGolden, ShardedBaseGivesTheSameShardsIndexAndSideFiles) {
  const auto cases = merge_cases();
  ASSERT_FALSE(cases.empty());
  // The first case with at least two base tensors, split in two shards.
  const MergeCase* mc = nullptr;
  for (const auto& c : cases)
    if (peft::load_safetensors(c.dir / "base_model.safetensors").tensors.size() >= 2) {
      mc = &c;
      break;
    }
  ASSERT_NE(mc, nullptr);
  const fs::path scratch = peft_test::scratch_dir("merge_sharded");
  const fs::path base = scratch / "base";
  fs::create_directories(base);
  const auto whole = peft::load_safetensors(mc->dir / "base_model.safetensors").tensors;
  const std::size_t half = whole.size() / 2;
  TensorList s1(whole.begin(), whole.begin() + half), s2(whole.begin() + half, whole.end());
  peft::save_safetensors(base / "model-00001-of-00002.safetensors", s1, {{"format", "pt"}});
  peft::save_safetensors(base / "model-00002-of-00002.safetensors", s2, {{"format", "pt"}});
  peft::JsonValue map = peft::JsonValue::object();
  for (std::size_t i = 0; i < whole.size(); ++i)
    map.set(whole[i].first, peft::JsonValue(std::string(i < half ? "model-00001-of-00002.safetensors"
                                                                   : "model-00002-of-00002.safetensors")));
  peft::JsonValue index = peft::JsonValue::object();
  index.set("metadata", peft::JsonValue::object());
  index.set("weight_map", map);
  peft::write_file_atomically(base / "model.safetensors.index.json", index.dump(2));
  peft::write_file_atomically(base / "config.json", "{\"model_type\": \"x\", \"torch_dtype\": \"float32\"}");
  peft::write_file_atomically(base / "tokenizer.json", "{\"tok\": 1}");
  peft::write_file_atomically(base / "notes.txt", "not copied");

  std::vector<peft::MergeAdapter> adapters;
  for (const auto& a : mc->adapters) adapters.push_back({a, 1.0});
  peft::ScopedWarningCapture quiet;
  const fs::path out = scratch / "out";
  peft::merge_checkpoint(base, adapters, out);
  EXPECT_TRUE(fs::exists(out / "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(out / "model-00002-of-00002.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "notes.txt"));
  EXPECT_EQ(peft::read_text_file(out / "tokenizer.json"), "{\"tok\": 1}");
  EXPECT_EQ(peft::read_text_file(out / "config.json"), peft::read_text_file(base / "config.json"));
  const auto out_index = peft_test::read_json(out / "model.safetensors.index.json");
  EXPECT_EQ(*out_index.find("weight_map"), map);
  std::uintmax_t data = 0;
  for (const auto& t : load_dir(out)) data += t.second.numel() * t.second.element_size();
  EXPECT_EQ(out_index.find("metadata")->find("total_size")->as_int(), static_cast<std::int64_t>(data));
  EXPECT_EQ(peft::load_safetensors(out / "model-00001-of-00002.safetensors").tensors.size(), s1.size());
  std::string problem;
  EXPECT_LE(compare_with_expected(*mc, load_dir(out), &problem), mc->atol);
  EXPECT_TRUE(problem.empty()) << problem;

  // bfloat16 output: every floating tensor cast, config.json says so.
  peft::MergeCheckpointOptions bf16;
  bf16.dtype = torch::kBFloat16;
  peft::merge_checkpoint(base, adapters, scratch / "out_bf16", bf16);
  for (const auto& [k, t] : load_dir(scratch / "out_bf16")) {
    if (whole.front().second.is_floating_point()) {
      EXPECT_EQ(t.scalar_type(), torch::kBFloat16) << k;
    }
  }
  EXPECT_EQ(peft_test::read_json(scratch / "out_bf16" / "config.json").find("torch_dtype")->as_string(), "bfloat16");
}

// ---- small hand-checkable merges --------------------------------------------------------------

namespace {
const char* kCfgR1Alpha2 = R"({"peft_type": "LORA", "r": 1, "lora_alpha": 2, "target_modules": ["lin"]})";
}

TEST(MergeStateDict, AddsWeightTimesScalingTimesBA) {
  const fs::path dir = peft_test::scratch_dir("merge_small");
  // s = alpha / r = 2; second adapter weight 0.5 -> W + 2·B1A1 + 0.5·2·B2A2.
  write_adapter(dir / "a1", kCfgR1Alpha2, {{"lin.lora_A.weight", T({1, 2, 3}, {1, 3})},
                                           {"lin.lora_B.weight", T({1, -1}, {2, 1})}});
  write_adapter(dir / "a2", kCfgR1Alpha2, {{"lin.lora_A.weight", T({0, 0, 1}, {1, 3})},
                                           {"lin.lora_B.weight", T({2, 0}, {2, 1})}});
  const TensorList base = {{"lin.weight", torch::zeros({2, 3})}, {"lin.bias", T({5, 6}, {2})}};
  const auto merged = peft::merge_state_dict(base, {{dir / "a1", 1.0}, {dir / "a2", 0.5}});
  EXPECT_TRUE(peft_test::equal(get(merged, "lin.weight"), T({2, 4, 8, -2, -4, -6}, {2, 3})));
  EXPECT_TRUE(peft_test::equal(get(merged, "lin.bias"), T({5, 6}, {2})));
}

TEST(MergeStateDict, RsloraAndRankPatternResolvePerModule) {
  const fs::path dir = peft_test::scratch_dir("merge_patterns");
  // `big` gets r = 4 from rank_pattern and alpha 8 / sqrt(4) = 4; `lin` keeps r = 1, 2 / sqrt(1) = 2.
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 2, "use_rslora": true,
                               "rank_pattern": {"big": 4}, "alpha_pattern": {"big": 8},
                               "target_modules": ["lin", "big"]})",
                {{"lin.lora_A.weight", T({1}, {1, 1})}, {"lin.lora_B.weight", T({1}, {1, 1})},
                 {"big.lora_A.weight", torch::ones({4, 1})}, {"big.lora_B.weight", torch::ones({1, 4})}});
  const auto merged = peft::merge_state_dict({{"lin.weight", torch::zeros({1, 1})}, {"big.weight", torch::zeros({1, 1})}},
                                             {{dir / "a", 1.0}});
  EXPECT_FLOAT_EQ(get(merged, "lin.weight").item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(get(merged, "big.weight").item<float>(), 16.0f);  // B@A = 4, times 4
}

TEST(MergeStateDict, LoraBiasIsScaledAndBiasAllReplacesFirst) {
  const fs::path dir = peft_test::scratch_dir("merge_bias");
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 2, "lora_bias": true, "bias": "all",
                               "target_modules": ["lin"]})",
                {{"lin.lora_A.weight", T({0}, {1, 1})}, {"lin.lora_B.weight", T({0}, {1, 1})},
                 {"lin.lora_B.bias", T({3}, {1})}, {"lin.base_layer.bias", T({10}, {1})}, {"head.bias", T({7}, {1})}});
  const auto merged = peft::merge_state_dict(
      {{"lin.weight", torch::zeros({1, 1})}, {"lin.bias", T({1}, {1})}, {"head.bias", T({0}, {1})}}, {{dir / "a", 1.0}});
  EXPECT_FLOAT_EQ(get(merged, "lin.bias").item<float>(), 16.0f);  // replaced by 10, then + 2·3
  EXPECT_FLOAT_EQ(get(merged, "head.bias").item<float>(), 7.0f);
}

TEST(MergeStateDict, BaseWithoutTheAdaptersFirstComponentIsMatchedWithoutIt) {
  // A PEFT GPT-2 adapter names `transformer.h.0.lin`; the hub's gpt2 checkpoint stores `h.0.lin`.
  const fs::path dir = peft_test::scratch_dir("merge_prefix");
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 2, "lora_bias": true,
                               "bias": "all", "target_modules": ["lin"]})",
                {{"transformer.h.0.lin.lora_A.weight", T({1, 2}, {1, 2})},
                 {"transformer.h.0.lin.lora_B.weight", T({1, -1}, {2, 1})},
                 {"transformer.h.0.lin.lora_B.bias", T({1, 1}, {2})},
                 {"transformer.h.0.ln.bias", T({4, 4}, {2})}});
  const TensorList prefixed = {{"transformer.h.0.lin.weight", torch::zeros({2, 2})},
                               {"transformer.h.0.lin.bias", T({0, 0}, {2})},
                               {"transformer.h.0.ln.bias", T({0, 0}, {2})}};
  TensorList hub;
  for (const auto& [k, v] : prefixed) hub.emplace_back(k.substr(std::string("transformer.").size()), v);
  const auto want = peft::merge_state_dict(prefixed, {{dir / "a", 1.0}});
  const auto got = peft::merge_state_dict(hub, {{dir / "a", 1.0}});
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ("transformer." + got[i].first, want[i].first);
    EXPECT_TRUE(peft_test::equal(got[i].second, want[i].second)) << got[i].first;
  }
  EXPECT_TRUE(peft_test::equal(get(got, "h.0.lin.weight"), T({2, 4, -2, -4}, {2, 2})));
  // A base that has neither spelling is still refused, naming the adapter's key.
  try {
    peft::merge_state_dict({{"h.1.lin.weight", torch::zeros({2, 2})}}, {{dir / "a", 1.0}});
    ADD_FAILURE() << "merged into a base without the module";
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.h.0"), std::string::npos) << e.what();
  }
}

TEST(MergeStateDict, Conv1DLayoutComesFromTheShapeAndSquareWeightsFollowTheirName) {
  const fs::path dir = peft_test::scratch_dir("merge_conv1d");
  // The config says fan_in_fan_out = false (as PEFT saves gpt2 all-linear); h.mlp.c_proj's
  // weight [in=3, out=2] only fits transposed, so the square h.attn.c_proj follows it.
  const auto A = T({1, 0, 0}, {1, 3}), B = T({1, 2}, {2, 1});
  const auto A2 = T({1, 0}, {1, 2}), B2 = T({0, 1}, {2, 1});
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "fan_in_fan_out": false,
                               "target_modules": ["c_proj"]})",
                {{"h.mlp.c_proj.lora_A.weight", A}, {"h.mlp.c_proj.lora_B.weight", B},
                 {"h.attn.c_proj.lora_A.weight", A2}, {"h.attn.c_proj.lora_B.weight", B2}});
  peft::MergeReport report;
  const auto merged = peft::merge_state_dict(
      {{"h.mlp.c_proj.weight", torch::zeros({3, 2})}, {"h.attn.c_proj.weight", torch::zeros({2, 2})}},
      {{dir / "a", 1.0}}, {}, &report);
  EXPECT_TRUE(peft_test::equal(get(merged, "h.mlp.c_proj.weight"), torch::matmul(B, A).t()));
  EXPECT_TRUE(peft_test::equal(get(merged, "h.attn.c_proj.weight"), torch::matmul(B2, A2).t()));
  EXPECT_FALSE(report.notes.empty());
  // Forcing the Linear layout is refused for the weight that cannot be Linear.
  peft::MergeCheckpointOptions linear;
  linear.fan_in_fan_out = false;
  EXPECT_THROW(peft::merge_state_dict({{"h.mlp.c_proj.weight", torch::zeros({3, 2})},
                                       {"h.attn.c_proj.weight", torch::zeros({2, 2})}},
                                      {{dir / "a", 1.0}}, linear),
               peft::SerializationError);
}

TEST(MergeStateDict, SquareWeightWithoutANamesakeFollowsItsBlock) {
  const fs::path dir = peft_test::scratch_dir("merge_square_block");
  // h.0.attn.c_attn [in=2, out=6] is Conv1D by its shape; h.0.mlp.c_fc [2, 2] has no non-square
  // namesake, so the block h.0 decides; k.lin [2, 2] elsewhere keeps the config's Linear layout.
  const auto A = T({1, 0}, {1, 2}), B6 = torch::ones({6, 1}), B2 = T({0, 1}, {2, 1});
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["c_attn", "c_fc", "lin"]})",
                {{"h.0.attn.c_attn.lora_A.weight", A}, {"h.0.attn.c_attn.lora_B.weight", B6},
                 {"h.0.mlp.c_fc.lora_A.weight", A}, {"h.0.mlp.c_fc.lora_B.weight", B2},
                 {"k.lin.lora_A.weight", A}, {"k.lin.lora_B.weight", B2}});
  const auto merged = peft::merge_state_dict({{"h.0.attn.c_attn.weight", torch::zeros({2, 6})},
                                              {"h.0.mlp.c_fc.weight", torch::zeros({2, 2})},
                                              {"k.lin.weight", torch::zeros({2, 2})}},
                                             {{dir / "a", 1.0}});
  EXPECT_TRUE(peft_test::equal(get(merged, "h.0.mlp.c_fc.weight"), torch::matmul(B2, A).t()));
  EXPECT_TRUE(peft_test::equal(get(merged, "k.lin.weight"), torch::matmul(B2, A)));
}

TEST(MergeStateDict, DoraRenormalisesRowsToTheMagnitude) {
  const fs::path dir = peft_test::scratch_dir("merge_dora");
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "use_dora": true,
                               "target_modules": ["lin"]})",
                {{"lin.lora_A.weight", T({0, 1}, {1, 2})}, {"lin.lora_B.weight", T({4, 0}, {2, 1})},
                 {"lin.lora_magnitude_vector", T({10, 2}, {2})}});
  // W + Δ = [[3, 4], [0, 1]]; rows scaled to norms 10 and 2.
  const auto merged = peft::merge_state_dict({{"lin.weight", T({3, 0, 0, 1}, {2, 2})}}, {{dir / "a", 1.0}});
  EXPECT_TRUE(peft_test::close(get(merged, "lin.weight"), T({6, 8, 0, 2}, {2, 2})));
  EXPECT_THROW(peft::merge_state_dict({{"lin.weight", T({3, 0, 0, 1}, {2, 2})}}, {{dir / "a", 0.5}}),
               peft::ConfigError);
}

SEEDED_TEST(MergeLayers, EmbeddingAndConvAdaptersMatchTheInModelMerge) {
  // LoRA and DoRA on a peft::Embedding and a peft::Conv2d (with lora_bias): merging the saved
  // adapter into the saved base weights gives what merge_and_unload gives in memory.
  for (const bool dora : {false, true}) {
    struct Net : torch::nn::Module {
      Net()
          : emb(register_module("emb", peft::Embedding(9, 4))),
            conv(register_module("conv", peft::Conv2d(torch::nn::Conv2dOptions(4, 5, 3).padding(1)))) {}
      peft::Embedding emb;
      peft::Conv2d conv;
    };
    auto net = std::make_shared<Net>();
    TensorList base;
    for (const auto& p : net->named_parameters()) base.emplace_back(p.key(), p.value().clone());
    peft::LoraConfig cfg;
    cfg.r = 2;
    cfg.lora_alpha = 6;
    cfg.use_dora = dora;
    cfg.lora_bias = !dora;  // PEFT: lora_bias on the conv (not on an Embedding, not with DoRA)
    cfg.target_modules = peft::ModuleSpec({"conv"});
    if (dora) cfg.target_modules = peft::ModuleSpec({"emb", "conv"});
    auto pm = peft::get_peft_model(std::static_pointer_cast<torch::nn::Module>(net), cfg);
    if (!dora) pm.add_adapter("emb_only", [] {
      peft::LoraConfig e;
      e.r = 3;
      e.target_modules = peft::ModuleSpec({"emb"});
      return e;
    }());
    {
      torch::NoGradGuard g;
      for (auto& [key, layer] : pm.lora_layers())
        for (const auto& n : layer->adapter_names())
          for (auto& [suffix, t] : layer->adapter_tensors(n))
            if (suffix.find("magnitude") == std::string::npos) t.normal_(0, 0.3);
    }
    const fs::path dir = peft_test::scratch_dir(dora ? "merge_layers_dora" : "merge_layers");
    peft::save_pretrained(pm, dir);
    std::vector<peft::MergeAdapter> adapters{{dir, 1.0}};
    if (!dora) adapters.push_back({dir / "emb_only", 0.5});
    const auto merged = peft::merge_state_dict(base, adapters);
    if (!dora) pm.set_adapter(std::vector<std::string>{"default", "emb_only"});
    torch::NoGradGuard g;
    if (!dora) {  // the weight 0.5 of the second adapter: halve its B before merging in memory
      for (auto& [suffix, t] : net->emb->adapter_tensors("emb_only"))
        if (suffix == "lora_embedding_B") t.mul_(0.5);
    }
    pm.merge_and_unload();
    for (const auto& p : net->named_parameters())
      EXPECT_TRUE(peft_test::close(get(merged, p.key()), p.value(), 1e-5, 1e-5)) << p.key() << (dora ? " (DoRA)" : "");
    EXPECT_GT(peft_test::max_abs_diff(get(merged, "conv.weight"), get(base, "conv.weight")), 1e-3);
    EXPECT_GT(peft_test::max_abs_diff(get(merged, "emb.weight"), get(base, "emb.weight")), 1e-3);
  }
}

TEST(MergeStateDict, TrainableTokensReplaceTheirRows) {
  const fs::path dir = peft_test::scratch_dir("merge_tokens");
  // Rows 2 and 0 of model.emb.weight [4, 2] become the saved rows, in config order.
  write_adapter(dir / "a", R"({"peft_type": "LORA", "r": 1, "target_modules": ["proj"],
                               "trainable_token_indices": {"emb": [2, 0]}})",
                {{"model.emb.token_adapter.trainable_tokens_delta", T({7, 8, 5, 6}, {2, 2})}});
  const TensorList base = {{"model.emb.weight", torch::zeros({4, 2})}};
  const auto merged = peft::merge_state_dict(base, {{dir / "a", 1.0}});
  EXPECT_TRUE(peft_test::equal(get(merged, "model.emb.weight"), T({5, 6, 0, 0, 7, 8, 0, 0}, {4, 2})));
  EXPECT_THROW(peft::merge_state_dict(base, {{dir / "a", 0.5}}), peft::ConfigError);  // rows cannot be scaled
  // The list form names the model's input embedding, which a checkpoint does not tell.
  write_adapter(dir / "list", R"({"peft_type": "LORA", "r": 1, "target_modules": ["proj"],
                                  "trainable_token_indices": [2, 0]})",
                {{"model.emb.token_adapter.trainable_tokens_delta", T({7, 8, 5, 6}, {2, 2})}});
  EXPECT_THROW(peft::merge_state_dict(base, {{dir / "list", 1.0}}), peft::UnsupportedModuleError);
}

TEST(MergeStateDict, RefusesMismatchesWithTheBaseNamingTheKey) {
  const fs::path dir = peft_test::scratch_dir("merge_mismatch");
  write_adapter(dir / "a", kCfgR1Alpha2, {{"lin.lora_A.weight", T({1, 2, 3}, {1, 3})},
                                          {"lin.lora_B.weight", T({1, -1}, {2, 1})}});
  auto msg = [&](const TensorList& base) {
    try {
      peft::merge_state_dict(base, {{dir / "a", 1.0}});
    } catch (const peft::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({{"other.weight", torch::zeros({2, 3})}}).find("`lin.weight`"), std::string::npos);
  EXPECT_NE(msg({{"lin.weight", torch::zeros({2, 4})}}).find("do not fit"), std::string::npos);
  EXPECT_NE(msg({{"lin.weight", torch::zeros({2, 3}, torch::kInt64)}}).find("floating"), std::string::npos);
  // A rank that disagrees with r.
  write_adapter(dir / "r2", kCfgR1Alpha2, {{"lin.lora_A.weight", torch::zeros({2, 3})},
                                           {"lin.lora_B.weight", torch::zeros({2, 2})}});
  EXPECT_THROW(peft::merge_state_dict({{"lin.weight", torch::zeros({2, 3})}}, {{dir / "r2", 1.0}}),
               peft::SerializationError);
  // lora_bias onto a layer without bias (PEFT's error).
  write_adapter(dir / "lb", R"({"peft_type": "LORA", "r": 1, "lora_alpha": 2, "lora_bias": true})",
                {{"lin.lora_A.weight", torch::zeros({1, 3})}, {"lin.lora_B.weight", torch::zeros({2, 1})},
                 {"lin.lora_B.bias", torch::zeros({2})}});
  EXPECT_THROW(peft::merge_state_dict({{"lin.weight", torch::zeros({2, 3})}}, {{dir / "lb", 1.0}}), peft::Error);
}

// ---- files: errors leave OUT as it was ----------------------------------------------------------

TEST(MergeCheckpointFiles, ErrorsLeaveTheOutputDirectoryUntouched) {
  const auto cases = merge_cases();
  ASSERT_FALSE(cases.empty());
  const MergeCase& mc = cases.front();
  const fs::path scratch = peft_test::scratch_dir("merge_errors");
  const fs::path out = scratch / "out";
  fs::create_directories(out / "sub");
  peft::write_file_atomically(out / "old.txt", "previous content");
  const auto before = snapshot(out);
  peft::MergeCheckpointOptions force;
  force.overwrite = true;
  const fs::path base = mc.dir / "base_model.safetensors";

  // 1. An adapter whose init rewrote the base (written here: pissa config, plain tensors).
  const fs::path pissa = scratch / "pissa";
  fs::create_directories(pissa);
  fs::copy_file(mc.adapters[0] / "adapter_model.safetensors", pissa / "adapter_model.safetensors");
  peft::JsonValue cfg = peft_test::read_json(mc.adapters[0] / "adapter_config.json");
  cfg.set("init_lora_weights", peft::JsonValue(std::string("pissa")));
  peft::write_file_atomically(pissa / "adapter_config.json", cfg.dump(2));
  try {
    peft::merge_checkpoint(base, {{pissa, 1.0}}, out, force);
    ADD_FAILURE() << "pissa adapter accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("path_initial_model_for_weight_conversion"), std::string::npos);
  }
  EXPECT_EQ(snapshot(out), before);

  // 2. NaN in an adapter tensor.
  const fs::path nan = scratch / "nan";
  fs::create_directories(nan);
  fs::copy_file(mc.adapters[0] / "adapter_config.json", nan / "adapter_config.json");
  auto tensors = peft::load_safetensors(mc.adapters[0] / "adapter_model.safetensors").tensors;
  tensors.back().second = tensors.back().second.clone();
  tensors.back().second.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
  peft::save_safetensors(nan / "adapter_model.safetensors", tensors);
  EXPECT_THROW(peft::merge_checkpoint(base, {{nan, 1.0}}, out, force), peft::SerializationError);
  EXPECT_EQ(snapshot(out), before);

  // 3. A base without the adapted modules.
  const fs::path other_base = scratch / "other.safetensors";
  peft::save_safetensors(other_base, {{"unrelated.weight", torch::zeros({2, 2})}});
  EXPECT_THROW(peft::merge_checkpoint(other_base, {{mc.adapters[0], 1.0}}, out, force), peft::SerializationError);
  EXPECT_EQ(snapshot(out), before);

  // 4. A merge that overflows float16 is found while writing: still nothing changes.
  const fs::path huge = scratch / "huge";
  fs::create_directories(huge);
  fs::copy_file(mc.adapters[0] / "adapter_config.json", huge / "adapter_config.json");
  for (auto& [k, t] : tensors) t = torch::full_like(t, 1e4);
  peft::save_safetensors(huge / "adapter_model.safetensors", tensors);
  peft::MergeCheckpointOptions fp16 = force;
  fp16.dtype = torch::kHalf;
  EXPECT_THROW(peft::merge_checkpoint(base, {{huge, 1.0}}, out, fp16), peft::Error);
  EXPECT_EQ(snapshot(out), before);

  // 5. Without --force a non-empty OUT is refused.
  EXPECT_THROW(peft::merge_checkpoint(base, {{mc.adapters[0], 1.0}}, out), peft::Error);
  EXPECT_EQ(snapshot(out), before);
  EXPECT_EQ(leftovers(scratch), 0u);

  // With it, OUT is replaced as a whole.
  std::vector<peft::MergeAdapter> adapters;
  for (const auto& a : mc.adapters) adapters.push_back({a, 1.0});
  peft::ScopedWarningCapture quiet;
  peft::merge_checkpoint(base, adapters, out, force);
  EXPECT_FALSE(fs::exists(out / "old.txt"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_EQ(leftovers(scratch), 0u);
  // An empty existing OUT needs no --force; OUT inside an input is refused.
  fs::create_directories(scratch / "empty");
  EXPECT_NO_THROW(peft::merge_checkpoint(base, adapters, scratch / "empty"));
  EXPECT_THROW(peft::merge_checkpoint(base, adapters, mc.adapters[0] / "merged", force), peft::Error);
  EXPECT_FALSE(fs::exists(mc.adapters[0] / "merged"));
}

// ---- end to end with the reference models: merged checkpoint == base + adapter -----------------

SEEDED_TEST(MergeCheckpointModels, MergedBuiltinCheckpointGivesTheAdaptedLogits) {
  // GPT-2 (Conv1D, square attn.c_proj, config fan_in_fan_out as PEFT leaves it) and Llama (Linear).
  for (const std::string name : {"tiny-gpt2", "tiny-llama"}) {
    const fs::path dir = peft_test::scratch_dir("merge_models_" + name);
    auto model = peft::models::make_builtin(name, 3);
    peft::models::save_causal_lm(*model, dir / "base");
    peft::LoraConfig cfg;
    cfg.r = 4;
    cfg.lora_alpha = 8;
    cfg.target_modules = name == "tiny-gpt2" ? peft::ModuleSpec({"c_attn", "c_proj", "c_fc"})
                                             : peft::ModuleSpec({"q_proj", "k_proj", "o_proj", "down_proj"});
    peft::ScopedWarningCapture quiet;  // PEFT's Conv1D fan_in_fan_out warning
    auto pm = peft::get_peft_model(model, cfg);
    {
      torch::NoGradGuard g;
      for (auto& [key, layer] : pm.lora_layers()) layer->lora_B("default")->weight.normal_(0, 0.05);
    }
    peft::save_pretrained(pm, dir / "adapter");
    model->eval();
    const auto ids = torch::randint(0, model->vocab_size(), {2, 12}, torch::kInt64);
    torch::NoGradGuard g;
    const auto adapted = model->forward(ids);
    torch::Tensor base_logits;
    {
      auto off = pm.disable_adapter();
      base_logits = model->forward(ids);
    }

    peft::merge_checkpoint(dir / "base", {{dir / "adapter", 1.0}}, dir / "merged");
    EXPECT_TRUE(fs::exists(dir / "merged" / "config.json"));
    auto merged = peft::models::load_causal_lm((dir / "merged").string());
    merged->eval();
    const auto got = merged->forward(ids);
    EXPECT_TRUE(peft_test::close(got, adapted, 0, 1e-4)) << name;
    EXPECT_GT(peft_test::max_abs_diff(adapted, base_logits), 1e-3) << name << ": the adapter changes nothing";
  }
}
