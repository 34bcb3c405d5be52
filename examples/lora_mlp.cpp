// peft_lora_mlp: LoRA on a user-defined module. Declare the layers you may adapt as peft::Linear
// (same constructor and members as torch::nn::Linear); get_peft_model attaches adapters in place,
// so your own forward() — which calls fc1(x), fc2(x) — runs them.
//
// Trains only the adapters to fit a rotated copy of the frozen base, then merges them.

#include <peft/peft.hpp>
#include <torch/torch.h>

#include <iostream>

struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc1(register_module("fc1", peft::Linear(32, 64))),
        fc2(register_module("fc2", peft::Linear(64, 32))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  peft::Linear fc1, fc2;
};
TORCH_MODULE(Net);

int main() {
  torch::manual_seed(0);
  Net net;
  Net teacher;  // the function to learn: another random net of the same shape
  auto x = torch::randn({256, 32});
  torch::Tensor target;
  {
    torch::NoGradGuard g;
    target = teacher(x);
  }

  peft::LoraConfig cfg;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = {"fc1", "fc2"};
  auto peft_model = peft::get_peft_model(net, cfg);
  peft_model.print_trainable_parameters(std::cout);

  torch::optim::AdamW opt(peft_model.trainable_parameters(), torch::optim::AdamWOptions(1e-2));
  for (int step = 0; step <= 200; ++step) {
    auto loss = torch::mse_loss(net(x), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 50 == 0) std::cout << "step " << step << "  loss " << loss.item<double>() << '\n';
  }

  net->eval();
  torch::NoGradGuard g;
  auto with_adapter = net(x);
  peft_model.merge_and_unload();  // plain Linear weights again, adapters folded in
  const double diff = (net(x) - with_adapter).abs().max().item<double>();
  std::cout << "merged model matches the adapted one: max |diff| = " << diff << '\n';
  return diff < 1e-4 ? 0 : 1;
}
