// The phases of a fine-tuning run (peft/train/phases.hpp) one at a time, on builtin:tiny-gpt2 and
// a tiny corpus, without the CLI (tests/finetune_cli.sh runs them strung together).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "peft/io/adapters.hpp"
#include "peft/quant/quantize_model.hpp"
#include "peft/train/phases.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace peft::train;

namespace {

/// 40 short documents separated by blank lines (~2,300 bytes).
fs::path write_corpus(const fs::path& dir) {
  std::ofstream f(dir / "corpus.txt");
  for (int i = 0; i < 40; ++i)
    f << "Document " << i << ": the quick brown fox jumps over the lazy dog.\nIt rests.\n\n";
  return dir / "corpus.txt";
}

/// A tiny run in `dir`: builtin:tiny-gpt2, seq_len 16, 3 steps; LibTorch's thread count untouched.
TrainConfig tiny_config(const fs::path& dir) {
  write_corpus(dir);
  const std::string yaml =
      "base_model: builtin:tiny-gpt2\n"
      "output_dir: " + (dir / "out").string() + "\n"
      "data: {file: corpus.txt, heldout_fraction: 0.2}\n"
      "training: {steps: 3, batch_size: 2, seq_len: 16, lr: 3e-3, warmup_steps: 1, seed: 5, threads: " +
      std::to_string(torch::get_num_threads()) + ", eval_every: 0, eval_batches: 2, save_every: 2, log_every: 1}\n"
      "lora: {r: 2, lora_alpha: 4, target_modules: [c_attn], fan_in_fan_out: true}\n";
  return train_config_from_yaml(yaml, "tiny.yaml", dir);
}

}  // namespace

TEST(TrainPhases, PrepareRunAppliesOverridesAndFindsNoCheckpointToResume) {
  const fs::path dir = peft_test::scratch_dir("phases_prepare");
  RunOverrides o;
  o.output_dir = dir / "elsewhere";
  o.steps = 7;
  o.resume = true;
  std::ostringstream out;
  const TrainingRun run = prepare_run(tiny_config(dir), "tiny.yaml", o, &out);
  EXPECT_EQ(run.config.training.steps, 7);
  EXPECT_EQ(run.output_dir, dir / "elsewhere");
  EXPECT_TRUE(fs::is_directory(run.output_dir));
  EXPECT_FALSE(run.resume_from);
  EXPECT_EQ(out.str(), "resume: no checkpoint in " + (dir / "elsewhere" / "checkpoints").string() + ", starting fresh\n");
  EXPECT_EQ(describe_run(run), "config tiny.yaml, output " + run.output_dir.string() + ", device cpu, dtype float32, " +
                                   std::to_string(torch::get_num_threads()) + " threads");
}

TEST(TrainPhases, PrepareRunNamesAnUnusableDevice) {
  const fs::path dir = peft_test::scratch_dir("phases_device");
  TrainConfig c = tiny_config(dir);
  c.training.device = "cuda:99";
  try {
    prepare_run(c, "tiny.yaml");
    FAIL() << "no error for cuda:99";
  } catch (const TrainConfigError& e) {
    EXPECT_EQ(e.field(), "training.device");
    EXPECT_EQ(std::string(e.what()).rfind("tiny.yaml: training.device = cuda:99: ", 0), 0u) << e.what();
  }
}

TEST(TrainPhases, WithoutAPretrainSectionTheBaseIsTheConfiguredModel) {
  const fs::path dir = peft_test::scratch_dir("phases_no_pretrain");
  std::ostringstream out;
  const PretrainResult pre = pretrain_base(prepare_run(tiny_config(dir), "tiny.yaml", {}, &out));
  EXPECT_EQ(pre.base_source, "builtin:tiny-gpt2");
  EXPECT_FALSE(pre.seconds);
  EXPECT_FALSE(pre.interrupted);
  EXPECT_EQ(out.str(), "");
}

TEST(TrainPhases, PretrainSavesAFrozenBaseThatAResumedRunReuses) {
  const fs::path dir = peft_test::scratch_dir("phases_pretrain");
  TrainConfig c = tiny_config(dir);
  c.pretrain = PretrainConfig{};
  c.pretrain->file = c.data.file;
  c.pretrain->steps = 2;
  c.pretrain->batch_size = 2;
  std::ostringstream out, progress;
  const PretrainResult pre = pretrain_base(prepare_run(c, "tiny.yaml", {}, &out, &progress));
  EXPECT_EQ(pre.base_source, (dir / "out" / "base").string());
  EXPECT_TRUE(pre.seconds);
  EXPECT_TRUE(fs::is_regular_file(dir / "out" / "base" / "config.json"));
  EXPECT_TRUE(fs::is_regular_file(dir / "out" / "pretrain_metrics.jsonl"));
  EXPECT_NE(out.str().find("pretrain: held-out loss on part A "), std::string::npos) << out.str();
  EXPECT_NE(progress.str().find("pretrain 2/2"), std::string::npos) << progress.str();

  TrainingRun resumed = prepare_run(c, "tiny.yaml", {}, nullptr);
  resumed.resume_from = dir / "out" / "checkpoints" / "step-2";  // reuse needs only a resume point
  std::ostringstream again;
  resumed.out = &again;
  const PretrainResult reused = pretrain_base(resumed);
  EXPECT_EQ(reused.base_source, pre.base_source);
  EXPECT_FALSE(reused.seconds);
  EXPECT_EQ(again.str(), "pretrain: reusing the saved base " + pre.base_source + "\n");
}

TEST(TrainPhases, BuildModelRejectsASeqLenBeyondThePositions) {
  const fs::path dir = peft_test::scratch_dir("phases_seq_len");
  TrainConfig c = tiny_config(dir);
  c.training.seq_len = 1000;
  const TrainingRun run = prepare_run(c, "tiny.yaml");
  try {
    build_model(run, "builtin:tiny-gpt2");
    FAIL() << "no error for seq_len 1000";
  } catch (const TrainConfigError& e) {
    EXPECT_EQ(e.field(), "training.seq_len");
    EXPECT_NE(std::string(e.what()).find("longer than the model's 256 positions"), std::string::npos) << e.what();
  }
}

TEST(TrainPhases, PrepareDataCutsTheCorpusIntoTrainAndHeldOutBlocks) {
  const fs::path dir = peft_test::scratch_dir("phases_data");
  std::ostringstream out;
  const TrainingRun run = prepare_run(tiny_config(dir), "tiny.yaml", {}, &out);
  const BaseModel base = build_model(run, "builtin:tiny-gpt2");
  EXPECT_EQ(base.tokenizer->kind(), "byte");
  const TokenData data = prepare_data(run, base);
  EXPECT_EQ(data.documents, 40u);
  std::int64_t bytes = 0;
  for (int i = 0; i < 40; ++i)
    bytes += static_cast<std::int64_t>(("Document " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog.\nIt rests.").size());
  EXPECT_EQ(data.tokens, bytes + 39);  // one eos between consecutive documents
  const std::int64_t blocks = (data.tokens - 1) / 16;
  EXPECT_EQ(data.blocks.train.size(0) + data.blocks.heldout.size(0), blocks);
  EXPECT_EQ(data.blocks.heldout.size(0), static_cast<std::int64_t>(std::llround(blocks * 0.2)));
  EXPECT_EQ(data.blocks.train.size(1), 17);
  EXPECT_EQ(out.str(), "data: " + run.config.data.file.string() + " (40 documents, " + std::to_string(data.tokens) +
                           " tokens, byte tokenizer) -> " + std::to_string(data.blocks.train.size(0)) + " train / " +
                           std::to_string(data.blocks.heldout.size(0)) + " held-out blocks of 16 tokens\n");
  // A tokenizer with more ids than the model has embeddings is refused.
  EXPECT_THROW(load_token_data(run.config.data.file, "text", *base.tokenizer, 16, 0.2, 100), peft::Error);
}

TEST(TrainPhases, EvaluateIsTheSeededModelsMeanLossOverTheFirstEvalBatches) {
  const fs::path dir = peft_test::scratch_dir("phases_evaluate");
  const TrainingRun run = prepare_run(tiny_config(dir), "tiny.yaml");
  const BaseModel a = build_model(run, "builtin:tiny-gpt2");
  const TokenData data = prepare_data(run, a);
  const double loss = evaluate(run, *a.model, data);
  EXPECT_TRUE(a.model->is_training());  // mode restored
  EXPECT_NEAR(loss, std::log(257.0), 0.3);  // random init: about uniform over the byte vocabulary
  // The same seed and source give the same number, bit for bit.
  const BaseModel b = build_model(run, "builtin:tiny-gpt2");
  EXPECT_EQ(evaluate(run, *b.model, data), loss);
  // eval_batches x batch_size = 4 rows in chunks of 2 = the mean over those 4 rows at once.
  torch::NoGradGuard no_grad;
  a.model->eval();
  const auto rows = data.blocks.heldout.slice(0, 0, 4);
  const double direct = peft::models::causal_lm_loss(a.model->forward(rows), rows).item<double>();
  EXPECT_NEAR(loss, direct, 1e-5);
}

TEST(TrainPhases, FinetuneExportAndVerifyMergeAgreeAndAMismatchIsDetected) {
  const fs::path dir = peft_test::scratch_dir("phases_merge");
  std::ostringstream out;
  const TrainingRun run = prepare_run(tiny_config(dir), "tiny.yaml", {}, &out);
  const BaseModel base = build_model(run, "builtin:tiny-gpt2");
  const TokenData data = prepare_data(run, base);
  const double before = evaluate(run, *base.model, data);
  peft::LoraModel adapter = attach_adapter(run, base);
  EXPECT_EQ(adapter.targeted_module_names().size(), 2u);
  EXPECT_EQ(adapter.peft_config("default").base_model_name_or_path, "builtin:tiny-gpt2");
  const LoopResult r = finetune(run, base, adapter, data, before);
  ASSERT_FALSE(r.interrupted);
  EXPECT_EQ(r.step, 3);
  ASSERT_TRUE(r.final_eval_loss);
  EXPECT_NE(*r.final_eval_loss, before);
  for (const char* f : {"metrics.jsonl", "loss.svg", "checkpoints/step-2/trainer_state.json"})
    EXPECT_TRUE(fs::exists(run.output_dir / f)) << f;
  EXPECT_NE(out.str().find("lora: held-out loss before fine-tuning "), std::string::npos) << out.str();

  const fs::path saved = export_adapter(run, adapter);
  EXPECT_EQ(saved, run.output_dir / "adapter");
  EXPECT_TRUE(fs::is_regular_file(saved / "adapter_model.safetensors"));
  const MergeCheck ok = verify_merge(run, base.source, saved, data, *r.final_eval_loss);
  EXPECT_TRUE(ok.passed()) << ok.relative_difference;
  EXPECT_LT(ok.relative_difference, 1e-5);
  EXPECT_EQ(ok.tolerance, 1e-4);

  // The live adapter moves on after it was saved: the merged saved one no longer matches.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : adapter.trainable_parameters()) p.add_(0.5);
  }
  const double moved = evaluate(run, *base.model, data);
  const MergeCheck bad = verify_merge(run, base.source, saved, data, moved);
  EXPECT_FALSE(bad.passed());
  EXPECT_DOUBLE_EQ(bad.merged_loss, ok.merged_loss);
  EXPECT_EQ(bad.failure_message().rfind("the merged model's held-out loss ", 0), 0u) << bad.failure_message();
  EXPECT_NE(bad.failure_message().find("(relative), more than 0.0001"), std::string::npos) << bad.failure_message();
}

TEST(TrainPhases, SummaryPrintsTheFiguresAndLeavesTheStreamAsItWas) {
  const fs::path dir = peft_test::scratch_dir("phases_summary");
  std::ostringstream out;
  const TrainingRun run = prepare_run(tiny_config(dir), "tiny.yaml", {}, &out);
  RunSummary s;
  s.parameters = {16384, 149312};
  s.loss_before = 2.7637;
  s.training.step = 120;
  s.training.tokens_seen = 245760;
  s.adapter_dir = run.output_dir / "adapter";
  s.merge.merged_loss = 2.639812;
  s.merge.lora_loss = 2.6398121;
  s.merge.relative_difference = 1.6e-8;
  s.merge.tolerance = 1e-4;
  print_summary(run, s);
  const std::string text = out.str();
  EXPECT_EQ(text.rfind("\nsummary\n  trainable parameters:    16384 of 149312 (10.97%)\n", 0), 0u) << text;
  EXPECT_NE(text.find("  held-out loss (corpus.txt): before 2.7637 -> after 2.6398 (-4.5%)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  merged model:            2.639812 vs LoRA 2.639812 (relative difference 1.6e-08, limit 0.0001)\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("  steps:                   120, 245760 tokens, 0.0 s training, "), std::string::npos) << text;
  EXPECT_EQ(text.find("pre-trained base"), std::string::npos);
  EXPECT_EQ(text.find("checkpoints:"), std::string::npos);  // none were written
  out << 0.123456789;
  EXPECT_NE(out.str().find("0.123457"), std::string::npos);  // default precision again
}

TEST(TrainPhases, PrepareRunRefusesAUsedOutputDirAndAResumeUnderAnotherConfig) {
  const fs::path dir = peft_test::scratch_dir("phases_used_dir");
  TrainConfig c = tiny_config(dir);
  {
    const TrainingRun run = prepare_run(c, "tiny.yaml");
    const BaseModel base = build_model(run, "builtin:tiny-gpt2");
    const TokenData data = prepare_data(run, base);
    peft::LoraModel adapter = attach_adapter(run, base);
    finetune(run, base, adapter, data, 0.0);  // saves step-2
  }
  // The message of prepare_run's TrainConfigError about `field`.
  auto refusal = [&](const std::string& field) -> std::string {
    try {
      prepare_run(c, "tiny.yaml");
    } catch (const TrainConfigError& e) {
      EXPECT_EQ(e.field(), field);
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(refusal("output_dir").find("already holds checkpoints of a run (newest: step-2)"), std::string::npos);
  c.resume = true;
  c.training.steps = 10;  // not part of the fingerprint: a run may be extended
  EXPECT_EQ(prepare_run(c, "tiny.yaml").resume_from, dir / "out" / "checkpoints" / "step-2");
  c.training.seed = 6;
  EXPECT_NE(refusal("resume").find("training.seed: \"5\" (checkpoint) vs \"6\" (now)"), std::string::npos);
  EXPECT_TRUE(fs::is_directory(dir / "out" / "checkpoints" / "step-2"));
}

TEST(TrainPhases, QuantizationSectionTrainsLoraOverA4bitBaseAndTheMergeCheckPasses) {
  const fs::path dir = peft_test::scratch_dir("phases_qlora");
  write_corpus(dir);
  const std::string yaml =
      "base_model: builtin:tiny-llama\n"
      "output_dir: " + (dir / "out").string() + "\n"
      "data: {file: corpus.txt, heldout_fraction: 0.2}\n"
      "training: {steps: 3, batch_size: 2, seq_len: 16, lr: 3e-3, warmup_steps: 1, seed: 5, threads: " +
      std::to_string(torch::get_num_threads()) + ", eval_every: 0, eval_batches: 2, save_every: 0, log_every: 1}\n"
      "quantization: {load_in_4bit: true, bnb_4bit_quant_type: nf4, bnb_4bit_use_double_quant: true}\n"
      "lora: {r: 2, lora_alpha: 4, target_modules: all-linear}\n";
  const TrainConfig cfg = train_config_from_yaml(yaml, "qlora.yaml", dir);
  ASSERT_TRUE(cfg.quantization);
  EXPECT_EQ(cfg.quantization->bnb_4bit_quant_type, "nf4");
  std::ostringstream out;
  const TrainingRun run = prepare_run(cfg, "qlora.yaml", {}, &out);
  const BaseModel base = build_model(run, "builtin:tiny-llama");
  EXPECT_NE(out.str().find("quantization: "), std::string::npos) << out.str();
  const auto f = peft::quantized_footprint(*base.model);
  EXPECT_GT(f.layers, 0);
  for (const auto& p : base.model->parameters()) EXPECT_FALSE(p.requires_grad());
  const TokenData data = prepare_data(run, base);
  const double before = evaluate(run, *base.model, data);
  peft::LoraModel adapter = attach_adapter(run, base);
  EXPECT_EQ(static_cast<std::int64_t>(adapter.targeted_module_names().size()), f.layers);
  const LoopResult r = finetune(run, base, adapter, data, before);
  ASSERT_TRUE(r.final_eval_loss);
  EXPECT_LT(*r.final_eval_loss, before);
  const MergeCheck ok = verify_merge(run, base.source, export_adapter(run, adapter), data, *r.final_eval_loss);
  EXPECT_TRUE(ok.passed()) << ok.relative_difference;
  EXPECT_LT(ok.relative_difference, 1e-4);
}

TEST(TrainPhases, QuantizationSectionRefusesEightBitAndUnknownKeys) {
  const std::string head = "base_model: builtin:tiny-llama\ndata: {file: corpus.txt}\n";
  const fs::path dir = peft_test::scratch_dir("phases_qlora_bad");
  write_corpus(dir);
  auto message = [&](const std::string& q) {
    try {
      train_config_from_yaml(head + q, "q.yaml", dir);
      return std::string("accepted");
    } catch (const peft::ConfigError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(message("quantization: {load_in_8bit: true}\n").find("quantization.load_in_8bit"), std::string::npos);
  EXPECT_NE(message("quantization: {bnb_4bit_quant_type: nf4}\n").find("load_in_4bit"), std::string::npos);
  EXPECT_NE(message("quantization: {load_in_4bit: true, bnb_4bit_quant_typ: nf4}\n").find("bnb_4bit_quant_type"),
            std::string::npos);
  EXPECT_NE(message("quantization: {load_in_4bit: true, bnb_4bit_quant_type: int4}\n").find("quantization.bnb_4bit_quant_type"),
            std::string::npos);
}
