// The shared pieces of the I/O code: the safetensors dtype table and its LibTorch mapping, the
// streaming safetensors writer and atomic file writer, PEFT's adapter key rules
// (format/adapter_keys.hpp) and the one Hugging Face checkpoint resolver (io/hf_checkpoint.hpp).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/safetensors_dtype.hpp"
#include "peft/format/safetensors_header.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/io/safetensors_dtype.hpp"
#include "peft/io/safetensors_writer.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
namespace keys = peft::adapter_keys;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// ---- dtypes --------------------------------------------------------------------------------

TEST(SafetensorsDtypes, EveryNameMapsToALibTorchTypeOfTheSameSizeAndBack) {
  ASSERT_EQ(std::size(peft::kSafetensorsDtypes), 10u);
  for (const auto& d : peft::kSafetensorsDtypes) {
    const auto t = peft::torch_dtype_of(d.name);
    ASSERT_TRUE(t.has_value()) << d.name;
    EXPECT_EQ(c10::elementSize(*t), d.size) << d.name;
    EXPECT_EQ(c10::isFloatingType(*t), d.floating) << d.name;
    EXPECT_EQ(peft::safetensors_dtype_of(*t), &d) << d.name;
    EXPECT_EQ(peft::find_safetensors_dtype(d.name), &d);
    EXPECT_EQ(peft::safetensors_dtype_size(d.name), d.size);
  }
  EXPECT_EQ(peft::torch_dtype_of("F32"), torch::kFloat32);
  EXPECT_EQ(peft::torch_dtype_of("BOOL"), torch::kBool);
  EXPECT_FALSE(peft::torch_dtype_of("U16").has_value());  // valid safetensors, no LibTorch 1.13 type
  EXPECT_EQ(peft::find_safetensors_dtype("f32"), nullptr);
  EXPECT_EQ(peft::safetensors_dtype_of(torch::kComplexFloat), nullptr);
  EXPECT_EQ(peft::safetensors_dtype_size("C64"), 0u);
}

// ---- the writer ----------------------------------------------------------------------------

TEST(SafetensorsWriterStream, WritesTheBytesOfSerializeAndAppearsOnlyOnCommit) {
  const fs::path dir = peft_test::scratch_dir("io_writer_stream");
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"w", torch::arange(6, torch::kFloat32).reshape({2, 3})},
      {"ids", torch::tensor({1, 2, 3}, torch::kInt64)},
      {"half", torch::ones({2}, torch::kBFloat16)},
      {"view", torch::arange(8, torch::kFloat32).reshape({2, 4}).t()}};  // non-contiguous
  const std::string want = peft::serialize_safetensors(tensors, {{"format", "pt"}});
  std::vector<peft::SafetensorsTensorSpec> specs;
  for (const auto& [n, t] : tensors) specs.push_back(peft::SafetensorsWriter::spec_of(n, t));
  {
    peft::SafetensorsWriter w(dir / "m.safetensors", specs, {{"format", "pt"}});
    EXPECT_EQ(w.bytes(), want.size());
    for (const auto& kv : tensors) w.write(kv.second);
    EXPECT_FALSE(fs::exists(dir / "m.safetensors"));  // only the temporary file so far
    w.commit();
  }
  EXPECT_EQ(read_file(dir / "m.safetensors"), want);
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"m.safetensors"});
  // save_safetensors streams through the same writer.
  peft::save_safetensors(dir / "s.safetensors", tensors, {{"format", "pt"}});
  EXPECT_EQ(read_file(dir / "s.safetensors"), want);
}

TEST(SafetensorsWriterStream, AnAbandonedWriteLeavesTheOldFileAndNoTemporary) {
  const fs::path dir = peft_test::scratch_dir("io_writer_abandon");
  peft::save_safetensors(dir / "m.safetensors", {{"a", torch::ones({1})}});
  const std::string before = read_file(dir / "m.safetensors");
  try {
    peft::SafetensorsWriter w(dir / "m.safetensors", {{"a", torch::kFloat32, {2}}, {"b", torch::kFloat32, {1}}});
    w.write(torch::zeros({2}));
    w.write(torch::zeros({3}));  // not what the header announced
    FAIL() << "wrote a tensor that does not match its entry";
  } catch (const peft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("`b`"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(dir / "m.safetensors"), before);
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"m.safetensors"});
}

TEST(SafetensorsWriterStream, RejectsBadHeadersBeforeCreatingAFile) {
  const fs::path dir = peft_test::scratch_dir("io_writer_reject");
  const fs::path p = dir / "m.safetensors";
  auto message = [&](std::vector<peft::SafetensorsTensorSpec> specs, peft::SafetensorsWriter::Metadata md = {}) {
    try {
      peft::SafetensorsWriter w(p, std::move(specs), md);
    } catch (const peft::SerializationError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"a", torch::kFloat32, {1}}, {"a", torch::kFloat32, {1}}}).find("duplicate tensor name \"a\""),
            std::string::npos);
  EXPECT_NE(message({{"c", torch::kComplexFloat, {1}}}).find("cannot hold"), std::string::npos);
  EXPECT_NE(message({peft::SafetensorsWriter::spec_of("u", torch::Tensor())}).find("tensor \"u\" is undefined"),
            std::string::npos);
  EXPECT_NE(message({}, {{"k", "1"}, {"k", "2"}}).find("duplicate metadata key"), std::string::npos);
  EXPECT_EQ(message({{"__metadata__", torch::kFloat32, {1}}}).rfind(p.string() + ": ", 0), 0u);
  EXPECT_TRUE(entries_of(dir).empty());
}

TEST(AtomicFileWriter, WritesInPiecesAndReplacesOnCommitOnly) {
  const fs::path dir = peft_test::scratch_dir("io_atomic_writer");
  peft::write_file_atomically(dir / "f.txt", "old");
  {
    peft::AtomicFileWriter w(dir / "f.txt");
    w.write("ne", 2);
    w.write("w", 1);
    EXPECT_EQ(read_file(dir / "f.txt"), "old");
  }  // no commit: abandoned
  EXPECT_EQ(read_file(dir / "f.txt"), "old");
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"f.txt"});
  peft::AtomicFileWriter w(dir / "sub" / "f.txt");  // creates the directory
  w.write("new", 3);
  w.commit();
  EXPECT_EQ(read_file(dir / "sub" / "f.txt"), "new");
}

// ---- adapter keys --------------------------------------------------------------------------

TEST(AdapterKeys, EveryLoraKeyParsesBackToItsModuleAndTensor) {
  using keys::LoraTensor;
  for (const std::string m : {"lin0", "model.layers.0.self_attn.q_proj", "transformer.h.1.attn.c_attn"})
    for (auto t : {LoraTensor::A, LoraTensor::B, LoraTensor::B_bias, LoraTensor::magnitude}) {
      const std::string key = keys::lora_key(m, t);
      EXPECT_EQ(key.rfind("base_model.model." + m + ".lora_", 0), 0u) << key;
      const auto parsed = keys::parse_lora_key(key);
      ASSERT_TRUE(parsed.has_value()) << key;
      EXPECT_EQ(parsed->module, m);
      EXPECT_EQ(parsed->tensor, t);
    }
  EXPECT_EQ(keys::lora_key("a.b", LoraTensor::magnitude), "base_model.model.a.b.lora_magnitude_vector");
  EXPECT_EQ(keys::lora_key("a", LoraTensor::B_bias), "base_model.model.a.lora_B.bias");
  // The in-memory DoRA spelling only where asked for (peft-merge reads it, peft-inspect does not).
  const std::string with_weight = "base_model.model.a.lora_magnitude_vector.weight";
  EXPECT_FALSE(keys::parse_lora_key(with_weight).has_value());
  const auto m = keys::parse_lora_key(with_weight, keys::MagnitudeSpelling::AlsoWithWeight);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->module, "a");
  EXPECT_EQ(m->tensor, LoraTensor::magnitude);
}

TEST(AdapterKeys, OtherKeysAreNotLoraAndNameTheirBaseTensor) {
  for (const std::string key : {"base_model.model.lin1.weight", "base_model.model.lin0.base_layer.bias",
                                "lin0.lora_A.weight", "base_model.model.lora_A.weight", "base_model.model..lora_A.weight"})
    EXPECT_FALSE(keys::parse_lora_key(key).has_value()) << key;  // no root, no LoRA suffix, or no module
  EXPECT_EQ(keys::base_layer_bias_key("lin0"), "base_model.model.lin0.base_layer.bias");
  EXPECT_EQ(keys::module_key("lin1", "weight"), "base_model.model.lin1.weight");
  EXPECT_EQ(keys::module_key("", "bias"), "base_model.model.bias");
  EXPECT_EQ(keys::base_model_key(keys::base_layer_bias_key("h.0.attn")), "h.0.attn.bias");
  EXPECT_EQ(keys::base_model_key(keys::module_key("lm_head", "weight")), "lm_head.weight");
  EXPECT_TRUE(keys::has_root("base_model.model.x"));
  EXPECT_FALSE(keys::has_root("base_model.x"));
}

// ---- Hugging Face checkpoints ----------------------------------------------------------------

namespace {

/// A sharded checkpoint: two shards and an index whose weight_map is `map`.
fs::path sharded(const std::string& name, const std::string& map) {
  const fs::path dir = peft_test::scratch_dir(name);
  peft::save_safetensors(dir / "a.safetensors", {{"x", torch::ones({1})}});
  peft::save_safetensors(dir / "b.safetensors", {{"y", torch::ones({2})}});
  peft::write_file_atomically(dir / "model.safetensors.index.json", "{\"weight_map\": " + map + "}");
  return dir;
}

std::string resolve_error(const fs::path& dir) {
  try {
    peft::open_hf_checkpoint(dir);
  } catch (const peft::SerializationError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(HfCheckpoint, ResolvesAFileADirectoryAndAShardedIndexInOrder) {
  const fs::path dir = sharded("io_hf_ok", R"({"y": "b.safetensors", "x": "a.safetensors"})");
  const auto files = peft::resolve_hf_checkpoint(dir);
  EXPECT_EQ(files.dir, dir);
  EXPECT_EQ(files.shard_names, (std::vector<std::string>{"b.safetensors", "a.safetensors"}));  // weight_map order
  EXPECT_EQ(files.shards, (std::vector<fs::path>{dir / "b.safetensors", dir / "a.safetensors"}));
  ASSERT_NE(files.weight_map(), nullptr);
  EXPECT_EQ(files.index_path, dir / "model.safetensors.index.json");
  const auto cp = peft::open_hf_checkpoint(dir);
  ASSERT_EQ(cp.shards.size(), 2u);
  EXPECT_NE(cp.shards[0].find("y"), nullptr);

  peft::save_safetensors(dir / "model.safetensors", {{"z", torch::ones({1})}});  // wins over the index
  const auto single = peft::resolve_hf_checkpoint(dir);
  EXPECT_EQ(single.shard_names, std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(single.index.has_value());
  EXPECT_EQ(single.weight_map(), nullptr);
  const auto file = peft::resolve_hf_checkpoint(dir / "a.safetensors");
  EXPECT_TRUE(file.dir.empty());
  EXPECT_EQ(file.shards, std::vector<fs::path>{dir / "a.safetensors"});
}

TEST(HfCheckpoint, ShardNamesMustBePlainFileNames) {
  for (const std::string bad : {R"("sub/a.safetensors")", R"("../a.safetensors")", R"("..")", R"("/tmp/a.safetensors")",
                                R"("")", R"(".")", "3"}) {
    const fs::path dir = sharded("io_hf_bad_name", R"({"x": )" + bad + R"(, "y": "b.safetensors"})");
    const std::string e = resolve_error(dir);
    EXPECT_NE(e.find("model.safetensors.index.json: bad shard name for `x`"), std::string::npos) << bad << ": " << e;
  }
  // load_checkpoint uses the same resolver: a '/' in a shard name is refused there too.
  const fs::path dir = sharded("io_hf_bad_slash", R"({"x": "./a.safetensors", "y": "b.safetensors"})");
  torch::nn::Module m;
  EXPECT_THROW(peft::load_checkpoint(m, dir, /*strict=*/false), peft::SerializationError);
}

TEST(HfCheckpoint, TheIndexAndTheShardsMustAgree) {
  EXPECT_NE(resolve_error(sharded("io_hf_moved", R"({"x": "b.safetensors", "y": "a.safetensors"})"))
                .find("`y` is in b.safetensors but the weight_map says otherwise"),
            std::string::npos);
  EXPECT_NE(resolve_error(sharded("io_hf_unlisted", R"({"x": "a.safetensors", "y": "a.safetensors"})"))
                .find("`y` is listed but not in a.safetensors"),
            std::string::npos);
  const fs::path extra = sharded("io_hf_listed", R"({"x": "a.safetensors", "y": "b.safetensors", "z": "a.safetensors"})");
  EXPECT_NE(resolve_error(extra).find("`z` is listed but not in a.safetensors"), std::string::npos);
  const fs::path none = peft_test::scratch_dir("io_hf_empty");
  EXPECT_NE(resolve_error(none).find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
  std::ofstream(none / "pytorch_model.bin") << "pickle";
  EXPECT_NE(resolve_error(none).find("only pytorch_model.bin (pickle)"), std::string::npos);
  peft::write_file_atomically(none / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_NE(resolve_error(none).find("no `weight_map` object"), std::string::npos);
}
