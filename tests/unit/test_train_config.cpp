// peft-finetune's YAML config reader: every key, defaults, and errors that name file:line:column,
// the key, the value and a hint.

#include <gtest/gtest.h>

#include <fstream>

#include "peft/train/train_config.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using peft::train::DecayKind;
using peft::train::TrainConfig;
using peft::train::train_config_from_yaml;

namespace {

/// The message of the ConfigError `yaml` raises ("" when it parses).
std::string error_of(const std::string& yaml) {
  try {
    train_config_from_yaml(yaml, "t.yaml");
  } catch (const peft::ConfigError& e) {
    return e.what();
  } catch (const peft::SerializationError& e) {
    return std::string("SerializationError: ") + e.what();
  }
  return "";
}

}  // namespace

TEST(TrainConfig, EmptyDocumentGivesTheDocumentedDefaults) {
  const TrainConfig c = train_config_from_yaml("", "dir/t.yaml");
  EXPECT_EQ(c.base_model, "builtin:tiny-gpt2");
  EXPECT_EQ(c.training.steps, 200);
  EXPECT_EQ(c.training.batch_size, 8);
  EXPECT_EQ(c.training.seq_len, 64);
  EXPECT_DOUBLE_EQ(c.training.lr, 1e-3);
  EXPECT_EQ(c.training.grad_accum, 1);
  EXPECT_EQ(c.training.schedule, DecayKind::Cosine);
  EXPECT_EQ(c.training.device, "cpu");
  EXPECT_EQ(c.training.dtype, "float32");
  EXPECT_FALSE(c.resume);
  EXPECT_FALSE(c.pretrain.has_value());
  EXPECT_EQ(c.base_dir, fs::path("dir"));
  EXPECT_EQ(c.output_dir, fs::path("peft-finetune-out"));
  EXPECT_EQ(c.lora.r, 8);
  EXPECT_TRUE(c.lora.target_modules.is_all_linear());
}

TEST(TrainConfig, ReadsEveryTrainingKey) {
  const TrainConfig c = train_config_from_yaml(R"(
base_model: builtin:tiny-llama
output_dir: out
resume: true
training:
  steps: 7
  batch_size: 3
  seq_len: 16
  lr: 2e-4
  warmup_steps: 2
  schedule: linear
  min_lr_ratio: 0.1
  weight_decay: 0.01
  grad_accum: 4
  max_grad_norm: 0.5
  seed: 42
  device: cuda:1
  dtype: bf16
  threads: 3
  eval_every: 5
  eval_batches: 0
  save_every: 3
  keep_checkpoints: 4
  log_every: 2
  gradient_checkpointing: true
lora:
  r: 4
  lora_alpha: 8
  target_modules: [q_proj, v_proj]
)", "/cfg/t.yaml");
  EXPECT_EQ(c.base_model, "builtin:tiny-llama");
  EXPECT_EQ(c.output_dir, fs::path("out"));  // relative to the working directory
  EXPECT_TRUE(c.resume);
  EXPECT_EQ(c.training.steps, 7);
  EXPECT_EQ(c.training.batch_size, 3);
  EXPECT_EQ(c.training.seq_len, 16);
  EXPECT_DOUBLE_EQ(c.training.lr, 2e-4);
  EXPECT_EQ(c.training.warmup_steps, 2);
  EXPECT_EQ(c.training.schedule, DecayKind::Linear);
  EXPECT_DOUBLE_EQ(c.training.min_lr_ratio, 0.1);
  EXPECT_DOUBLE_EQ(c.training.weight_decay, 0.01);
  EXPECT_EQ(c.training.grad_accum, 4);
  EXPECT_DOUBLE_EQ(c.training.max_grad_norm, 0.5);
  EXPECT_EQ(c.training.seed, 42u);
  EXPECT_EQ(c.training.device, "cuda:1");
  EXPECT_EQ(c.training.dtype, "bfloat16");
  EXPECT_EQ(c.training.threads, 3);
  EXPECT_EQ(c.training.eval_every, 5);
  EXPECT_EQ(c.training.eval_batches, 0);
  EXPECT_EQ(c.training.save_every, 3);
  EXPECT_EQ(c.training.keep_checkpoints, 4);
  EXPECT_EQ(c.training.log_every, 2);
  EXPECT_TRUE(c.training.gradient_checkpointing);
  EXPECT_EQ(c.lora.r, 4);
  EXPECT_EQ(c.lora.target_modules.names(), (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(TrainConfig, DataAndPretrainFilesMustExistAndResolveAgainstTheConfigDirectory) {
  const fs::path dir = peft_test::scratch_dir("train_config_files");
  std::ofstream(dir / "a.txt") << "hello\n";
  std::ofstream(dir / "b.jsonl") << "{\"text\": \"x\"}\n";
  const TrainConfig c = train_config_from_yaml(
      "data: {file: b.jsonl, jsonl_field: body, heldout_fraction: 0.25}\n"
      "pretrain: {file: a.txt, steps: 5, batch_size: 2, lr: 0.01, warmup_steps: 1, save_dir: basemodel}\n",
      (dir / "t.yaml").string());
  EXPECT_EQ(c.data.file, dir / "b.jsonl");
  EXPECT_EQ(c.data.jsonl_field, "body");
  EXPECT_DOUBLE_EQ(c.data.heldout_fraction, 0.25);
  ASSERT_TRUE(c.pretrain.has_value());
  EXPECT_EQ(c.pretrain->file, dir / "a.txt");
  EXPECT_EQ(c.pretrain->steps, 5);
  EXPECT_EQ(c.pretrain->save_dir, "basemodel");
  const std::string e = error_of("data:\n  file: missing.txt\n");
  EXPECT_NE(e.find("t.yaml:2:9: data.file = missing.txt: no such file"), std::string::npos) << e;
}

TEST(TrainConfig, UnknownKeysAreErrorsWithDidYouMean) {
  std::string e = error_of("training:\n  stpes: 10\n");
  EXPECT_NE(e.find("t.yaml:2:3: training.stpes: unknown key in `training:`"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean `steps`?"), std::string::npos) << e;
  e = error_of("ouput_dir: x\n");
  EXPECT_NE(e.find("t.yaml:1:1: ouput_dir: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean `output_dir`?"), std::string::npos) << e;
  e = error_of("zzzzzz: 1\n");
  EXPECT_NE(e.find("known keys: base_model, data"), std::string::npos) << e;
}

TEST(TrainConfig, BadValuesNameFileLineKeyValueAndHint) {
  std::string e = error_of("training:\n  lr: -1\n");
  EXPECT_NE(e.find("t.yaml:2:7: training.lr = -1: must be > 0 (hint:"), std::string::npos) << e;
  e = error_of("training:\n  steps: \"10\"\n");
  EXPECT_NE(e.find("t.yaml:2:10: training.steps = \"10\": expected an integer"), std::string::npos) << e;
  e = error_of("training:\n  steps: 1.5\n");
  EXPECT_NE(e.find("training.steps = 1.5: expected an integer"), std::string::npos) << e;
  e = error_of("training:\n  batch_size: 0\n");
  EXPECT_NE(e.find("training.batch_size = 0: must be >= 1"), std::string::npos) << e;
  e = error_of("training:\n  schedule: cosin\n");
  EXPECT_NE(e.find("did you mean `cosine`?"), std::string::npos) << e;
  e = error_of("training:\n  device: tpu\n");
  EXPECT_NE(e.find("training.device = tpu: unknown device (hint: cpu, cuda or cuda:N)"), std::string::npos) << e;
  e = error_of("training:\n  dtype: float16\n");
  EXPECT_NE(e.find("training.dtype = float16: unknown value"), std::string::npos) << e;
  e = error_of("data:\n  heldout_fraction: 1.0\n");
  EXPECT_NE(e.find("data.heldout_fraction = 1.0: must be in (0, 1)"), std::string::npos) << e;
  e = error_of("base_model: builtin:tiny-bert\n");
  EXPECT_NE(e.find("t.yaml:1:13: base_model = builtin:tiny-bert: unknown builtin model"), std::string::npos) << e;
  e = error_of("base_model: /nonexistent/dir\n");
  EXPECT_NE(e.find("not a model directory"), std::string::npos) << e;
  e = error_of("training: 5\n");
  EXPECT_NE(e.find("`training:` must be a mapping"), std::string::npos) << e;
  e = error_of("resume: maybe\n");
  EXPECT_NE(e.find("resume = maybe: no such checkpoint directory"), std::string::npos) << e;
}

TEST(TrainConfig, ErrorsAreConfigErrorsWithFieldAndValue) {
  try {
    train_config_from_yaml("training:\n  warmup_steps: -3\n", "t.yaml");
    FAIL() << "no error";
  } catch (const peft::train::TrainConfigError& e) {
    EXPECT_EQ(e.field(), "training.warmup_steps");
    EXPECT_EQ(e.value(), "-3");
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);  // one line
  }
}

TEST(TrainConfig, DuplicateKeysAndMalformedYamlAreLocated) {
  std::string e = error_of("training:\n  steps: 1\n  steps: 2\n");
  EXPECT_NE(e.find("t.yaml:3:3: training.steps: duplicate key"), std::string::npos) << e;
  e = error_of("training: [1, 2\n");
  EXPECT_NE(e.find("SerializationError: t.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
}

TEST(TrainConfig, LoraSectionErrorsComeFromTheLoraReaderWithLocation) {
  const std::string e = error_of("lora:\n  r: abc\n");
  EXPECT_NE(e.find("t.yaml:2:6:"), std::string::npos) << e;
  EXPECT_NE(e.find("LoraConfig.r"), std::string::npos) << e;
}

TEST(TrainConfig, PretrainNeedsABuiltinBase) {
  const fs::path dir = peft_test::scratch_dir("train_config_hf");
  std::ofstream(dir / "config.json") << "{}";
  const std::string yaml = "base_model: " + dir.string() + "\npretrain: {steps: 3}\n";
  const std::string e = error_of(yaml);
  EXPECT_NE(e.find("pretrain = <mapping>: pre-training needs a builtin base_model"), std::string::npos) << e;
}

TEST(TrainConfig, ClosestKeyOnlySuggestsNearNames) {
  using peft::train::closest_key;
  EXPECT_EQ(closest_key("lr_rate", {"lr", "seq_len"}), "");
  EXPECT_EQ(closest_key("seqlen", {"lr", "seq_len"}), "seq_len");
  EXPECT_EQ(closest_key("batchsize", {"batch_size", "steps"}), "batch_size");
}
