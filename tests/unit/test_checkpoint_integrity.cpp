// Training checkpoints are read as untrusted input (docs/checkpoints.md): a changed, truncated or
// foreign file is a clean error naming it, and nothing in the model or optimizer changes; the
// optimizer state is checked tensor by tensor against its parameters; a checkpoint of another
// run is refused on resume and never pruned.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "peft/format/atomic_file.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/train/checkpoint_manifest.hpp"
#include "peft/train/optimizer_state.hpp"
#include "peft/train/training_checkpoint.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/train_rig.hpp"

namespace fs = std::filesystem;
using namespace peft::train;
using peft_test::TrainRig;

namespace {

void flip_byte(const fs::path& file, std::uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const peft::SerializationError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A SerializationError: ") + e.what();
  }
  return "no error";
}

/// A rig whose adapter and optimizer a load must leave exactly as they were.
struct Victim {
  TrainRig rig{99};
  torch::optim::AdamW opt{rig.pm->trainable_parameters(), torch::optim::AdamWOptions(0.123)};
  std::vector<torch::Tensor> before = rig.adapter();
  bool unchanged() const {
    return peft_test::bit_equal(rig.adapter(), before) && opt.state().empty() &&
           static_cast<const torch::optim::AdamWOptions&>(opt.param_groups()[0].options()).lr() == 0.123;
  }
};

/// A checkpoint at step 2 of a TrainRig run, copied to `name` for a test to damage.
fs::path fresh_checkpoint(const std::string& name) {
  const fs::path dir = peft_test::scratch_dir(name);
  TrainRig rig(1);
  rig.run(dir / "run", 2);
  fs::copy(dir / "run" / "checkpoints" / "step-2", dir / "step-2", fs::copy_options::recursive);
  return dir / "step-2";
}

RunFingerprint fingerprint(const std::string& lr) { return RunFingerprint{{{"data.file", "9 bytes"}, {"training.lr", lr}}}; }

}  // namespace

SEEDED_TEST(CheckpointIntegrity, AnIntactCheckpointLoadsAndRestoresTheOptimizer) {
  const fs::path cp = fresh_checkpoint("ckpt_intact");
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors",
                        "trainer_state.json", "checksums.json"})
    EXPECT_TRUE(fs::is_regular_file(cp / f)) << f;
  Victim v;
  const TrainerState s = load_training_checkpoint(cp, *v.rig.pm, v.opt);
  EXPECT_EQ(s.step, 2);
  EXPECT_EQ(v.opt.state().size(), v.rig.pm->trainable_parameters().size());
  ASSERT_FALSE(s.metrics.empty());
  EXPECT_EQ(static_cast<const torch::optim::AdamWOptions&>(v.opt.param_groups()[0].options()).lr(),
            s.metrics.back().lr);  // the group options are the file's: the last step's lr
}

SEEDED_TEST(CheckpointIntegrity, AFlippedByteInAnyFileIsAnErrorNamingItAndChangesNothing) {
  const fs::path cp = fresh_checkpoint("ckpt_flip");
  for (const char* name : {"adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json",
                           "adapter_config.json"}) {
    const auto size = fs::file_size(cp / name);
    for (const std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{9}, size / 2, size - 2}) {
      const fs::path copy = cp.parent_path() / "damaged";
      fs::remove_all(copy);
      fs::copy(cp, copy, fs::copy_options::recursive);
      flip_byte(copy / name, offset);
      Victim v;
      const std::string m = error_of([&] { load_training_checkpoint(copy, *v.rig.pm, v.opt); });
      EXPECT_NE(m.find((copy / name).string() + ": CRC-32 "), std::string::npos) << name << " @" << offset << ": " << m;
      EXPECT_TRUE(v.unchanged()) << name << " @" << offset;
      // The early state-only read checks trainer_state.json alone; the full read every file.
      const bool state_file = std::string(name) == "trainer_state.json";
      EXPECT_EQ(error_of([&] { read_checkpoint_state(copy, /*all_files=*/false); }) == "no error", !state_file) << name;
      EXPECT_NE(error_of([&] { read_checkpoint_state(copy); }), "no error") << name;
    }
  }
  // checksums.json itself: a changed digit is a mismatch, a changed name a missing entry.
  const std::string manifest = peft::read_text_file(cp / kCheckpointManifestFile);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"crc32\": \"", "\"crc32\": \"f"}, {"optimizer.safetensors", "optimizer.safetensorz"}, {"\"size\": ", "\"size\": 1"}}) {
    std::string bad = manifest;
    bad.replace(bad.find(from), from.size(), to);
    peft::write_file_atomically(cp / kCheckpointManifestFile, bad);
    Victim v;
    const std::string m = error_of([&] { load_training_checkpoint(cp, *v.rig.pm, v.opt); });
    EXPECT_EQ(m.rfind(cp.string(), 0), 0u) << m;
    EXPECT_TRUE(v.unchanged()) << from;
  }
}

SEEDED_TEST(CheckpointIntegrity, ATruncatedFileIsAnErrorNamingIt) {
  const fs::path cp = fresh_checkpoint("ckpt_truncated");
  for (const char* name : {"optimizer.safetensors", "adapter_model.safetensors", "trainer_state.json"}) {
    const fs::path copy = cp.parent_path() / "truncated";
    fs::remove_all(copy);
    fs::copy(cp, copy, fs::copy_options::recursive);
    fs::resize_file(copy / name, fs::file_size(copy / name) - 7);
    Victim v;
    const std::string m = error_of([&] { load_training_checkpoint(copy, *v.rig.pm, v.opt); });
    EXPECT_NE(m.find((copy / name).string() + ": "), std::string::npos) << m;
    EXPECT_NE(m.find("(truncated or replaced)"), std::string::npos) << m;
    EXPECT_TRUE(v.unchanged()) << name;
  }
}

SEEDED_TEST(CheckpointIntegrity, AnOldCheckpointWithAPickledOptimizerIsRefused) {
  const fs::path cp = fresh_checkpoint("ckpt_old");
  fs::remove(cp / kCheckpointManifestFile);
  fs::rename(cp / "optimizer.safetensors", cp / "optimizer.pt");
  Victim v;
  const std::string m = error_of([&] { load_training_checkpoint(cp, *v.rig.pm, v.opt); });
  EXPECT_NE(m.find("written by an older peft-cpp (optimizer.pt"), std::string::npos) << m;
  EXPECT_TRUE(v.unchanged());
  fs::remove(cp / "optimizer.pt");
  EXPECT_NE(error_of([&] { read_checkpoint_state(cp); }).find("no checksums.json"), std::string::npos);
}

// The layout check behind the checksums: a well-formed file whose tensors do not fit the
// optimizer's parameters (written for another adapter, or by hand) never reaches the optimizer.
SEEDED_TEST(OptimizerStateFile, TensorsOfAnotherShapeOrDtypeAndForeignKeysAreRefused) {
  const fs::path dir = peft_test::scratch_dir("optimizer_state_file");
  TrainRig rig(1);
  rig.run(dir / "run", 2);
  const fs::path good = dir / "run" / "checkpoints" / "step-2" / "optimizer.safetensors";
  const peft::SafetensorsFile file = peft::load_safetensors(good);
  ASSERT_EQ(file.tensors.front().first, "state.0.exp_avg");
  using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;
  using Meta = std::vector<std::pair<std::string, std::string>>;
  auto set_meta = [](Meta m, const std::string& key, const std::string& value) {
    for (auto& kv : m)
      if (kv.first == key) kv.second = value;
    return m;
  };
  const torch::Tensor first = file.tensors.front().second;
  struct Case {
    const char* what;
    Tensors tensors;
    Meta meta;
    const char* expected;
  };
  Tensors transposed = file.tensors, wider = file.tensors, doubles = file.tensors, missing = file.tensors,
          extra = file.tensors;
  transposed.front().second = first.t().contiguous();
  wider.front().second = torch::zeros({first.size(0), first.size(1) + 1});
  doubles.front().second = first.to(torch::kFloat64);
  missing.erase(missing.begin());
  extra.emplace_back("state.99.exp_avg", torch::zeros({2}));
  const std::vector<Case> cases = {
      {"transposed", transposed, file.metadata, "`state.0.exp_avg` is F32 [8, 2], its parameter F32 [2, 8]"},
      {"wider", wider, file.metadata, "`state.0.exp_avg` is F32 [2, 9]"},
      {"float64", doubles, file.metadata, "`state.0.exp_avg` is F64 [2, 8]"},
      {"missing", missing, file.metadata, "tensor `state.0.exp_avg` missing"},
      {"extra", extra, file.metadata, "unexpected tensor `state.99.exp_avg`"},
      {"step 0", file.tensors, set_meta(file.metadata, "state.0.step", "0"), "`state.0.step` = 0"},
      {"step -1", file.tensors, set_meta(file.metadata, "state.1.step", "-1"), "`state.1.step` = \"-1\" is not a count"},
      {"beta1 1", file.tensors, set_meta(file.metadata, "group.0.beta1", "1"), "`group.0.beta1` = \"1\" is not in [0"},
      {"eps nan", file.tensors, set_meta(file.metadata, "group.0.eps", "nan"), "`group.0.eps` = \"nan\""},
      {"params", file.tensors, set_meta(file.metadata, "group.0.params", "3"), "group 0 holds 3 parameters, the optimizer's 4"},
      {"format", file.tensors, set_meta(file.metadata, "format", "pt"), "format \"pt\", expected \"peft-cpp/adamw/1\""},
  };
  for (const auto& c : cases) {
    const fs::path bad = dir / "bad.safetensors";
    peft::save_safetensors(bad, c.tensors, c.meta);
    torch::optim::AdamW opt(rig.pm->trainable_parameters());
    const std::string m = error_of([&] { read_adamw_state(bad, opt); });
    EXPECT_NE(m.find(c.expected), std::string::npos) << c.what << ": " << m;
    EXPECT_TRUE(opt.state().empty()) << c.what;
  }
  // Another adapter (r 3 instead of 2): every shape differs.
  peft_test::TinyLm other;
  peft::LoraConfig lc;
  lc.r = 3;
  lc.target_modules = peft::ModuleSpec({"hidden", "head"});
  peft::LoraModel other_pm(other.ptr(), lc);
  torch::optim::AdamW opt(other_pm.trainable_parameters());
  EXPECT_NE(error_of([&] { read_adamw_state(good, opt); }).find("(hint: the checkpoint belongs to another config)"),
            std::string::npos);
}

SEEDED_TEST(OptimizerStateFile, RoundTripsStepsMomentsAndAmsgrad) {
  const fs::path dir = peft_test::scratch_dir("optimizer_state_roundtrip");
  torch::Tensor w = torch::randn({3, 2}, torch::requires_grad()), b = torch::randn({2}, torch::requires_grad());
  torch::optim::AdamW opt({w, b}, torch::optim::AdamWOptions(0.01).amsgrad(true).betas(std::make_tuple(0.8, 0.95)));
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    (w.sum() * 2 + w.pow(2).sum()).backward();  // b gets no gradient: no state for it
    opt.step();
  }
  save_adamw_state(dir / "opt.safetensors", opt);
  torch::optim::AdamW back({w, b}, torch::optim::AdamWOptions(1.0));
  install_adamw_state(read_adamw_state(dir / "opt.safetensors", back), back);
  ASSERT_EQ(back.state().size(), 1u);
  const auto& s = static_cast<const torch::optim::AdamWParamState&>(*back.state().begin()->second);
  const auto& o = static_cast<const torch::optim::AdamWParamState&>(*opt.state().begin()->second);
  EXPECT_EQ(s.step(), 3);
  EXPECT_TRUE(torch::equal(s.exp_avg(), o.exp_avg()));
  EXPECT_TRUE(torch::equal(s.max_exp_avg_sq(), o.max_exp_avg_sq()));
  const auto& opts = static_cast<const torch::optim::AdamWOptions&>(back.param_groups()[0].options());
  EXPECT_EQ(opts.lr(), 0.01);
  EXPECT_TRUE(opts.amsgrad());
  EXPECT_EQ(std::get<0>(opts.betas()), 0.8);
}

SEEDED_TEST(CheckpointIntegrity, ACheckpointOfAnotherRunIsRefusedNamingWhatDiffers) {
  const fs::path dir = peft_test::scratch_dir("ckpt_other_run");
  TrainRig a(1);
  a.fingerprint = fingerprint("0.05");
  a.run(dir, 2);
  Victim v;
  try {
    load_training_checkpoint(dir / "checkpoints" / "step-2", *v.rig.pm, v.opt, fingerprint("0.003"));
    FAIL() << "no error";
  } catch (const TrainConfigError& e) {
    EXPECT_EQ(e.field(), "resume");
    EXPECT_NE(std::string(e.what()).find("training.lr: \"0.05\" (checkpoint) vs \"0.003\" (now)"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(v.unchanged());
  // The same run resumes; a fingerprint altered in trainer_state.json is noticed on its own.
  EXPECT_NO_THROW(load_training_checkpoint(dir / "checkpoints" / "step-2", *v.rig.pm, v.opt, fingerprint("0.05")));
  peft::JsonValue j = a.fingerprint.to_json();
  j.as_object()[1].second.set("training.lr", "0.003");
  EXPECT_THROW(RunFingerprint::from_json(j, "t"), peft::SerializationError);
}

SEEDED_TEST(CheckpointIntegrity, PruningLeavesCheckpointsOfOtherRunsAlone) {
  const fs::path dir = peft_test::scratch_dir("ckpt_prune_other");
  TrainRig longer(1);
  longer.fingerprint = fingerprint("0.05");
  longer.run(dir, 6);  // keeps step-4 and step-6
  TrainRig shorter(2);
  shorter.fingerprint = fingerprint("0.01");
  shorter.run(dir, 3);  // saves step-2; before, it pruned its own step-2 as the oldest
  std::vector<std::string> names;
  for (const auto& p : list_checkpoints(dir / "checkpoints")) names.push_back(p.filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step-2", "step-4", "step-6"}));
  EXPECT_EQ(read_checkpoint_state(dir / "checkpoints" / "step-2").run.hash(), shorter.fingerprint.hash());
  // A step of the other run is not overwritten either.
  TrainRig third(3);
  third.fingerprint = fingerprint("0.02");
  const std::string m = error_of([&] { third.run(dir, 4); });
  EXPECT_NE(m.find("step-2: holds a checkpoint of another run"), std::string::npos) << m;
  EXPECT_EQ(read_checkpoint_state(dir / "checkpoints" / "step-2").run.hash(), shorter.fingerprint.hash());
}

TEST(TrainerStateJson, RefusesOutOfRangeAndMalformedFields) {
  TrainerState s;
  s.step = 3;
  s.cpu_rng_state = "ab";
  const peft::JsonValue good = s.to_json();
  EXPECT_EQ(TrainerState::from_json(good, "t").step, 3);
  const std::vector<std::pair<const char*, peft::JsonValue>> bad = {
      {"step", peft::JsonValue(-1)},           {"tokens_seen", peft::JsonValue(-5)},     {"elapsed_s", peft::JsonValue(-1.0)},
      {"sampler_state", peft::JsonValue("-1")}, {"sampler_state", peft::JsonValue("1x")}, {"sampler_state", peft::JsonValue("99999999999999999999")},
      {"cpu_rng_state", peft::JsonValue("abc")}, {"cpu_rng_state", peft::JsonValue("zz")}, {"format", peft::JsonValue(1)},
      {"metrics", peft::JsonValue(3)},          {"world_size", peft::JsonValue(2)},       {"step", peft::JsonValue("3")}};
  for (const auto& [key, value] : bad) {
    peft::JsonValue j = good;
    j.set(key, value);
    EXPECT_THROW(TrainerState::from_json(j, "t"), peft::SerializationError) << key << " = " << value.dump();
  }
  EXPECT_THROW(TrainerState::from_json(peft::JsonValue(3), "t"), peft::SerializationError);
}

TEST(CheckpointManifest, RefusesPathsOddValuesAndMissingOrExtraFiles) {
  const std::vector<std::string> files = {"a.json", "b.safetensors"};
  const auto entries = parse_checkpoint_manifest(
      R"({"format": 1, "files": {"b.safetensors": {"size": 8, "crc32": "0000000f"}, "a.json": {"size": 0, "crc32": "ffffffff"}}})",
      "m", files);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].file, "a.json");
  EXPECT_EQ(entries[1].crc32, 15u);
  for (const char* text : {
           R"({"format": 2, "files": {}})",
           R"({"format": 1, "files": {"a.json": {"size": 1, "crc32": "00000000"}}})",
           R"({"format": 1, "files": {"a.json": {"size": 1, "crc32": "00000000"}, "b.safetensors": {"size": 1, "crc32": "0000000G"}}})",
           R"({"format": 1, "files": {"a.json": {"size": -1, "crc32": "00000000"}, "b.safetensors": {"size": 1, "crc32": "00000000"}}})",
           R"({"format": 1, "files": {"../a.json": {"size": 1, "crc32": "00000000"}}})",
           R"({"format": 1, "files": {"a.json": {"size": 1, "crc32": "00000000"}, "b.safetensors": {"size": 1, "crc32": "00000000"}, "c": {"size": 1, "crc32": "00000000"}}})",
           R"([1, 2])", "{"})
    EXPECT_THROW(parse_checkpoint_manifest(text, "m", files), peft::SerializationError) << text;
}

TEST(RunFingerprintTest, KeysTheDataByContentAndLeavesTheStepCountOut) {
  const fs::path dir = peft_test::scratch_dir("run_fingerprint");
  peft::write_file_atomically(dir / "data.txt", "one two three\n");
  TrainConfig c;
  c.data.file = dir / "data.txt";
  const RunFingerprint a = run_fingerprint(c);
  c.training.steps = 5000;
  c.training.eval_every = 7;
  c.training.threads = 3;
  EXPECT_EQ(run_fingerprint(c).hash(), a.hash());
  c.training.seed = 8;
  c.lora.r = 16;
  const RunFingerprint b = run_fingerprint(c);
  EXPECT_EQ(a.differences(b), "lora.r: \"8\" (checkpoint) vs \"16\" (now); training.seed: \"0\" (checkpoint) vs \"8\" (now)");
  c.training.seed = 0;
  c.lora.r = 8;
  peft::write_file_atomically(dir / "data.txt", "one two four\n");
  EXPECT_EQ(a.differences(run_fingerprint(c)).rfind("data.file: \"14 bytes, crc32 ", 0), 0u) << a.differences(run_fingerprint(c));
  EXPECT_EQ(RunFingerprint::from_json(a.to_json(), "t").hash(), a.hash());
}

TEST(RngState, AStateOfTheWrongSizeIsASerializationError) {
  const std::string saved = rng_state(torch::kCPU);
  EXPECT_THROW(set_rng_state(torch::kCPU, saved.substr(1)), peft::SerializationError);
  EXPECT_EQ(rng_state(torch::kCPU), saved);
}
