// The corpus of bad inputs in tests/data/bad/ (written by scripts/make_bad_corpus.py): every
// adapter directory and YAML file must give a typed peft::Error whose message names the file and
// the key/field, and leave the model and the files exactly as they were.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "peft/error.hpp"
#include "peft/io/adapters.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/config/config_json.hpp"
#include "peft/train/lora_yaml.hpp"
#include "peft/warnings.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"

namespace fs = std::filesystem;

namespace {

fs::path data_dir() {
  if (const char* d = std::getenv("PEFT_TEST_DATA")) return d;
  return PEFT_TEST_DATA_DIR;
}

/// The corpus model: lin0 = Linear(4 -> 6), lin1 = Linear(6 -> 3), weights from the corpus.
struct TinyMlp : peft_test::Mlp {
  TinyMlp() : Mlp(peft_test::MlpOptions({4, 6, 3})) {}
};

TinyMlp tiny_mlp() {
  TinyMlp m;
  peft::load_checkpoint(*m, data_dir() / "tiny_mlp" / "base_model.safetensors");
  return m;
}

using Snapshot = std::map<std::string, torch::Tensor>;
Snapshot snapshot(torch::nn::Module& m) {
  Snapshot s;
  for (const auto& p : m.named_parameters()) s[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) s["buffer:" + b.key()] = b.value().detach().clone();
  return s;
}
/// Same names, shapes and values (NaN equal to NaN).
::testing::AssertionResult same(const Snapshot& a, const Snapshot& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end()) return ::testing::AssertionFailure() << k << " disappeared";
    if (auto c = peft_test::close(t, it->second, 0, 0, /*equal_nan=*/true); !c)
      return ::testing::AssertionFailure() << k << " changed: " << c.message();
  }
  return ::testing::AssertionSuccess();
}

std::map<std::string, std::string> file_bytes(const fs::path& root) {
  std::map<std::string, std::string> out;
  if (fs::is_regular_file(root)) {
    out[root.string()] = peft::read_text_file(root, 1u << 30);
    return out;
  }
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[e.path().string()] = peft::read_text_file(e.path(), 1u << 30);
  return out;
}

enum class Want { Serialization, Config };

/// The message of the typed error `load` must throw: a ConfigError whose field() is `field`
/// (Want::Config) or a SerializationError. Anything else fails the test (`what` names the input).
std::string expect_typed_error(Want want, const std::string& field, const std::string& what,
                               const std::function<void()>& load) {
  try {
    load();
    ADD_FAILURE() << what << ": accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(want, Want::Config) << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    return e.what();
  } catch (const peft::SerializationError& e) {
    EXPECT_EQ(want, Want::Serialization) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "untyped error: " << e.what();
  }
  return "";
}

struct BadAdapter {
  const char* dir;
  Want type;
  const char* file;                  // the file the message must name
  std::vector<const char*> needles;  // further substrings of the message
  const char* field = "";            // ConfigError::field() for Want::Config
};

std::ostream& operator<<(std::ostream& o, const BadAdapter& c) { return o << c.dir; }

const std::vector<BadAdapter>& bad_adapters() {
  static const std::vector<BadAdapter> cases = {
      {"st_truncated_file", Want::Serialization, "adapter_model.safetensors", {"shorter than the 8-byte header length"}},
      {"st_truncated_header", Want::Serialization, "adapter_model.safetensors", {"header length", "bytes that follow it"}},
      {"st_oversized_header", Want::Serialization, "adapter_model.safetensors", {"exceeds the limit"}},
      {"st_truncated_data", Want::Serialization, "adapter_model.safetensors",
       {"lin1.lora_B.weight", "reach beyond the data buffer"}},
      {"st_offsets_out_of_range", Want::Serialization, "adapter_model.safetensors",
       {"lin1.lora_B.weight", "[168,4096]", "beyond the data buffer"}},
      {"st_offsets_overlap", Want::Serialization, "adapter_model.safetensors", {"lin0.lora_B.weight", "overlap"}},
      {"st_dtype_shape_mismatch", Want::Serialization, "adapter_model.safetensors",
       {"lin0.lora_A.weight", "span 32 bytes", "needs 24"}},
      {"st_header_not_utf8", Want::Serialization, "adapter_model.safetensors", {"not valid JSON"}},
      {"st_header_deep_nesting", Want::Serialization, "adapter_model.safetensors", {"nests"}},
      {"cfg_not_utf8", Want::Serialization, "adapter_config.json", {"invalid JSON"}},
      {"cfg_deep_nesting", Want::Serialization, "adapter_config.json", {"nesting deeper than"}},
      {"cfg_truncated", Want::Serialization, "adapter_config.json", {"invalid JSON"}},
      {"cfg_not_an_object", Want::Config, "adapter_config.json", {"must be a JSON object"}, "<root>"},
      {"cfg_wrong_type_r", Want::Config, "adapter_config.json", {"LoraConfig.r", "expected an integer"}, "r"},
      {"cfg_wrong_type_target_modules", Want::Config, "adapter_config.json", {"LoraConfig.target_modules"},
       "target_modules"},
      {"cfg_wrong_type_lora_alpha", Want::Config, "adapter_config.json", {"LoraConfig.lora_alpha"}, "lora_alpha"},
      {"cfg_wrong_type_use_dora", Want::Config, "adapter_config.json", {"LoraConfig.use_dora"}, "use_dora"},
      {"cfg_missing", Want::Serialization, "adapter_config.json", {"no such file"}},
      {"weights_missing", Want::Serialization, "adapter_model.safetensors", {"no such file"}},
      {"missing_lora_b", Want::Serialization, "adapter_model.safetensors",
       {"Missing keys: base_model.model.lin0.lora_B.weight"}},
      {"wrong_base_model", Want::Serialization, "adapter_model.safetensors",
       {"base_model.model.lin0.lora_A.weight", "[2, 5]", "[2, 4]", "another base model"}},
      {"rank_mismatch", Want::Serialization, "adapter_model.safetensors",
       {"base_model.model.lin0.lora_A.weight", "[3, 4]", "[2, 4]"}},
      {"int_dtype", Want::Serialization, "adapter_model.safetensors", {"lin0.lora_A.weight", "non-floating dtype"}},
  };
  return cases;
}

class BadAdapterDir : public peft_test::SeededTestWithParam<BadAdapter> {};

}  // namespace

SEEDED_TEST(BadInputsCorpus, EveryAdapterDirectoryOfTheCorpusHasATest) {
  std::vector<std::string> listed;
  for (const auto& c : bad_adapters()) listed.push_back(c.dir);
  listed.push_back("nan_weights");  // its own test below
  listed.push_back("yaml");
  std::sort(listed.begin(), listed.end());
  std::vector<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(data_dir() / "bad")) on_disk.push_back(e.path().filename().string());
  std::sort(on_disk.begin(), on_disk.end());
  EXPECT_EQ(on_disk, listed);
}

SEEDED_TEST(BadInputsCorpus, TheGoodAdaptersOfTheCorpusLoad) {
  for (const char* name : {"adapter", "dora_adapter"}) {
    auto m = tiny_mlp();
    const auto x = torch::linspace(-1, 1, 8).reshape({2, 4});
    const auto base = m->forward(x);
    auto pm = peft::from_pretrained(m.ptr(), data_dir() / "tiny_mlp" / name);
    EXPECT_TRUE(peft_test::not_close(m->forward(x), base)) << name << ": the adapter changes nothing";
  }
}

TEST_P(BadAdapterDir, LoadAdapterThrowsATypedErrorNamingTheFileAndChangesNothing) {
  const BadAdapter& c = GetParam();
  const fs::path dir = data_dir() / "bad" / c.dir;
  const auto files_before = file_bytes(dir);
  auto m = tiny_mlp();
  peft::LoraModel pm(m.ptr(), peft::LoraModelOptions{});
  const auto before = snapshot(*m);
  const auto x = torch::linspace(-1, 1, 8).reshape({2, 4});
  const auto y = m->forward(x);
  const std::string msg = expect_typed_error(c.type, c.field, c.dir, [&] {
    peft::ScopedWarningCapture quiet;
    peft::load_adapter(pm, dir, "default");
  });
  EXPECT_NE(msg.find((dir / c.file).string()), std::string::npos) << "does not name the file: " << msg;
  for (const char* n : c.needles) EXPECT_NE(msg.find(n), std::string::npos) << "no `" << n << "` in: " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
  EXPECT_TRUE(same(before, snapshot(*m)));
  EXPECT_TRUE(pm.adapter_names().empty());
  EXPECT_TRUE(peft_test::equal(m->forward(x), y));
  EXPECT_EQ(file_bytes(dir), files_before);
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadAdapterDir, ::testing::ValuesIn(bad_adapters()),
                         [](const auto& param_info) { return std::string(param_info.param.dir); });

SEEDED_TEST(BadInputsCorpus, NanWeightsAreRefusedOnLoadAndSafeMergeRefusesThemWhenLoadedOnRequest) {
  const fs::path dir = data_dir() / "bad" / "nan_weights";
  const auto files_before = file_bytes(dir);
  auto m = tiny_mlp();
  {
    peft::LoraModel refused(m.ptr(), peft::LoraModelOptions{});
    EXPECT_THROW(peft::load_adapter(refused, dir, "default"), peft::SerializationError);
  }
  peft::LoadOptions allow;
  allow.allow_non_finite = true;  // PEFT's behaviour: loads; merging is what breaks
  auto pm = peft::from_pretrained(m.ptr(), dir, "default", allow);
  const auto before = snapshot(*m);
  try {
    pm.merge_adapter({}, /*safe_merge=*/true);
    FAIL() << "merged NaN weights";
  } catch (const peft::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lin1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("default"), std::string::npos) << msg;
  }
  EXPECT_TRUE(same(before, snapshot(*m)));
  for (const auto& [key, layer] : pm.lora_layers()) EXPECT_FALSE(layer->merged()) << key;
  EXPECT_EQ(file_bytes(dir), files_before);
}

SEEDED_TEST(BadInputsCorpus, EveryConfigFieldWithAWrongJsonTypeIsRejectedNamingFieldAndFile) {
  peft::LoraConfig good;
  good.r = 2;
  good.lora_alpha = 4;
  good.target_modules = {"lin0", "lin1"};
  const peft::JsonValue j = peft::to_json_value(good);
  const std::string weights = peft::read_text_file(data_dir() / "tiny_mlp" / "adapter" / "adapter_model.safetensors");
  auto wrong_for = [](const peft::JsonValue& v) -> peft::JsonValue {
    switch (v.type()) {
      case peft::JsonValue::Type::Bool: return peft::JsonValue(2.5);
      case peft::JsonValue::Type::Int:
      case peft::JsonValue::Type::Float: return peft::JsonValue("2");
      case peft::JsonValue::Type::Array: return peft::JsonValue(peft::JsonValue::Object{{"a", 1.5}});
      default: return peft::JsonValue(peft::JsonValue::Array{peft::JsonValue(1.5)});  // null, string, object
    }
  };
  const fs::path dir = peft_test::scratch_dir("bad_types");
  std::ofstream(dir / "adapter_model.safetensors", std::ios::binary) << weights;
  std::size_t checked = 0;
  for (const auto& [key, value] : j.as_object()) {
    if (key == "auto_mapping" || key == "megatron_config") continue;  // free-form dicts (or null) in PEFT
    peft::JsonValue bad = j;
    bad.set(key, wrong_for(value));
    const std::string text = bad.dump(2, true);
    std::ofstream(dir / "adapter_config.json", std::ios::binary) << text;
    auto m = tiny_mlp();
    peft::LoraModel pm(m.ptr(), peft::LoraModelOptions{});
    const auto before = snapshot(*m);
    try {
      peft::ScopedWarningCapture quiet;
      peft::load_adapter(pm, dir, "default");
      ADD_FAILURE() << key << " = " << wrong_for(value).dump() << " accepted";
    } catch (const peft::ConfigError& e) {
      EXPECT_EQ(e.field().substr(0, key.size()), key) << e.what();
      EXPECT_NE(std::string(e.what()).find((dir / "adapter_config.json").string()), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << key << ": not a ConfigError: " << e.what();
    }
    EXPECT_TRUE(same(before, snapshot(*m))) << key;
    EXPECT_TRUE(pm.adapter_names().empty()) << key;
    EXPECT_EQ(peft::read_text_file(dir / "adapter_config.json"), text) << key;
    ++checked;
  }
  EXPECT_GE(checked, 30u);
}

namespace {

struct BadYaml {
  const char* file;
  Want type;
  std::vector<const char*> needles;
  const char* field = "";
};
std::ostream& operator<<(std::ostream& o, const BadYaml& c) { return o << c.file; }

class BadYamlFile : public ::testing::TestWithParam<BadYaml> {};

}  // namespace

SEEDED_TEST(BadInputsCorpus, EveryYamlFileOfTheCorpusHasATest) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(data_dir() / "bad" / "yaml")) n += e.path().extension() == ".yaml";
  EXPECT_EQ(n, 6u);
}

TEST_P(BadYamlFile, LoadLoraYamlThrowsATypedErrorWithFileAndLine) {
  const BadYaml& c = GetParam();
  const fs::path path = data_dir() / "bad" / "yaml" / c.file;
  const auto before = file_bytes(path);
  const std::string msg = expect_typed_error(c.type, c.field, c.file, [&] { peft::load_lora_yaml(path); });
  EXPECT_EQ(msg.rfind(path.string() + ":", 0), 0u) << "does not start with the path: " << msg;
  for (const char* n : c.needles) EXPECT_NE(msg.find(n), std::string::npos) << "no `" << n << "` in: " << msg;
  EXPECT_EQ(file_bytes(path), before);
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, BadYamlFile,
    ::testing::Values(BadYaml{"tabs.yaml", Want::Serialization, {":2:", "invalid YAML"}},
                      BadYaml{"duplicate_key.yaml", Want::Serialization, {":4:3:", "duplicate key `r`"}},
                      BadYaml{"wrong_type.yaml", Want::Config, {":3:", "target_modules"}, "target_modules"},
                      BadYaml{"not_utf8.yaml", Want::Serialization, {":3:", "UTF-8"}},
                      BadYaml{"deep_nesting.yaml", Want::Config, {":2:", "YAML.nesting", "deeper than 64 levels"}, "nesting"},
                      BadYaml{"not_a_mapping.yaml", Want::Serialization, {"must be a mapping"}}),
    [](const auto& param_info) {
      std::string n = param_info.param.file;
      return n.substr(0, n.find('.'));
    });

SEEDED_TEST(BadInputsCorpus, AConfigWithManyKeysAndPatternsIsReadAndWrittenInLinearTime) {
  // Quadratic key handling (ordered maps, linear set(), PatternMap::set) took minutes here.
  std::string text = "{\"peft_type\": \"LORA\", \"target_modules\": [\"lin0\"]";
  for (int i = 0; i < 200000; ++i) text += ", \"k" + std::to_string(i) + "\": " + std::to_string(i);
  text += ", \"rank_pattern\": {\"p0\": 4";
  for (int i = 1; i < 100000; ++i) text += ", \"p" + std::to_string(i) + "\": 2";
  text += "}, \"k7\": -1}";  // a duplicate: first position, last value (Python's dict)
  const auto start = std::chrono::steady_clock::now();
  peft::ScopedWarningCapture quiet;
  const peft::LoraConfig c = peft::lora_config_from_json(text);
  const std::string back = peft::to_json(c);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 5.0);
  ASSERT_EQ(c.extra_fields.size(), 200000u);
  EXPECT_EQ(c.extra_fields[7].first, "k7");
  EXPECT_EQ(c.extra_fields[7].second.as_int(), -1);
  ASSERT_EQ(c.rank_pattern.size(), 100000u);
  EXPECT_EQ(*c.rank_pattern.find("p0"), 4);
  EXPECT_EQ(c.rank_pattern.entries()[99999].first, "p99999");
  EXPECT_FALSE(quiet.messages().empty());  // the unknown keys are reported
}
