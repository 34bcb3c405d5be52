#include "support/conformance_eva.hpp"

#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "peft/init/eva.hpp"
#include "support/tensor_diff.hpp"

namespace peft_test {
namespace {

template <class V>
std::map<std::string, double> as_map(const peft::PatternMap<V>& p) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : p) out[k] = static_cast<double>(v);
  return out;
}

std::string describe(const std::map<std::string, double>& m) {
  std::ostringstream s;
  for (const auto& [k, v] : m) s << ' ' << k << '=' << v;
  return s.str();
}

void fail(const std::string& what) { throw std::runtime_error(what); }

}  // namespace

void run_eva_and_check(peft::LoraModel& pm, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                       const std::filesystem::path& case_dir, const peft::LoraConfig& saved,
                       const peft::SafetensorsFile& expected) {
  const auto calib = peft::load_safetensors(case_dir / "calibration.safetensors");
  std::map<std::string, torch::Tensor> originals;
  for (auto& [key, layer] : pm.lora_layers()) originals[key] = layer->base_weight().clone();
  peft::initialize_lora_eva_weights(pm, [&](peft::EvaBatch& b) {
    const torch::Tensor* t = calib.find("batch." + std::to_string(b.index));
    if (!t) return false;
    forward(*t);
    return true;
  });

  // The config PEFT saved after EVA.
  const auto& ours = pm.peft_config("default");
  if (as_map(ours.rank_pattern) != as_map(saved.rank_pattern))
    fail("EVA rank_pattern:" + describe(as_map(ours.rank_pattern)) + " vs PEFT" + describe(as_map(saved.rank_pattern)));
  if (as_map(ours.alpha_pattern) != as_map(saved.alpha_pattern))
    fail("EVA alpha_pattern:" + describe(as_map(ours.alpha_pattern)) + " vs PEFT" + describe(as_map(saved.alpha_pattern)));
  if (!(ours.target_modules == saved.target_modules)) fail("EVA target_modules differ from adapter_config.json");

  // init.<m>.*: B = 0, delta = 0, base unchanged; A spans PEFT's principal directions.
  const bool report = std::getenv("PEFT_EVA_REPORT") != nullptr;
  for (auto& [key, layer] : pm.lora_layers()) {
    if (!layer->has_adapter("default")) continue;
    auto need = [&](const std::string& k) -> const torch::Tensor& {
      const torch::Tensor* t = expected.find(k);
      if (!t) fail("expected.safetensors lacks `" + k + "`");
      return *t;
    };
    auto close = [&](const std::string& what, const torch::Tensor& a, const torch::Tensor& b, double atol) {
      const TensorDiff d = compare_close(a.to(torch::kFloat), b.to(torch::kFloat), 0.0, atol);
      if (!d.ok) fail(what + ": " + d.message);
    };
    close("init." + key + ".delta", layer->delta_weight("default"), need("init." + key + ".delta"), 1e-4);
    close("init." + key + ".base_weight", layer->base_weight(), need("init." + key + ".base_weight"), 1e-4);
    close("init." + key + ".base_weight (unchanged)", layer->base_weight(), originals.at(key), 0.0);
    close("init." + key + ".lora_B", layer->lora_B("default")->weight, need("init." + key + ".lora_B"), 0.0);
    // Rows of A are unit principal directions; PEFT's come from the same randomised PCA (seed 42)
    // up to sign. M = A_ours A_ref^T must be a signed identity: |diag| ~ 1 (same component, same
    // order), which also bounds the subspace angle.
    const torch::Tensor A = layer->lora_A("default")->weight.to(torch::kDouble);
    const torch::Tensor R = need("init." + key + ".lora_A").to(torch::kDouble);
    if (A.sizes() != R.sizes()) fail("init." + key + ".lora_A: shape differs (rank redistribution)");
    const torch::Tensor M = torch::mm(A, R.t());
    const double diag = (1.0 - M.diagonal().abs()).abs().max().item<double>();
    const double off = (M.abs() - torch::diag(M.diagonal().abs())).abs().max().item<double>();
    const double principal = (1.0 - torch::linalg_svdvals(M)).abs().max().item<double>();
    if (report)
      std::cerr << "eva " << key << " rank " << A.size(0) << ": max|1-|diag||=" << diag << " max|offdiag|=" << off
                << " max|1-sigma|=" << principal << " max|A - sign*A_ref|="
                << (A - M.diagonal().sign().unsqueeze(1) * R).abs().max().item<double>() << "\n";
    if (!(diag <= 1e-4 && off <= 1e-4))
      fail("init." + key + ".lora_A: rows are not PEFT's principal directions up to sign (max |1-|M_ii|| = " +
           std::to_string(diag) + ", max |M_ij| = " + std::to_string(off) + ")");
  }
}

}  // namespace peft_test
