// peft_multi_adapter_serving: one frozen base model serving several LoRA adapters loaded from
// disk. Shows: load_adapter under a name, switching adapters per request (set_adapter, cheap: no
// weights change), a mixed batch where each row uses its own adapter (mixed_batch, "__base__" =
// no adapter), disable_adapter() for the base model's output, and what each costs.
//
//   ./peft_multi_adapter_serving [WORK_DIR]     (default: a temporary directory)
//
// The adapters are made up here (random "trained" weights) and saved first so that the serving
// part reads them from disk exactly as it would read adapters trained elsewhere.

#include <peft/peft.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t d, int64_t h)
      : fc1(register_module("fc1", peft::Linear(d, h))), fc2(register_module("fc2", peft::Linear(h, d))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  peft::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path work = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "peft_multi_adapter_serving";
  fs::remove_all(work);
  const int64_t d = 256, h = 1024;
  const std::vector<std::string> names = {"support", "legal", "poetry"};

  // ---- made elsewhere: three adapters with different targets and ranks, saved in PEFT format ----
  {
    torch::manual_seed(0);
    Mlp trainer_model(d, h);
    for (std::size_t i = 0; i < names.size(); ++i) {
      peft::LoraConfig cfg;
      cfg.r = 4 << i;  // 4, 8, 16
      cfg.lora_alpha = 16;
      cfg.target_modules = i == 1 ? std::vector<std::string>{"fc2"} : std::vector<std::string>{"fc1", "fc2"};
      auto pm = peft::get_peft_model(trainer_model, cfg, names[i]);
      {
        torch::NoGradGuard g;  // stand-in for training: lora_B is zero at init
        for (auto& [key, layer] : pm.lora_layers()) layer->lora_B(names[i])->weight.normal_(0, 0.05);
      }
      peft::save_pretrained(pm, work, {names[i]});  // a non-default adapter X goes to work/X/
      pm.unload();  // back to the plain base for the next one
    }
  }

  // ---- the server: one base model, adapters loaded by name ----
  torch::manual_seed(0);
  Mlp model(d, h);  // the same base weights (a real server would load_checkpoint them)
  model->eval();
  peft::LoraModel server(model.ptr(), peft::LoraModelOptions{});
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& n : names) peft::load_adapter(server, work / n, n);
  std::cout << "loaded " << names.size() << " adapters in " << ms_since(t0) << " ms\n";

  torch::NoGradGuard no_grad;
  const auto x = torch::randn({3, d});  // three requests
  std::map<std::string, torch::Tensor> single;
  t0 = std::chrono::steady_clock::now();
  for (const auto& n : names) {
    server.set_adapter(n);  // per request: only selects which adapter runs
    single[n] = model(x);
  }
  std::cout << "one forward per adapter (switching each time): " << ms_since(t0) / names.size() << " ms each\n";
  {
    auto off = server.disable_adapter();  // the base model's own output while `off` lives
    single["__base__"] = model(x);
  }

  // One mixed batch: row i goes through adapter rows[i].
  const std::vector<std::string> rows = {"legal", "__base__", "poetry"};
  torch::Tensor mixed;
  t0 = std::chrono::steady_clock::now();
  {
    auto scope = server.mixed_batch(rows);
    mixed = model(x);
  }
  std::cout << "mixed batch of " << rows.size() << " rows: " << ms_since(t0) << " ms\n";

  double worst = 0.0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double diff = (mixed[i] - single[rows[i]][i]).abs().max().item<double>();
    std::cout << "  row " << i << " (" << rows[i] << ") equals its single-adapter output: max |diff| = " << diff
              << "\n";
    worst = std::max(worst, diff);
  }
  for (const auto& n : names)
    std::cout << "  " << n << " differs from the base by " << (single[n] - single["__base__"]).abs().max().item<double>()
              << "\n";
  return worst < 1e-5 ? 0 : 1;
}
