// Loading at scale (issue 15): SkipInitScope (layers/skip_init.hpp), the streaming
// load_checkpoint (io/hf_checkpoint.hpp) and load_causal_lm's dtype default.

#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fstream>
#include <mutex>
#include <thread>

#include "peft/format/atomic_file.hpp"
#include "peft/io/detail/checkpoint_files.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/layers/conv.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/embedding.hpp"
#include "peft/layers/linear.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/model_config.hpp"
#include "support/cpu_memory_counter.hpp"
#include "support/expect_close.hpp"
#include "support/fixtures.hpp"
#include "support/safetensors_bytes.hpp"
#include "support/seeded_test.hpp"
#include "support/small_decoders.hpp"

namespace fs = std::filesystem;

namespace {

/// The global CPU generator's state (a byte tensor), to check that nothing drew from it.
torch::Tensor global_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

/// A module with the shapes of the tests: a Linear (weight [6, 5], bias [6]), a non-contiguous
/// parameter (a transposed [4, 3] tensor, so [3, 4]) and an int64 buffer.
struct SmallNetImpl : torch::nn::Module {
  explicit SmallNetImpl(torch::Dtype dtype = torch::kFloat32) {
    fc = register_module("fc", peft::Linear(5, 6));
    fc->to(dtype);
    odd = register_parameter("odd", torch::zeros({4, 3}, dtype).t());
    steps = register_buffer("steps", torch::zeros({3}, torch::kInt64));
  }
  peft::Linear fc{nullptr};
  torch::Tensor odd, steps;
};
TORCH_MODULE(SmallNet);

std::vector<std::pair<std::string, torch::Tensor>> small_net_file(torch::Dtype dtype) {
  return {{"fc.weight", torch::randn({6, 5}).to(dtype)},
          {"fc.bias", torch::randn({6}).to(dtype)},
          {"odd", torch::randn({3, 4}).to(dtype)},
          {"steps", torch::tensor({3, 1, 4}, torch::kInt64)}};
}

/// What load_checkpoint did before it streamed: the whole file read, then dst.copy_(src).
void old_copy_semantics(torch::nn::Module& m, const fs::path& path) {
  const auto cp = peft::open_hf_checkpoint(path);
  auto params = m.named_parameters();
  auto buffers = m.named_buffers();
  torch::NoGradGuard no_grad;
  for (const auto& shard : cp.shards)
    for (const auto& [key, t] : shard.tensors) {
      torch::Tensor* dst = params.find(key);
      if (!dst) dst = buffers.find(key);
      ASSERT_NE(dst, nullptr) << key;
      dst->copy_(t);
    }
}

void expect_same_state(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(peft_test::equal(p.value(), pb[p.key()])) << p.key();
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& p : ba) EXPECT_TRUE(peft_test::equal(p.value(), bb[p.key()])) << p.key();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const peft::SerializationError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no SerializationError";
  return "";
}

}  // namespace

// ---------------------------------------------------------------- SkipInitScope

SEEDED_TEST(SkipInit, BaseLayersDrawNothingAndTakeTheScopesDtype) {
  const auto before = global_rng_state();
  {
    peft::SkipInitScope scope(torch::kBFloat16);
    EXPECT_TRUE(peft::skip_init_active());
    peft::Linear lin(64, 32);
    peft::Embedding emb(torch::nn::EmbeddingOptions(100, 16).padding_idx(0));
    peft::Conv1D c1d(24, 8);
    peft::Conv2d c2d(torch::nn::Conv2dOptions(3, 4, 3));
    peft::models::LlamaForCausalLM llama(peft_test::small_llama(false));
    peft::models::GPT2LMHeadModel gpt2(peft_test::small_gpt2(false));
    for (const auto& t : {lin->weight, lin->bias, emb->weight, c1d->weight, c1d->bias, c2d->weight, c2d->bias})
      EXPECT_EQ(t.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(lin->weight.sizes(), (torch::IntArrayRef{32, 64}));
    EXPECT_TRUE(lin->weight.requires_grad());
    for (const auto* m : {static_cast<torch::nn::Module*>(llama.get()), static_cast<torch::nn::Module*>(gpt2.get())})
      for (const auto& p : m->named_parameters()) {
        if (p.key().find("norm") == std::string::npos && p.key().find(".ln_") == std::string::npos) {
          EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
        }
      }
  }
  EXPECT_FALSE(peft::skip_init_active());
  EXPECT_TRUE(peft_test::equal(global_rng_state(), before)) << "a constructor drew from the global generator";
  // Outside the scope: torch's init, draw for draw.
  torch::manual_seed(3);
  peft::Linear ours(7, 5);
  torch::manual_seed(3);
  torch::nn::Linear stock(7, 5);
  EXPECT_TRUE(peft_test::equal(ours->weight, stock->weight));
  EXPECT_TRUE(peft_test::equal(ours->bias, stock->bias));
  EXPECT_FALSE(peft_test::equal(global_rng_state(), before));
}

SEEDED_TEST(SkipInit, ScopesNestAndRestoreAndAreThreadLocal) {
  {
    peft::SkipInitScope outer(torch::kBFloat16);
    {
      peft::SkipInitScope inner(torch::kFloat16);
      EXPECT_EQ(peft::Linear(3, 2)->weight.scalar_type(), torch::kFloat16);
      EXPECT_EQ(peft::new_filled_parameter_tensor({4}, 1.0).scalar_type(), torch::kFloat16);
    }
    EXPECT_TRUE(peft::skip_init_active());
    EXPECT_EQ(peft::Linear(3, 2)->weight.scalar_type(), torch::kBFloat16);
    bool other_thread_active = true;
    torch::Dtype other_thread_dtype = torch::kBFloat16;
    std::thread t([&] {
      other_thread_active = peft::skip_init_active();
      other_thread_dtype = peft::Linear(3, 2)->weight.scalar_type();
    });
    t.join();
    EXPECT_FALSE(other_thread_active);
    EXPECT_EQ(other_thread_dtype, torch::kFloat32);
  }
  EXPECT_FALSE(peft::skip_init_active());
  EXPECT_EQ(peft::Linear(3, 2)->weight.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(peft_test::equal(peft::new_filled_parameter_tensor({4}, 1.0), torch::ones({4})));
  EXPECT_TRUE(peft_test::equal(peft::new_filled_parameter_tensor({2, 3}, 0.0), torch::zeros({2, 3})));
}

SEEDED_TEST(SkipInit, TheWeightsTakeTheScopesDeviceAndCommitNoMemory) {
  if (torch::cuda::is_available()) {
    peft::SkipInitScope scope(torch::kBFloat16, torch::kCUDA);
    peft::Linear lin(8, 4);
    EXPECT_TRUE(lin->weight.is_cuda());
    EXPECT_EQ(lin->bias.scalar_type(), torch::kBFloat16);
  }
  // 256 MiB of fp32 weight: uninitialised storage is allocated but never touched.
  auto resident = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
    return -1LL;
  };
  const long long before = resident();
  if (before < 0) GTEST_SKIP() << "no /proc/self/status";
  peft::SkipInitScope scope(torch::kFloat32);
  peft::Linear big(8192, 8192);
  EXPECT_EQ(big->weight.numel(), 8192LL * 8192);
  EXPECT_LT(resident() - before, 32LL << 20) << "the uninitialised weight was touched";
}

// ---------------------------------------------------------------- streaming load

SEEDED_TEST(StreamingLoad, ConvertsBothWaysExactlyAsTheOldCopy) {
  const auto dir = peft_test::scratch_dir("stream_convert");
  for (const auto& [file_dtype, model_dtype] : {std::pair{torch::kFloat32, torch::kBFloat16},
                                              std::pair{torch::kBFloat16, torch::kFloat32},
                                              std::pair{torch::kFloat16, torch::kFloat16}}) {
    const auto path = dir / "model.safetensors";
    peft::save_safetensors(path, small_net_file(file_dtype));
    SmallNet streamed(model_dtype), copied(model_dtype);
    streamed->steps.fill_(9);
    const auto version = streamed->fc->weight._version();
    const auto report = peft::load_checkpoint(*streamed, path);
    EXPECT_TRUE(report.missing.empty() && report.unexpected.empty());
    old_copy_semantics(*copied, path);
    expect_same_state(*streamed, *copied);
    EXPECT_EQ(streamed->fc->weight.scalar_type(), model_dtype);
    EXPECT_FALSE(streamed->odd.is_contiguous());  // filled in place, not replaced
    EXPECT_TRUE(peft_test::equal(streamed->steps, torch::tensor({3, 1, 4}, torch::kInt64)));
    EXPECT_GT(streamed->fc->weight._version(), version) << "written behind autograd without a version bump";
  }
}

SEEDED_TEST(StreamingLoad, ATensorLargerThanOneChunkIsConvertedPieceByPiece) {
  // 12M fp32 values (48 MiB: two 32 MiB chunks) into a bf16 parameter.
  struct Big : torch::nn::Module {
    torch::Tensor w = register_parameter("w", torch::zeros({3, 4'000'000}, torch::kBFloat16));
  } big;
  const auto path = peft_test::scratch_dir("stream_chunks") / "model.safetensors";
  const auto values = torch::randn({3, 4'000'000});
  peft::save_safetensors(path, {{"w", values}});
  peft::load_checkpoint(big, path);
  EXPECT_TRUE(peft_test::equal(big.w, values.to(torch::kBFloat16)));
}

SEEDED_TEST(StreamingLoad, TwoShardsAndARenameLoadAsTheOldCopyAndNonStrictReports) {
  const auto dir = peft_test::scratch_dir("stream_sharded");
  const auto tensors = small_net_file(torch::kFloat32);
  // The file names lack the "net." prefix the module tree has; "extra" is not in the model.
  peft::save_safetensors(dir / "a.safetensors", {tensors[0], tensors[1]});
  peft::save_safetensors(dir / "b.safetensors", {tensors[2], {"extra", torch::ones({2})}});
  write_bytes(dir / "model.safetensors.index.json",
              R"({"metadata": {}, "weight_map": {"fc.weight": "a.safetensors", "fc.bias": "a.safetensors",
                  "odd": "b.safetensors", "extra": "b.safetensors"}})");
  struct Outer : torch::nn::Module {
    SmallNet net = register_module("net", SmallNet());
  } streamed, expected;
  auto rename = [](const std::string& k) { return "net." + k; };
  const std::string e = error_of([&] { peft::load_checkpoint(streamed, dir, true, rename); });
  EXPECT_NE(e.find("Missing: net.steps."), std::string::npos) << e;
  EXPECT_NE(e.find("Unexpected: extra."), std::string::npos) << e;
  const auto report = peft::load_checkpoint(streamed, dir, /*strict=*/false, rename);
  EXPECT_EQ(report.missing, std::vector<std::string>{"net.steps"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"extra"});
  torch::NoGradGuard no_grad;
  expected.net->fc->weight.copy_(tensors[0].second);
  expected.net->fc->bias.copy_(tensors[1].second);
  expected.net->odd.copy_(tensors[2].second);
  expected.net->steps.copy_(streamed.net->steps);
  expect_same_state(streamed, expected);
  // Two file keys onto one model key.
  const std::string twice = error_of([&] {
    peft::load_checkpoint(streamed, dir, false, [](const std::string& k) { return k == "extra" ? "net.odd" : "net." + k; });
  });
  EXPECT_NE(twice.find("both load into `net.odd`"), std::string::npos) << twice;
}

// ---------------------------------------------------------------- validation first

SEEDED_TEST(StreamingLoad, HugeClaimsAndRangesPastTheEndAreRejectedBeforeAnyAllocation) {
  const auto dir = peft_test::scratch_dir("stream_bad");
  auto* counter = peft::testing::CpuMemoryCounter::install();
  ASSERT_NE(counter, nullptr);
  // A model whose one weight really is [4096, 4096] fp32 (64 MiB, never touched).
  struct Wide : torch::nn::Module {
    Wide() {
      peft::SkipInitScope scope;
      fc = register_module("fc", peft::Linear(torch::nn::LinearOptions(4096, 4096).bias(false)));
    }
    peft::Linear fc{nullptr};
  } model;
  const std::string sixteen(16, '\x01');
  const struct {
    const char* name;
    std::string bytes;
    const char* says;
  } cases[] = {
      // The shape the model wants, 64 MiB claimed, 16 bytes present.
      {"past_end", peft_test::assemble(R"({"fc.weight":{"dtype":"F32","shape":[4096,4096],"data_offsets":[0,67108864]}})", sixteen),
       "reach beyond the data buffer"},
      // A terabyte shape whose offsets span the 16 bytes present.
      {"huge_shape", peft_test::assemble(R"({"fc.weight":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}})", sixteen),
       "needs 4000000000000"},
      // A header length larger than the file.
      {"truncated_header", peft_test::le64(90'000'000) + R"({"fc.weight":)", "larger than the"},
      {"five_bytes", std::string("\x10\0\0\0\0", 5), "shorter than the 8-byte header length"},
  };
  for (const auto& c : cases) {
    const auto path = dir / (std::string(c.name) + ".safetensors");
    write_bytes(path, c.bytes);
    counter->reset_peak();
    const auto live = counter->live_bytes();
    const std::string e = error_of([&] { peft::load_checkpoint(model, path); });
    EXPECT_NE(e.find(path.string()), std::string::npos) << e;
    EXPECT_NE(e.find(c.says), std::string::npos) << c.name << ": " << e;
    EXPECT_LT(counter->peak_bytes() - live, 1 << 20) << c.name << " allocated tensor memory";
  }
}

SEEDED_TEST(StreamingLoad, AMismatchInTheLastShardLeavesTheModelUntouched) {
  const auto dir = peft_test::scratch_dir("stream_late_mismatch");
  auto tensors = small_net_file(torch::kFloat32);
  peft::save_safetensors(dir / "a.safetensors", {tensors[0], tensors[1], tensors[3]});
  peft::save_safetensors(dir / "b.safetensors", {{"odd", torch::randn({4, 3})}});  // the model has [3, 4]
  write_bytes(dir / "model.safetensors.index.json",
              R"({"weight_map": {"fc.weight": "a.safetensors", "fc.bias": "a.safetensors",
                  "steps": "a.safetensors", "odd": "b.safetensors"}})");
  SmallNet model;
  const auto before = model->fc->weight.clone();
  const std::string e = error_of([&] { peft::load_checkpoint(*model, dir); });
  EXPECT_NE(e.find("`odd` has shape [4, 3], the model needs [3, 4]"), std::string::npos) << e;
  EXPECT_TRUE(peft_test::equal(model->fc->weight, before));
  // A floating-point tensor does not load into the int64 buffer.
  peft::save_safetensors(dir / "b.safetensors", {{"odd", torch::randn({3, 4})}});
  peft::save_safetensors(dir / "a.safetensors", {tensors[0], tensors[1], {"steps", torch::ones({3})}});
  const std::string cast = error_of([&] { peft::load_checkpoint(*model, dir); });
  EXPECT_NE(cast.find("`steps` is F32 in the file but the model holds Long"), std::string::npos) << cast;
  EXPECT_TRUE(peft_test::equal(model->fc->weight, before));
}

SEEDED_TEST(StreamingLoad, AFileThatShrinksAfterItsHeaderWasReadIsAShortReadNamingFileAndTensor) {
  const auto path = peft_test::scratch_dir("stream_shrink") / "model.safetensors";
  peft::save_safetensors(path, {{"w", torch::randn({64})}});
  auto shard = peft::detail::read_shard_header(path);
  ASSERT_EQ(shard.header.entries.size(), 1u);
  fs::resize_file(path, shard.header.data_start + 100);  // 156 of the 256 data bytes gone
  std::vector<char> buf(256);
  const std::string e = error_of([&] {
    shard.file.read_exactly(buf.data(), 256, shard.header.data_start, "tensor `w`");
  });
  EXPECT_NE(e.find(path.string() + ": tensor `w`: short read"), std::string::npos) << e;
  EXPECT_NE(e.find("156 of 256 bytes missing"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { peft::detail::ReadOnlyFile(path.parent_path() / "nope.safetensors"); }).find("no such file"),
            std::string::npos);
}

// ---------------------------------------------------------------- load_causal_lm

SEEDED_TEST(StreamingLoad, LoadCausalLmTakesConfigJsonsDtypeAndDrawsNothing) {
  using peft::models::load_causal_lm;
  const auto dir = peft_test::scratch_dir("stream_config_dtype");
  auto donor = peft::models::make_builtin("tiny-llama", 5);
  peft::models::save_causal_lm(*donor, dir);  // fp32 values, torch_dtype "float32"
  const std::string fp32_config = peft::read_text_file(dir / "config.json");
  auto with_dtype = [&](const std::string& field, const std::string& value) {
    std::string text = fp32_config;
    const auto at = text.find("\"torch_dtype\": \"float32\"");
    EXPECT_NE(at, std::string::npos) << text;
    text.replace(at, std::string("\"torch_dtype\": \"float32\"").size(), "\"" + field + "\": " + value);
    write_bytes(dir / "config.json", text);
  };
  const auto state = global_rng_state();
  auto fp32 = load_causal_lm(dir.string());
  EXPECT_TRUE(peft_test::equal(global_rng_state(), state)) << "loading a directory drew random numbers";
  const auto want = donor->named_parameters();
  for (const auto& p : fp32->named_parameters()) {
    EXPECT_TRUE(peft_test::equal(p.value(), want[p.key()])) << p.key();
    EXPECT_TRUE(p.value().requires_grad()) << p.key();
  }
  EXPECT_TRUE(fp32->is_training());

  with_dtype("torch_dtype", "\"bfloat16\"");  // transformers 4
  auto bf16 = load_causal_lm(dir.string());
  for (const auto& p : bf16->named_parameters()) {
    EXPECT_TRUE(peft_test::equal(p.value(), want[p.key()].to(torch::kBFloat16))) << p.key();
    EXPECT_TRUE(p.value().requires_grad()) << p.key();
  }
  EXPECT_EQ(load_causal_lm(dir.string(), torch::kCPU, torch::kFloat32)->parameters()[0].scalar_type(),
            torch::kFloat32);  // an explicit dtype wins
  with_dtype("dtype", "\"float16\"");  // transformers 5
  EXPECT_EQ(load_causal_lm(dir.string())->parameters()[0].scalar_type(), torch::kFloat16);
  with_dtype("torch_dtype", "null");
  EXPECT_EQ(load_causal_lm(dir.string())->parameters()[0].scalar_type(), torch::kFloat32);
  with_dtype("torch_dtype", "\"int8\"");
  try {
    load_causal_lm(dir.string());
    FAIL() << "no error for torch_dtype int8";
  } catch (const peft::models::ModelConfigError& e) {
    EXPECT_EQ(e.field(), "torch_dtype");
    EXPECT_EQ(e.value(), "\"int8\"");
  }
  EXPECT_EQ(load_causal_lm(dir.string(), torch::kCPU, torch::kBFloat16)->parameters()[0].scalar_type(),
            torch::kBFloat16);
  // Builtins stay float32 unless asked.
  EXPECT_EQ(load_causal_lm("builtin:tiny-gpt2")->parameters()[0].scalar_type(), torch::kFloat32);
}
