// Data parallelism on c10d Gloo (peft/train/distributed.hpp, data_parallel.hpp): torchrun's
// environment parsed and checked, collectives between ranks (threads of this process on
// loopback), gradient averaging with missing gradients and buckets, broadcast of the initial
// adapter, timeouts that name the rank and the operation, checkpoints' per-rank state.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <thread>

#include "peft/train/data_parallel.hpp"
#include "peft/train/distributed.hpp"
#include "peft/train/launcher.hpp"
#include "peft/train/training_checkpoint.hpp"
#include "support/expect_close.hpp"

using namespace peft::train;
using namespace std::chrono_literals;

namespace {

using Vars = std::map<std::string, const char*>;

/// Sets environment variables for one test and restores the old values afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const Vars& vars) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                             "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v, 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

/// Runs fn(rank, group) on `world` threads, each one rank of a fresh loopback group.
void on_ranks(int world, const std::function<void(int, ProcessGroup&)>& fn,
              std::chrono::milliseconds timeout = 20s) {
  const int port = free_tcp_port();
  std::vector<std::future<void>> ranks;
  for (int r = 0; r < world; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r] {
      DistributedEnv env;
      env.rank = r;
      env.world_size = world;
      env.master_port = port;
      DistributedOptions o;
      o.timeout = timeout;
      auto pg = ProcessGroup::create(env, torch::kCPU, o);
      fn(r, *pg);
    }));
  for (auto& f : ranks) f.get();  // rethrows a rank's failure
}

}  // namespace

TEST(DistributedEnvironment, AbsentWithoutWorldSize) {
  ScopedEnv env(Vars{{"RANK", "1"}});
  EXPECT_FALSE(DistributedEnv::from_environment().has_value());
}

TEST(DistributedEnvironment, ReadsTorchrunsVariablesWithDefaults) {
  {
    ScopedEnv env(Vars{{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                   {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29511"}});
    const auto e = DistributedEnv::from_environment();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->rank, 3);
    EXPECT_EQ(e->world_size, 4);
    EXPECT_EQ(e->local_rank, 1);
    EXPECT_EQ(e->local_world_size, 2);
    EXPECT_EQ(e->master_addr, "10.0.0.7");
    EXPECT_EQ(e->master_port, 29511);
  }
  ScopedEnv env(Vars{{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  const auto e = DistributedEnv::from_environment();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->local_rank, 1);  // LOCAL_RANK defaults to RANK, LOCAL_WORLD_SIZE to WORLD_SIZE
  EXPECT_EQ(e->local_world_size, 2);
  EXPECT_EQ(e->master_addr, "127.0.0.1");
  EXPECT_EQ(e->master_port, 29500);
}

TEST(DistributedEnvironment, RejectsMalformedVariablesNamingThem) {
  const std::vector<std::pair<Vars, std::string>> cases = {
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}}, "environment.RANK = 2: expected an integer in [0, 1]"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "two"}}, "environment.WORLD_SIZE = two"},
      {{{"RANK", "-1"}, {"WORLD_SIZE", "2"}}, "environment.RANK = -1"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}, "environment.MASTER_PORT = 70000"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_WORLD_SIZE", "3"}}, "environment.LOCAL_WORLD_SIZE = 3"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", ""}}, "environment.MASTER_ADDR"},
  };
  for (const auto& [vars, message] : cases) {
    ScopedEnv env(vars);
    try {
      DistributedEnv::from_environment();
      ADD_FAILURE() << "accepted: " << message;
    } catch (const peft::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
}

TEST(ProcessGroup, CollectivesSumBroadcastAndGather) {
  on_ranks(3, [](int rank, ProcessGroup& pg) {
    EXPECT_EQ(pg.world_size(), 3);
    EXPECT_EQ(pg.rank(), rank);
    EXPECT_EQ(pg.backend(), "gloo");
    torch::Tensor t = torch::tensor({1.0f, 10.0f}) * static_cast<float>(rank + 1);
    pg.allreduce_sum(t);
    EXPECT_TRUE(peft_test::equal(t, torch::tensor({6.0f, 60.0f})));
    torch::Tensor b = torch::full({2, 2}, static_cast<double>(rank), torch::kFloat64);
    pg.broadcast(b, 2);
    EXPECT_TRUE(peft_test::equal(b, torch::full({2, 2}, 2.0, torch::kFloat64)));
    const auto all = pg.all_gather(torch::tensor({static_cast<std::int64_t>(rank * 7)}));
    ASSERT_EQ(all.size(), 3u);
    for (int r = 0; r < 3; ++r) EXPECT_EQ(all[static_cast<std::size_t>(r)].item<std::int64_t>(), r * 7);
    pg.barrier();
  });
}

TEST(GradientReducer, AveragesGradientsTreatsMissingAsZeroAndSumsScalars) {
  on_ranks(2, [](int rank, ProcessGroup& pg) {
    // Buckets of at most 20 bytes: [2, 2] fp32 (16 bytes) alone, then [3] + [2] (12 + 8 bytes).
    std::vector<torch::Tensor> params = {torch::zeros({2, 2}, torch::requires_grad()),
                                         torch::zeros({3}, torch::requires_grad()),
                                         torch::zeros({2}, torch::requires_grad())};
    const float r = static_cast<float>(rank);
    params[0].mutable_grad() = torch::full({2, 2}, 1.0f + r);    // ranks: 1, 2 -> mean 1.5
    if (rank == 0) params[1].mutable_grad() = torch::tensor({2.0f, 4.0f, 6.0f});  // rank 1: none -> zeros
    auto shared = std::shared_ptr<ProcessGroup>(&pg, [](ProcessGroup*) {});
    GradientReducer reducer(shared, params, 20);
    EXPECT_EQ(reducer.buckets(), 2u);
    const auto sums = reducer.reduce({0.5 + rank, 100.0, rank == 1 ? 1.0 : 0.0});
    EXPECT_TRUE(peft_test::equal(params[0].grad(), torch::full({2, 2}, 1.5f)));
    EXPECT_TRUE(peft_test::equal(params[1].grad(), torch::tensor({1.0f, 2.0f, 3.0f})));
    EXPECT_FALSE(params[2].grad().defined()) << "a gradient no rank has stays undefined";
    ASSERT_EQ(sums.size(), 3u);
    EXPECT_DOUBLE_EQ(sums[0], 2.0);
    EXPECT_DOUBLE_EQ(sums[1], 200.0);
    EXPECT_DOUBLE_EQ(sums[2], 1.0);
  });
}

TEST(GradientReducer, MatchesOneProcessOnTheWholeBatch) {
  // A linear model's gradient on 4 rows = the mean of two ranks' gradients on 2 rows each.
  torch::manual_seed(3);
  const torch::Tensor w0 = torch::randn({3, 5});
  const torch::Tensor x = torch::randn({4, 5}), y = torch::randn({4, 3});
  torch::Tensor w = w0.clone().requires_grad_();
  torch::nn::functional::mse_loss(torch::matmul(x, w.t()), y).backward();
  const torch::Tensor whole = w.grad().clone();
  on_ranks(2, [&](int rank, ProcessGroup& pg) {
    torch::Tensor wr = w0.clone().requires_grad_();
    const auto rows = torch::indexing::Slice(2 * rank, 2 * rank + 2);
    torch::nn::functional::mse_loss(torch::matmul(x.index({rows}), wr.t()), y.index({rows})).backward();
    GradientReducer reducer(std::shared_ptr<ProcessGroup>(&pg, [](ProcessGroup*) {}), {wr});
    reducer.reduce();
    EXPECT_TRUE(peft_test::close(wr.grad(), whole, 1e-6, 1e-7));
  });
}

TEST(GradientReducer, BroadcastGivesEveryRankRankZerosParameters) {
  on_ranks(2, [](int rank, ProcessGroup& pg) {
    std::vector<torch::Tensor> params = {torch::full({2, 3}, 1.0f + static_cast<float>(rank)),
                                         torch::full({4}, 10.0 + rank, torch::kFloat64)};
    broadcast_parameters(pg, params);
    EXPECT_TRUE(peft_test::equal(params[0], torch::full({2, 3}, 1.0f)));
    EXPECT_TRUE(peft_test::equal(params[1], torch::full({4}, 10.0, torch::kFloat64)));
    const LossSum s = allreduce(pg, LossSum{2.0 * (rank + 1), 1.0});
    EXPECT_DOUBLE_EQ(s.total, 6.0);
    EXPECT_DOUBLE_EQ(s.mean(), 3.0);
  });
}

TEST(ProcessGroup, CollectiveTimesOutNamingRankOperationAndTimeout) {
  std::promise<void> rank0_done;
  auto done = rank0_done.get_future().share();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(on_ranks(
                   2,
                   [&](int rank, ProcessGroup& pg) {
                     if (rank == 1) {  // a hung rank: never joins the allreduce
                       done.wait();
                       return;
                     }
                     torch::Tensor t = torch::ones({2});
                     try {
                       pg.allreduce_sum(t);
                     } catch (const CollectiveError& e) {
                       const std::string m = e.what();
                       EXPECT_NE(m.find("rank 0 of 2: allreduce failed after"), std::string::npos) << m;
                       EXPECT_NE(m.find("collectives wait at most 1.0 s"), std::string::npos) << m;
                       rank0_done.set_value();
                       throw;
                     }
                     rank0_done.set_value();
                   },
                   1s),
               CollectiveError);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
}

TEST(ProcessGroup, RendezvousWithoutTheOtherRanksFailsAfterTheTimeout) {
  DistributedEnv env;
  env.rank = 0;
  env.world_size = 2;
  env.master_port = free_tcp_port();
  DistributedOptions o;
  o.timeout = 1s;
  try {
    ProcessGroup::create(env, torch::kCPU, o);
    ADD_FAILURE() << "a rendezvous of 2 completed with one rank";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 of 2: rendezvous at 127.0.0.1:"), std::string::npos) << e.what();
  }
}

TEST(ProcessGroup, RefusesBackendsThisBuildOrDeviceCannotUse) {
  DistributedEnv env;
  env.world_size = 2;
  DistributedOptions o;
  o.backend = "nccl";
  EXPECT_THROW(ProcessGroup::create(env, torch::kCPU, o), peft::ConfigError);
  o.backend = "mpi";
  try {
    ProcessGroup::create(env, torch::kCPU, o);
    ADD_FAILURE() << "mpi accepted";
  } catch (const peft::ConfigError& e) {
    EXPECT_EQ(e.field(), "ddp_backend");
    EXPECT_EQ(e.value(), "mpi");
  }
}

TEST(Shard, TakesItsRowsOfTheGlobalBatchAndItsChunks) {
  const std::vector<std::int64_t> global = {9, 4, 7, 1, 3, 8};
  EXPECT_EQ((Shard{0, 3}.rows_of(global, 2)), (std::vector<std::int64_t>{9, 4}));
  EXPECT_EQ((Shard{2, 3}.rows_of(global, 2)), (std::vector<std::int64_t>{3, 8}));
  EXPECT_THROW((Shard{0, 2}.rows_of(global, 2)), peft::Error);
  EXPECT_TRUE(Shard{}.owns(5));
  EXPECT_TRUE((Shard{1, 2}.owns(3)));
  EXPECT_FALSE((Shard{1, 2}.owns(4)));
}

TEST(TrainerStateJson, KeepsWorldSizeAndEveryRanksRngState) {
  TrainerState s;
  s.step = 4;
  s.cpu_rng_state = std::string("\x01\x02", 2);
  s.world_size = 2;
  s.rank_cpu_rng_states = {std::string("\x01\x02", 2), std::string("\xff\x00", 2)};
  const TrainerState back = TrainerState::from_json(s.to_json(), "t");
  EXPECT_EQ(back.world_size, 2);
  EXPECT_EQ(back.rank_cpu_rng_states, s.rank_cpu_rng_states);
  EXPECT_TRUE(back.rank_cuda_rng_states.empty());
  // A single-process state has no world_size key and reads back as 1.
  TrainerState one;
  one.cpu_rng_state = "x";
  EXPECT_EQ(one.to_json().find("world_size"), nullptr);
  EXPECT_EQ(TrainerState::from_json(one.to_json(), "t").world_size, 1);
  // States for another number of ranks than world_size are refused.
  peft::JsonValue j = s.to_json();
  j.set("world_size", 3);
  EXPECT_THROW(TrainerState::from_json(j, "t"), peft::SerializationError);
}

TEST(Launcher, RefusesOptionsOutOfRange) {
  LaunchOptions o;
  o.nproc_per_node = 0;
  EXPECT_THROW(launch_local_ranks("/bin/true", {}, o, nullptr), peft::ConfigError);
  o.nproc_per_node = 1;
  o.nnodes = 2;  // several machines need an agreed port
  EXPECT_THROW(launch_local_ranks("/bin/true", {}, o, nullptr), peft::ConfigError);
  o.master_port = 1234;
  o.node_rank = 2;
  EXPECT_THROW(launch_local_ranks("/bin/true", {}, o, nullptr), peft::ConfigError);
}

TEST(Launcher, ReportsTheFirstFailingRanksExitCode) {
  ScopedEnv env(Vars{{"OMP_NUM_THREADS", "5"}});  // set by the caller: kept; OPENBLAS_NUM_THREADS unset: given
  LaunchOptions o;
  o.nproc_per_node = 3;
  o.grace = 5s;
  o.threads_per_rank = 2;
  // Rank 1 fails with 3; the others succeed. Each rank sees torchrun's variables.
  const std::string script = "[ \"$WORLD_SIZE\" = 3 ] && [ \"$LOCAL_WORLD_SIZE\" = 3 ] && [ -n \"$MASTER_PORT\" ] || exit 9; "
                             "[ \"$OMP_NUM_THREADS\" = 5 ] && [ \"$OPENBLAS_NUM_THREADS\" = 2 ] || exit 8; "
                             "[ \"$RANK\" = 1 ] && exit 3; exit 0";
  std::ostringstream log;
  EXPECT_EQ(launch_local_ranks("/bin/sh", {"-c", script}, o, &log), 3);
  EXPECT_NE(log.str().find("rank 1 (pid"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("exited with code 3"), std::string::npos) << log.str();
  EXPECT_EQ(launch_local_ranks("/bin/sh", {"-c", "exit 0"}, o, nullptr), 0);
}

TEST(Launcher, KillsRanksThatOutliveTheGracePeriodAfterAFailure) {
  LaunchOptions o;
  o.nproc_per_node = 2;
  o.grace = 500ms;
  const auto t0 = std::chrono::steady_clock::now();
  std::ostringstream log;
  EXPECT_EQ(launch_local_ranks("/bin/sh", {"-c", "[ \"$RANK\" = 0 ] && exit 4; sleep 30"}, o, &log), 4);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_NE(log.str().find("still running after the grace period: killing it"), std::string::npos) << log.str();
}
