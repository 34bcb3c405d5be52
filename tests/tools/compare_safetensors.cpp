// peft_compare_safetensors A B TOL: the largest absolute difference per tensor of two
// safetensors files (same names, shapes and dtypes required). Exit 0 when every difference is
// <= TOL, 1 otherwise (or when the files do not match up), 2 for usage errors. Used by
// tests/distributed_cli.sh to compare adapters trained on different numbers of ranks.

#include <cstdlib>
#include <iostream>
#include <string>

#include "peft/io/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: peft_compare_safetensors A.safetensors B.safetensors TOLERANCE\n";
    return 2;
  }
  try {
    const double tol = std::stod(argv[3]);
    const auto a = peft::load_safetensors(argv[1]);
    const auto b = peft::load_safetensors(argv[2]);
    if (a.tensors.size() != b.tensors.size()) {
      std::cout << "tensor count differs: " << a.tensors.size() << " vs " << b.tensors.size() << "\n";
      return 1;
    }
    double worst = 0.0;
    for (const auto& [name, ta] : a.tensors) {
      const torch::Tensor* tb = b.find(name);
      if (!tb || tb->sizes() != ta.sizes() || tb->dtype() != ta.dtype()) {
        std::cout << name << ": missing or different shape/dtype in " << argv[2] << "\n";
        return 1;
      }
      const double d = ta.numel() ? (ta.to(torch::kFloat64) - tb->to(torch::kFloat64)).abs().max().item<double>() : 0.0;
      worst = std::max(worst, d);
      if (!(d <= tol)) std::cout << name << ": max |a - b| = " << d << " > " << tol << "\n";
    }
    std::cout << "max |a - b| over " << a.tensors.size() << " tensors: " << worst << " (tolerance " << tol << ")\n";
    return worst <= tol ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "peft_compare_safetensors: " << e.what() << "\n";
    return 1;
  }
}
