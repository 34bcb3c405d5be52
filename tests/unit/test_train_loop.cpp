// The training loop (peft/train/trainer.hpp) on a tiny LoRA model: checkpoints are complete and
// pruned, a resumed run ends bit-identical to an uninterrupted one, a stop request saves a
// checkpoint at the next step boundary.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <fstream>

#include "peft/io/adapters.hpp"
#include "peft/layers/linear.hpp"
#include "peft/train/trainer.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/train_rig.hpp"

namespace fs = std::filesystem;
using namespace peft::train;
using peft_test::TinyLm;
using peft_test::TrainRig;
using peft_test::bit_equal;

namespace {

struct Killed {};

}  // namespace

SEEDED_TEST(TrainLoop, TrainsLogsEvaluatesAndKeepsTheNewestCheckpoints) {
  const fs::path out = peft_test::scratch_dir("train_loop_basic");
  TrainRig s(1);
  const auto res = s.run(out, 7);
  EXPECT_EQ(res.step, 7);
  EXPECT_FALSE(res.interrupted);
  EXPECT_EQ(res.tokens_seen, 7 * 2 * 2 * 8);  // steps x grad_accum x batch x seq_len
  ASSERT_EQ(res.metrics.size(), 7u);
  EXPECT_TRUE(res.metrics[2].eval_loss && res.metrics[5].eval_loss && res.metrics[6].eval_loss);
  EXPECT_FALSE(res.metrics[0].eval_loss);
  EXPECT_LT(res.metrics.back().loss, res.metrics.front().loss);  // it learns
  // Checkpoints at 2, 4, 6; keep 2.
  const auto cps = list_checkpoints(out / "checkpoints");
  ASSERT_EQ(cps.size(), 2u);
  EXPECT_EQ(cps[0].filename(), "step-4");
  EXPECT_EQ(cps[1].filename(), "step-6");
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json",
                        "checksums.json"})
    EXPECT_TRUE(fs::is_regular_file(cps[1] / f)) << f;
  const auto on_disk = parse_metrics_jsonl(peft::read_text_file(out / "metrics.jsonl"));
  EXPECT_EQ(on_disk.size(), 7u);
  EXPECT_NE(peft::read_text_file(out / "loss.svg").find("<polyline id=\"eval\""), std::string::npos);
  const auto st = TrainerState::from_json(peft::JsonValue::parse(peft::read_text_file(cps[1] / "trainer_state.json")), "x");
  EXPECT_EQ(st.step, 6);
  EXPECT_EQ(st.sampler_state, 12u);  // 6 steps x 2 micro-batches
  EXPECT_EQ(st.metrics.size(), 6u);
  EXPECT_FALSE(st.cpu_rng_state.empty());
}

SEEDED_TEST(TrainLoop, ResumedRunEndsBitIdenticalToAnUninterruptedRun) {
  const fs::path ref_dir = peft_test::scratch_dir("train_loop_ref");
  const fs::path dir = peft_test::scratch_dir("train_loop_resume");
  std::vector<torch::Tensor> reference;
  std::vector<MetricsRecord> ref_metrics;
  {
    TrainRig s(11);
    ref_metrics = s.run(ref_dir, 8).metrics;
    reference = s.adapter();
  }
  {
    TrainRig s(11);
    s.on_batch = [](std::int64_t b) {
      if (b == 10) throw Killed{};  // dies inside step 6, after the step-4 checkpoint
    };
    EXPECT_THROW(s.run(dir, 8), Killed);
  }
  const auto latest = latest_checkpoint(dir / "checkpoints");
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->filename(), "step-4");
  TrainRig s(999);  // a new "process": other RNG state, fresh adapter
  EXPECT_FALSE(bit_equal(s.adapter(), reference));
  const auto res = s.run(dir, 8, latest);
  EXPECT_EQ(res.step, 8);
  EXPECT_EQ(s.batches, 8);  // only steps 5..8 were run, 2 micro-batches each
  EXPECT_TRUE(bit_equal(s.adapter(), reference));
  // Metrics: the records of the killed run past the checkpoint are replaced.
  const auto m = parse_metrics_jsonl(peft::read_text_file(dir / "metrics.jsonl"));
  ASSERT_EQ(m.size(), ref_metrics.size());
  for (std::size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(m[i].step, ref_metrics[i].step);
    EXPECT_EQ(m[i].loss, ref_metrics[i].loss);
  }
}

SEEDED_TEST(TrainLoop, StopRequestSavesACheckpointAtTheNextStepBoundary) {
  const fs::path dir = peft_test::scratch_dir("train_loop_stop");
  install_stop_handler();
  TrainRig s(3);
  s.on_batch = [](std::int64_t b) {
    if (b == 4) std::raise(SIGINT);  // during step 3 (batches 4 and 5)
  };
  const auto res = s.run(dir, 10);
  clear_stop_request();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  EXPECT_TRUE(res.interrupted);
  EXPECT_EQ(res.step, 3);  // step 3 finished, step 4 never started
  EXPECT_EQ(s.batches, 6);
  ASSERT_TRUE(res.last_checkpoint);
  EXPECT_EQ(res.last_checkpoint->filename(), "step-3");
  EXPECT_TRUE(fs::is_regular_file(*res.last_checkpoint / "trainer_state.json"));
}

SEEDED_TEST(TrainCheckpoint, LeftoversOfAKilledSaveAreIgnoredAndRemoved) {
  const fs::path dir = peft_test::scratch_dir("train_ckpt_leftovers");
  fs::create_directories(dir / "checkpoints" / ".tmp-step-9-123");
  fs::create_directories(dir / "checkpoints" / "step-9");  // incomplete: no trainer_state.json
  EXPECT_FALSE(latest_checkpoint(dir / "checkpoints"));
  TrainRig s(5);
  s.run(dir, 2);
  const auto cps = list_checkpoints(dir / "checkpoints");
  ASSERT_EQ(cps.size(), 1u);
  EXPECT_EQ(cps[0].filename(), "step-2");
  EXPECT_FALSE(fs::exists(dir / "checkpoints" / ".tmp-step-9-123"));
}

SEEDED_TEST(TrainCheckpoint, LoadingACheckpointOfAnotherShapeChangesNothing) {
  const fs::path dir = peft_test::scratch_dir("train_ckpt_shape");
  TrainRig a(1);
  a.run(dir, 2);
  torch::manual_seed(0);
  TinyLm other;
  peft::LoraConfig c;
  c.r = 3;
  c.target_modules = peft::ModuleSpec({"hidden", "head"});
  peft::LoraModel pm(other.ptr(), c);
  const auto before = peft::get_peft_model_state_dict(pm);
  std::vector<torch::Tensor> copy;
  for (const auto& [k, t] : before) copy.push_back(t.detach().clone());
  torch::optim::AdamW opt(pm.trainable_parameters());
  EXPECT_THROW(load_training_checkpoint(dir / "checkpoints" / "step-2", pm, opt), peft::SerializationError);
  for (std::size_t i = 0; i < copy.size(); ++i) EXPECT_TRUE(peft_test::equal(before[i].second, copy[i]));
}
