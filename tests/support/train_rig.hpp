#pragma once
// A tiny LoRA language model with a resumable sampler and run_training options that save a
// checkpoint every 2 steps: the rig of the training-loop and checkpoint tests.

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "peft/io/adapters.hpp"
#include "peft/layers/linear.hpp"
#include "peft/train/trainer.hpp"

namespace peft_test {

using peft::train::LoopOptions;
using peft::train::LoopResult;
using peft::train::TrainHooks;

struct TinyLmImpl : torch::nn::Module {
  TinyLmImpl()
      : emb(register_module("emb", torch::nn::Embedding(16, 8))),
        hidden(register_module("hidden", peft::Linear(torch::nn::LinearOptions(8, 8)))),
        head(register_module("head", peft::Linear(torch::nn::LinearOptions(8, 16)))) {}
  torch::Tensor forward(const torch::Tensor& ids) { return head(torch::tanh(hidden(emb(ids)))); }
  torch::nn::Embedding emb;
  peft::Linear hidden, head;
};
TORCH_MODULE(TinyLm);

/// Deterministic resumable sampler: batch i is a function of i only.
struct CounterSampler {
  torch::Tensor blocks;
  std::uint64_t i = 0;
  torch::Tensor next() {
    const auto n = blocks.size(0);
    auto idx = torch::tensor({static_cast<std::int64_t>((i * 7) % n), static_cast<std::int64_t>((i * 7 + 3) % n)});
    ++i;
    return blocks.index_select(0, idx);
  }
};

struct TrainRig {
  TinyLm model;
  std::unique_ptr<peft::LoraModel> pm;
  CounterSampler sampler;
  torch::Tensor heldout;
  std::function<void(std::int64_t)> on_batch;  // called with the batch number before it is drawn
  std::int64_t batches = 0;
  peft::train::RunFingerprint fingerprint;  // LoopOptions::run of every run() (empty: none)

  explicit TrainRig(std::uint64_t seed) {
    torch::manual_seed(0);  // same base weights and LoRA init in every "process"
    model = TinyLm();
    peft::LoraConfig c;
    c.r = 2;
    c.lora_alpha = 4;
    c.lora_dropout = 0.25;  // consumes the CPU generator: resume must restore it
    c.target_modules = peft::ModuleSpec({"hidden", "head"});
    pm = std::make_unique<peft::LoraModel>(model.ptr(), c);
    sampler.blocks = torch::arange(0, 16 * 9, torch::kInt64).remainder(16).reshape({16, 9});
    heldout = torch::arange(0, 4 * 9, torch::kInt64).remainder(13).reshape({4, 9});
    torch::manual_seed(static_cast<std::int64_t>(seed));  // differs between "processes"
  }
  TrainHooks hooks() {
    TrainHooks h;
    h.next_batch = [this] {
      if (on_batch) on_batch(batches);
      ++batches;
      return sampler.next();
    };
    h.sampler_state = [this] { return sampler.i; };
    h.restore_sampler = [this](std::uint64_t s) { sampler.i = s; };
    h.loss = [this](const torch::Tensor& b) {
      auto logits = model(b.slice(1, 0, -1));
      return torch::nn::functional::cross_entropy(logits.reshape({-1, 16}), b.slice(1, 1).reshape({-1}));
    };
    h.eval_loss = [this] {
      auto logits = model(heldout.slice(1, 0, -1));
      return torch::nn::functional::cross_entropy(logits.reshape({-1, 16}), heldout.slice(1, 1).reshape({-1})).item<double>();
    };
    return h;
  }
  LoopResult run(const std::filesystem::path& out, std::int64_t steps, std::optional<std::filesystem::path> resume = std::nullopt) {
    LoopOptions o;
    o.training.steps = steps;
    o.training.lr = 0.05;
    o.training.warmup_steps = 2;
    o.training.grad_accum = 2;
    o.training.max_grad_norm = 0.5;
    o.training.eval_every = 3;
    o.training.save_every = 2;
    o.training.log_every = 1;
    o.training.keep_checkpoints = 2;
    o.metrics_path = out / "metrics.jsonl";
    o.svg_path = out / "loss.svg";
    o.checkpoints_dir = out / "checkpoints";
    o.peft_model = pm.get();
    o.resume_from = resume;
    o.run = fingerprint;
    return peft::train::run_training(*model, pm->trainable_parameters(), hooks(), o);
  }
  std::vector<torch::Tensor> adapter() const {
    std::vector<torch::Tensor> out;
    for (const auto& [k, t] : peft::get_peft_model_state_dict(*pm)) out.push_back(t.detach().clone());
    return out;
  }
};

inline bool bit_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

}  // namespace peft_test
