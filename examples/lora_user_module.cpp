// peft_lora_user_module: LoRA on your own module — an attention-like block whose projections are
// peft::Linear members. Shows: choosing some members (q_proj, v_proj) by name, training only the
// adapters, saving the adapter in PEFT's format next to a base checkpoint, and reloading both into
// a *fresh* model whose outputs then equal the trained one's.
//
//   ./peft_lora_user_module [OUT_DIR]     (default: a temporary directory)

#include <peft/peft.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <iostream>

// A single-head self-attention block with a feed-forward part. Use peft::Linear (same constructor
// and members as torch::nn::Linear) for every layer you may want to adapt: get_peft_model adds
// the adapters inside those layers, so this forward() runs them without any change.
struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(int64_t d)
      : q_proj(register_module("q_proj", peft::Linear(d, d))),
        k_proj(register_module("k_proj", peft::Linear(d, d))),
        v_proj(register_module("v_proj", peft::Linear(d, d))),
        o_proj(register_module("o_proj", peft::Linear(d, d))),
        up(register_module("up", peft::Linear(d, 4 * d))),
        down(register_module("down", peft::Linear(4 * d, d))),
        scale(1.0 / std::sqrt(static_cast<double>(d))) {}

  torch::Tensor forward(const torch::Tensor& x) {  // x [B, T, d]
    auto att = torch::softmax(torch::matmul(q_proj(x), k_proj(x).transpose(1, 2)) * scale, -1);
    auto h = x + o_proj(torch::matmul(att, v_proj(x)));
    return h + down(torch::gelu(up(h)));
  }
  peft::Linear q_proj, k_proj, v_proj, o_proj, up, down;
  double scale;
};
TORCH_MODULE(Block);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path out = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "peft_lora_user_module";
  fs::remove_all(out);
  const int64_t d = 32;

  torch::manual_seed(0);
  Block block(d);
  // The base weights, as a user would have them on disk (a HF-style safetensors checkpoint).
  std::vector<std::pair<std::string, torch::Tensor>> base_state;
  for (const auto& p : block->named_parameters()) base_state.emplace_back(p.key(), p.value());
  peft::save_safetensors(out / "base.safetensors", base_state);

  // A task for the adapters: imitate another random block.
  Block teacher(d);
  auto x = torch::randn({16, 8, d});
  torch::Tensor target;
  {
    torch::NoGradGuard g;
    target = teacher(x);
  }

  peft::LoraConfig cfg;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = {"q_proj", "v_proj"};  // suffix match: only these two members get LoRA
  auto pm = peft::get_peft_model(block, cfg);
  pm.print_trainable_parameters(std::cout);
  std::cout << "adapted:";
  for (const auto& k : pm.targeted_module_names()) std::cout << " " << k;
  std::cout << "\n";

  torch::optim::AdamW opt(pm.trainable_parameters(), torch::optim::AdamWOptions(3e-3));
  for (int step = 0; step <= 100; ++step) {
    auto loss = torch::mse_loss(block(x), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 25 == 0) std::cout << "step " << step << "  loss " << loss.item<double>() << "\n";
  }
  block->eval();
  peft::save_pretrained(pm, out / "adapter");  // adapter_config.json + adapter_model.safetensors
  std::cout << "saved " << (out / "adapter").string() << "\n";

  // Later, elsewhere: a fresh model, the base checkpoint, then the adapter.
  torch::manual_seed(123);  // different random init: everything must come from the files
  Block fresh(d);
  peft::load_checkpoint(*fresh, out / "base.safetensors");
  auto loaded = peft::from_pretrained(fresh.ptr(), out / "adapter");
  fresh->eval();

  torch::NoGradGuard g;
  const double diff = (fresh(x) - block(x)).abs().max().item<double>();
  std::cout << "reloaded model matches the trained one: max |diff| = " << diff << "\n";
  return diff < 1e-6 ? 0 : 1;
}
