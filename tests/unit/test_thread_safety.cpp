// README "Thread safety": forward of one model from several threads at once (eval mode, no
// adapter changes meanwhile) gives the single-threaded results, with LoRA and DoRA adapters
// whose lazily filled caches (typed holders, DoRA norm cache) are first filled concurrently.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <thread>
#include <vector>

#include "peft/tuner/lora_model.hpp"
#include "support/expect_close.hpp"
#include "support/seeded_test.hpp"
#include "support/small_models.hpp"
#include "support/test_helpers.hpp"

SEEDED_TEST(ThreadSafety, ConcurrentEvalForwardsOfOneModelMatchTheSingleThreadedResults) {
  torch::manual_seed(7);
  peft_test::Mlp net(peft_test::MlpOptions({16, 32, 32, 4}));
  peft::LoraConfig lora;
  lora.target_modules = {"lin0", "lin2"};
  lora.r = 4;
  lora.lora_alpha = 8;
  peft::LoraConfig dora = lora;
  dora.target_modules = {"lin1", "lin2"};
  dora.use_dora = true;
  auto pm = peft::get_peft_model(net, lora);
  pm.add_adapter("dora", dora);
  pm.set_adapter(std::vector<std::string>{"default", "dora"});
  peft_test::randomise_lora_B(pm);
  net->eval();

  constexpr int kThreads = 4, kIters = 25;
  std::vector<torch::Tensor> inputs;
  for (int t = 0; t < kThreads; ++t) inputs.push_back(torch::randn({8, 16}));
  std::vector<std::vector<torch::Tensor>> outputs(kThreads);
  std::atomic<int> ready{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      torch::NoGradGuard no_grad;  // grad mode is thread-local
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();  // start together: caches are cold
      try {
        for (int i = 0; i < kIters; ++i) outputs[t].push_back(net->forward(inputs[t]));
      } catch (...) {
        ++errors;
      }
    });
  for (auto& th : threads) th.join();
  ASSERT_EQ(errors.load(), 0);

  torch::NoGradGuard no_grad;
  for (int t = 0; t < kThreads; ++t) {
    const auto expected = net->forward(inputs[t]);
    ASSERT_EQ(outputs[t].size(), static_cast<std::size_t>(kIters));
    for (const auto& y : outputs[t]) EXPECT_TRUE(peft_test::close(y, expected, 1e-6, 1e-6)) << "thread " << t;
  }
  // The DoRA adapter really took part (its magnitude differs from the plain LoRA result).
  pm.set_adapter("default");
  EXPECT_TRUE(peft_test::not_close(net->forward(inputs[0]), outputs[0][0]));
}
