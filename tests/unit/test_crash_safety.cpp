// Crash safety of save_pretrained: a writer killed (SIGKILL) at any moment leaves a directory
// that loads as the previous or the new adapter, never a torn one.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "peft/io/adapters.hpp"
#include "support/fixtures.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"

namespace fs = std::filesystem;

namespace {

struct CrashNet : peft_test::Mlp {
  CrashNet() : Mlp(peft_test::MlpOptions({64, 64, 8})) {}
};

peft::LoraConfig crash_cfg() {
  peft::LoraConfig c;
  c.target_modules = {"lin0", "lin1"};
  c.r = 8;
  c.lora_alpha = 16;
  return c;
}

/// An adapter whose every lora_A and lora_B value is `v`, so a file mixing two saves shows.
void fill_adapter(peft::LoraModel& pm, float v) {
  torch::NoGradGuard g;
  for (auto& [key, layer] : pm.lora_layers()) {
    layer->lora_A("default")->weight.fill_(v);
    layer->lora_B("default")->weight.fill_(v);
  }
}

/// The value every adapter tensor in `dir` holds, or a test failure when they differ / the
/// directory does not load.
float loaded_value(const fs::path& dir) {
  CrashNet net;
  auto pm = peft::from_pretrained(net.ptr(), dir);  // throws when torn or unreadable
  float v = std::nanf("");
  for (auto& [key, layer] : pm.lora_layers())
    for (const auto& t : {layer->lora_A("default")->weight, layer->lora_B("default")->weight}) {
      const float lo = t.min().item<float>(), hi = t.max().item<float>();
      EXPECT_EQ(lo, hi) << key << ": one tensor mixes two saves";
      if (std::isnan(v)) v = lo;
      EXPECT_EQ(lo, v) << key << ": tensors of two different saves in one file";
    }
  return v;
}

}  // namespace

SEEDED_TEST(CrashSafety, SavePretrainedKilledAtRandomMomentsLeavesTheOldOrTheNewAdapter) {
  const fs::path dir = peft_test::scratch_dir("crash_safety");
  CrashNet net1, net2;
  auto pm1 = peft::get_peft_model(net1, crash_cfg());
  auto pm2 = peft::get_peft_model(net2, crash_cfg());
  fill_adapter(pm1, 1.0f);
  fill_adapter(pm2, 2.0f);
  peft::save_pretrained(pm1, dir);
  ASSERT_EQ(loaded_value(dir), 1.0f);

  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_us(0, 8000);
  int seen_new = 0, seen_old = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 30; ++round) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: only file I/O and memcpy of CPU tensors (no torch compute after fork).
      for (long i = 0;; ++i) {
        try {
          peft::save_pretrained(i % 2 ? pm2 : pm1, dir);
        } catch (...) {
          ::_exit(3);
        }
      }
    }
    ::usleep(static_cast<useconds_t>(delay_us(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself (status " << status << ")";
    float v = 0;
    ASSERT_NO_THROW(v = loaded_value(dir)) << "round " << round;
    EXPECT_TRUE(v == 1.0f || v == 2.0f) << v;
    (v == 2.0f ? seen_new : seen_old)++;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 10.0);
  // Only the two files and stale temporaries of killed writers; a new save cleans nothing up
  // but readers never look at `*.tmp-*`.
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(n == peft::kAdapterWeightsFile || n == peft::kAdapterConfigFile || n.find(".tmp-") != std::string::npos)
        << n;
  }
  RecordProperty("rounds_old", seen_old);
  RecordProperty("rounds_new", seen_new);
}

SEEDED_TEST(CrashSafety, AnUnchangedConfigIsNotRewrittenSoRepeatedSavesCannotTearThePair) {
  const fs::path dir = peft_test::scratch_dir("crash_config");
  CrashNet net;
  auto pm = peft::get_peft_model(net, crash_cfg());
  peft::save_pretrained(pm, dir);
  struct stat a {}, b {}, w1 {}, w2 {};
  ASSERT_EQ(::stat((dir / peft::kAdapterConfigFile).c_str(), &a), 0);
  ASSERT_EQ(::stat((dir / peft::kAdapterWeightsFile).c_str(), &w1), 0);
  fill_adapter(pm, 3.0f);
  peft::save_pretrained(pm, dir);
  ASSERT_EQ(::stat((dir / peft::kAdapterConfigFile).c_str(), &b), 0);
  ASSERT_EQ(::stat((dir / peft::kAdapterWeightsFile).c_str(), &w2), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "config replaced although unchanged";
  EXPECT_NE(w1.st_ino, w2.st_ino) << "weights not replaced by a new file (rename)";
  EXPECT_EQ(loaded_value(dir), 3.0f);
  // A changed config is written.
  peft::LoraConfig c = crash_cfg();
  c.lora_alpha = 32;
  CrashNet net2;
  auto pm2 = peft::get_peft_model(net2, c);
  peft::save_pretrained(pm2, dir);
  EXPECT_EQ(static_cast<double>(peft::load_adapter_config(dir).lora_alpha), 32.0);
}
