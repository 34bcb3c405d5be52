// peft_hf_finetune: LoRA fine-tuning of a Hugging Face causal LM checkpoint in ~60 lines. Shows:
// loading a HF directory (config.json + model.safetensors, GPT-2 or Llama) with
// peft::models::load_causal_lm, tokenising a text file with the model's own tokenizer
// (peft::text::load_tokenizer), PEFT's default targets for the model type, a few AdamW steps on
// the adapter only, held-out loss before/after, and saving the adapter in PEFT's format (loadable
// by Python PEFT, mergeable with peft-merge).
//
//   ./peft_hf_finetune [MODEL_DIR | builtin:tiny-llama | builtin:tiny-gpt2] [TEXT_FILE] [OUT_DIR] [STEPS]
//
// With no arguments: builtin:tiny-llama (random weights, byte tokenizer) on the shipped corpus
// data/corpus/part_b.txt, 40 steps, adapter written to a temporary directory.

#include <peft/peft.hpp>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#ifndef PEFT_EXAMPLES_CORPUS
#define PEFT_EXAMPLES_CORPUS "data/corpus/part_b.txt"
#endif

namespace {
/// Mean loss over the held-out blocks, adapters as they are, no gradients.
double heldout_loss(peft::models::CausalLMImpl& model, const torch::Tensor& blocks) {
  torch::NoGradGuard g;
  model.eval();
  double sum = 0;
  const int64_t n = std::min<int64_t>(blocks.size(0), 16);
  for (int64_t i = 0; i < n; ++i) {
    const auto ids = blocks[i].unsqueeze(0);
    sum += peft::models::causal_lm_loss(model.forward(ids), ids).item<double>();
  }
  model.train();
  return sum / n;
}
}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const std::string model_path = argc > 1 ? argv[1] : "builtin:tiny-llama";
  const fs::path text = argc > 2 ? fs::path(argv[2]) : fs::path(PEFT_EXAMPLES_CORPUS);
  const fs::path out = argc > 3 ? fs::path(argv[3]) : fs::temp_directory_path() / "peft_hf_finetune";
  const int64_t steps = argc > 4 ? std::stoll(argv[4]) : 40, batch = 8, seq_len = 64;
  try {
    torch::manual_seed(0);
    auto model = peft::models::load_causal_lm(model_path, torch::kCPU, torch::kFloat32);  // fp32, CPU
    auto tokenizer = peft::text::load_tokenizer(model_path.rfind("builtin:", 0) == 0 ? fs::path() : fs::path(model_path));
    std::cout << "model " << model_path << " (" << model->model_type() << ", vocab " << model->vocab_size()
              << "), tokenizer " << tokenizer->kind() << "\n";

    // Text -> token ids -> blocks of seq_len+1 tokens; the last 10% are held out.
    const auto ids = peft::text::encode_documents(*tokenizer, peft::text::load_documents(text));
    const auto blocks = peft::text::make_blocks(ids, std::min(seq_len, model->max_positions() - 1), 0.1);
    peft::text::BatchSampler sampler(blocks.train, batch, /*seed=*/0);
    std::cout << text.string() << ": " << ids.size() << " tokens, " << blocks.train.size(0) << " train / "
              << blocks.heldout.size(0) << " held-out blocks\n";

    // LoRA with PEFT's default targets for this model type (q_proj/v_proj for llama, c_attn for gpt2).
    peft::LoraConfig cfg;
    cfg.r = 8;
    cfg.lora_alpha = 16;
    cfg.task_type = peft::TaskType::CAUSAL_LM;
    peft::LoraModelOptions options;
    options.plan.model_type = model->model_type();
    options.plan.output_layer = "lm_head";
    auto pm = peft::get_peft_model(model, cfg, "default", options);
    pm.print_trainable_parameters(std::cout);

    const double before = heldout_loss(*model, blocks.heldout);
    torch::optim::AdamW opt(pm.trainable_parameters(), torch::optim::AdamWOptions(2e-3));
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t step = 1; step <= steps; ++step) {
      const auto ids_batch = sampler.next();
      auto loss = peft::models::causal_lm_loss(*model, ids_batch, ids_batch);  // chunked over the vocabulary
      opt.zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(pm.trainable_parameters(), 1.0);
      opt.step();
      if (step % 10 == 0) std::cout << "step " << step << "  loss " << loss.item<double>() << "\n";
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double after = heldout_loss(*model, blocks.heldout);
    std::cout << "held-out loss " << before << " -> " << after << "  (" << steps * batch * seq_len / secs
              << " tokens/s)\n";

    peft::save_pretrained(pm, out);
    std::cout << "adapter saved to " << out.string() << " (merge: peft-merge --base MODEL_DIR --adapter "
              << out.string() << " --out MERGED_DIR)\n";
    return after < before ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "peft_hf_finetune: " << e.what() << "\n";
    return 1;
  }
}
