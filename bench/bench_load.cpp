// peft_bench_load: how long load_causal_lm takes on a checkpoint directory and how much memory
// it holds (issue 15). One load per process, so the peak RSS is the load's own:
//
//   peft_bench_load DIR [--dtype float32|bfloat16|float16] [--device cpu|cuda] [--forward N]
//       load DIR (default dtype: its config.json), print wall time and peak RSS (VmHWM), then
//       optionally one forward on N tokens (eval, no grad); `--old-path` (last; Llama only) times
//       the pre-issue-15 way instead: random fp32 init, whole shards mapped, copy, .to(dtype)
//   peft_bench_load --write-8b DIR [--layers L]
//       write an 8B-shaped Llama (hidden 4096, 32 layers, SwiGLU 14336, 32 heads / 8 kv heads,
//       vocab 128256, untied head) in bf16 with N(0, 0.02) values: config.json, 4 shards and
//       model.safetensors.index.json, one tensor in memory at a time (the model itself is built
//       in a SkipInitScope for its names and shapes, which commits no memory)
//
// Timings are printed to stdout (bench/RESULTS.md has the figures and how they were taken).

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors_writer.hpp"
#include "peft/layers/skip_init.hpp"
#include "peft/models/causal_lm.hpp"
#include "peft/models/llama.hpp"

namespace fs = std::filesystem;

namespace {

/// A kB line of /proc/self/status in MiB ("VmHWM" = peak resident set, "VmRSS" = now), or of
/// another /proc file ("AnonHugePages" of smaps_rollup).
double status_mib(const std::string& field, const char* file = "/proc/self/status") {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  return -1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::optional<torch::Dtype> parse_dtype(const std::string& s) {
  if (s == "float32") return torch::kFloat32;
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float16") return torch::kFloat16;
  throw std::runtime_error("--dtype: float32, bfloat16 or float16, not " + s);
}

/// What load_causal_lm did before issue 15, re-enacted with the public API (Llama checkpoints
/// whose keys need no renaming): the model built and randomly initialised in float32, every
/// shard memory-mapped whole (open_hf_checkpoint), each tensor copied in, then .to(dtype).
peft::models::CausalLM old_load(const std::string& dir, torch::Device device, torch::Dtype dtype) {
  const auto config = peft::JsonValue::parse(peft::read_text_file(fs::path(dir) / "config.json"));
  auto model = std::make_shared<peft::models::LlamaForCausalLMImpl>(peft::models::llama_config_from_json(config));
  {
    const auto cp = peft::open_hf_checkpoint(dir);
    auto params = model->named_parameters();
    torch::NoGradGuard no_grad;
    for (const auto& shard : cp.shards)
      for (const auto& [key, t] : shard.tensors) params[key].copy_(t);
  }
  model->to(device, dtype);
  return model;
}

int load(const std::string& dir, std::optional<torch::Dtype> dtype, const torch::Device device, int forward_tokens,
         bool old_path) {
  const double rss0 = status_mib("VmRSS");
  std::uint64_t file_bytes = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") file_bytes += fs::file_size(e.path());
  const auto t0 = std::chrono::steady_clock::now();
  auto model = old_path ? old_load(dir, device, dtype.value_or(torch::kFloat32))
                        : peft::models::load_causal_lm(dir, device, dtype);
  if (old_path) std::printf("load: the pre-issue-15 path (random fp32 init, mapped shards, copy, .to)\n");
  const double load_s = seconds_since(t0);
  std::int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  std::printf("load: %s: %lld parameters in %s, %.3f GB of safetensors\n", dir.c_str(),
              static_cast<long long>(params), c10::toString(model->parameters()[0].scalar_type()),
              static_cast<double>(file_bytes) / 1e9);
  std::printf("load: %.3f s wall; RSS before %.0f MiB, after %.0f MiB (%.0f MiB in huge pages), peak (VmHWM) %.0f MiB "
              "= checkpoint + %.0f MiB\n",
              load_s, rss0, status_mib("VmRSS"), status_mib("AnonHugePages", "/proc/self/smaps_rollup"),
              status_mib("VmHWM"), status_mib("VmHWM") - static_cast<double>(file_bytes) / (1024.0 * 1024.0));
  if (forward_tokens > 0) {
    model->eval();
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(0);
    const auto ids = torch::randint(model->vocab_size(), {1, forward_tokens}, gen, torch::kInt64).to(device);
    const auto t1 = std::chrono::steady_clock::now();
    const auto logits = model->forward(ids);
    const auto last = logits.index({0, -1}).to(torch::kFloat32).cpu();
    std::printf("forward: %d tokens -> logits %s in %.3f s; last-token logits finite: %s, argmax %lld; peak RSS %.0f MiB\n",
                forward_tokens, c10::str(logits.sizes()).c_str(), seconds_since(t1),
                torch::isfinite(last).all().item<bool>() ? "yes" : "NO", static_cast<long long>(last.argmax().item<std::int64_t>()),
                status_mib("VmHWM"));
  }
  return 0;
}

peft::models::LlamaConfig llama_8b_config(std::int64_t layers) {
  peft::models::LlamaConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = false;
  return c;
}

int write_8b(const fs::path& dir, std::int64_t layers) {
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<peft::models::LlamaForCausalLMImpl> model;
  {
    peft::SkipInitScope scope(torch::kBFloat16);  // names and shapes only: nothing committed
    model = std::make_shared<peft::models::LlamaForCausalLMImpl>(llama_8b_config(layers));
  }
  model->to(torch::kBFloat16);
  const auto params = model->named_parameters();
  const auto keys = model->checkpoint_keys();
  // Shards of at most ~5 GB, as transformers' default max_shard_size writes Llama-3-8B.
  constexpr std::uint64_t kShardBytes = 5'000'000'000ULL;
  std::vector<std::vector<std::string>> shards(1);
  std::uint64_t in_shard = 0, total = 0;
  for (const auto& k : keys) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(params[k].numel()) * 2;
    if (in_shard > 0 && in_shard + bytes > kShardBytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(k);
    in_shard += bytes;
    total += bytes;
  }
  fs::create_directories(dir);
  // Values: 1M-element runs of a pool of 64M N(0, 0.02) draws at random offsets (drawing all 8G
  // values takes minutes of CPU; the loader does not care about their statistics).
  auto gen = at::detail::createCPUGenerator(0);
  const std::int64_t kRun = 1 << 20;
  const auto pool = torch::empty({64 << 20}, torch::kBFloat16).normal_(0.0, 0.02, gen);
  auto random_values = [&](torch::IntArrayRef sizes) {
    auto out = torch::empty(sizes, torch::kBFloat16);
    auto flat = out.view({-1});
    for (std::int64_t i = 0; i < flat.numel(); i += kRun) {
      const std::int64_t n = std::min(kRun, flat.numel() - i);
      const std::int64_t from = torch::randint(pool.numel() - n, {1}, gen).item<std::int64_t>();
      flat.narrow(0, i, n).copy_(pool.narrow(0, from, n));
    }
    return out;
  };
  peft::JsonValue weight_map = peft::JsonValue::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<peft::SafetensorsTensorSpec> specs;
    for (const auto& k : shards[s]) specs.push_back({k, torch::kBFloat16, params[k].sizes().vec()});
    peft::SafetensorsWriter writer(dir / name, std::move(specs), {{"format", "pt"}});
    for (const auto& k : shards[s]) {
      const auto& p = params[k];
      const bool norm = k.find("norm.weight") != std::string::npos;
      writer.write(norm ? torch::ones(p.sizes(), torch::kBFloat16) : random_values(p.sizes()));
      weight_map.set(k, std::string(name));
    }
    writer.commit();
    std::printf("write: %s (%zu tensors, %.2f GB) at %.1f s\n", name, shards[s].size(),
                static_cast<double>(writer.bytes()) / 1e9, seconds_since(t0));
    std::fflush(stdout);
  }
  peft::JsonValue meta = peft::JsonValue::object();
  meta.set("total_size", static_cast<std::int64_t>(total));
  peft::JsonValue index = peft::JsonValue::object();
  index.set("metadata", meta);
  index.set("weight_map", weight_map);
  peft::write_file_atomically(dir / "model.safetensors.index.json", index.dump(2));
  peft::write_file_atomically(dir / "config.json", model->config_json());
  std::printf("write: %s: %zu shards, %.2f GB in %.1f s, peak RSS %.0f MiB\n", dir.c_str(), shards.size(),
              static_cast<double>(total) / 1e9, seconds_since(t0), status_mib("VmHWM"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 2 && args[0] == "--write-8b") {
      std::int64_t layers = 32;
      if (args.size() == 4 && args[2] == "--layers") layers = std::stoll(args[3]);
      return write_8b(args[1], layers);
    }
    if (args.empty() || args[0].rfind("--", 0) == 0) {
      std::fprintf(stderr,
                   "usage: peft_bench_load DIR [--dtype float32|bfloat16|float16] [--device cpu|cuda] [--forward N] [--old-path]\n"
                   "       peft_bench_load --write-8b DIR [--layers L]\n");
      return 2;
    }
    std::optional<torch::Dtype> dtype;
    torch::Device device = torch::kCPU;
    int forward_tokens = 0;
    bool old_path = false;
    if (args.size() >= 2 && args.back() == "--old-path") {
      old_path = true;
      args.pop_back();
    }
    for (std::size_t i = 1; i + 1 < args.size(); i += 2) {
      if (args[i] == "--dtype") dtype = parse_dtype(args[i + 1]);
      else if (args[i] == "--device") device = torch::Device(args[i + 1]);
      else if (args[i] == "--forward") forward_tokens = std::stoi(args[i + 1]);
      else throw std::runtime_error("unknown option " + args[i]);
    }
    return load(args[0], dtype, device, forward_tokens, old_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peft_bench_load: %s\n", e.what());
    return 1;
  }
}
