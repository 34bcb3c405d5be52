// peft_lora_cnn: LoRA on the layer types of a small vision-style network — an Embedding input
// (a grid of token ids, one learned vector per cell) and a stack of Conv2d layers, with a Linear
// head trained in full (modules_to_save). The network is written with *stock* torch layers, the
// convolutions inside a torch::nn::Sequential: get_peft_model swaps them for peft::Conv2d in place
// (sharing their tensors); the embedding is a peft::Embedding member, as a member holder must be.
//
// It writes everything a Python user needs to check the result with PEFT
// (tests/python/compare_cnn_example.py loads it onto the same torch.nn architecture):
//   OUT/base/model.safetensors   the base weights before fine-tuning (the module's own names)
//   OUT/adapter/                 adapter_config.json + adapter_model.safetensors (PEFT's format)
//   OUT/io.safetensors           input_ids [N, H, W] int64 and the adapted model's logits [N, classes]
//
//   ./peft_lora_cnn [OUT_DIR] [lora|dora]      (defaults: a temporary directory, lora)

#include <peft/peft.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <string>

// ids [B, H, W] -> emb [B, H, W, dim] -> [B, dim, H, W] -> features -> mean over H, W -> head.
// Python: nn.Embedding, nn.Sequential(nn.Conv2d(dim, ch, k, padding=k//2), nn.ReLU(), nn.Conv2d(ch,
// ch, k, padding=k//2), nn.ReLU()), nn.Linear(ch, classes) under the same attribute names.
struct GridCnnImpl : torch::nn::Module {
  GridCnnImpl(int64_t vocab, int64_t dim, int64_t channels, int64_t classes, int64_t k = 3)
      : emb(register_module("emb", peft::Embedding(vocab, dim))),
        features(register_module(
            "features",
            torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, channels, k).padding(k / 2)),
                                  torch::nn::ReLU(),
                                  torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, k).padding(k / 2)),
                                  torch::nn::ReLU()))),
        head(register_module("head", torch::nn::Linear(channels, classes))) {}

  torch::Tensor forward(const torch::Tensor& ids) {
    auto x = emb(ids).permute({0, 3, 1, 2});
    x = features->forward(x);
    return head(x.mean({2, 3}));
  }
  peft::Embedding emb;           // a member we call directly: declared as the peft layer
  torch::nn::Sequential features;  // stock Conv2d inside: swapped in place by get_peft_model
  torch::nn::Linear head;        // modules_to_save wraps any module, stock ones included
};
TORCH_MODULE(GridCnn);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path out = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "peft_lora_cnn";
  const std::string variant = argc > 2 ? argv[2] : "lora";
  if (variant != "lora" && variant != "dora") {
    std::cerr << "usage: peft_lora_cnn [OUT_DIR] [lora|dora]\n";
    return 2;
  }
  fs::remove_all(out);
  const int64_t vocab = 24, dim = 8, channels = 16, classes = 4, grid = 6, n = 256;

  torch::manual_seed(0);
  GridCnn model(vocab, dim, channels, classes);
  peft::save_model(*model, out / "base");  // the "pretrained" weights, as a user would have them

  // The task: reproduce the logits of another random network of the same shape (distillation).
  GridCnn teacher(vocab, dim, channels, classes);
  auto ids = torch::randint(vocab, {n, grid, grid}, torch::kLong);
  torch::Tensor target;
  {
    torch::NoGradGuard g;
    target = teacher(ids);
  }

  peft::LoraConfig cfg;
  cfg.r = 4;
  cfg.lora_alpha = 8;
  cfg.use_dora = variant == "dora";
  cfg.target_modules = {"emb", "features.0", "features.2"};  // the embedding and both convolutions
  cfg.modules_to_save = std::vector<std::string>{"head"};
  auto pm = peft::get_peft_model(model, cfg);
  pm.print_trainable_parameters(std::cout);
  std::cout << "adapted:";
  for (const auto& k : pm.targeted_module_names()) std::cout << " " << k;
  std::cout << "\n";

  model->train();
  torch::optim::AdamW opt(pm.trainable_parameters(), torch::optim::AdamWOptions(5e-3));
  double first = 0, last = 0;
  for (int step = 0; step <= 150; ++step) {
    auto loss = torch::mse_loss(model(ids), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
    if (step % 50 == 0) std::cout << "step " << step << "  loss " << loss.item<double>() << "\n";
  }
  model->eval();
  peft::save_pretrained(pm, out / "adapter");

  torch::NoGradGuard g;
  auto probe = ids.narrow(0, 0, 32);
  auto logits = model(probe);
  peft::save_safetensors(out / "io.safetensors", {{"input_ids", probe}, {"logits", logits.contiguous()}});
  const double agree = (model(ids).argmax(-1) == target.argmax(-1)).to(torch::kDouble).mean().item<double>();
  std::cout << "loss " << first << " -> " << last << ", same top class as the teacher: " << agree << "\n"
            << "saved " << out.string() << " (check with tests/python/compare_cnn_example.py)\n";
  return last < first ? 0 : 1;
}
