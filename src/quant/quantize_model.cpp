// Model-level QLoRA (quant/quantize_model.hpp).
#include "peft/quant/quantize_model.hpp"

#include <torch/torch.h>

#include "peft/error.hpp"
#include "peft/layers/conv1d.hpp"
#include "peft/layers/linear.hpp"
#include "peft/warnings.hpp"

namespace peft {

QuantType4bit bnb_quant_type(const BitsAndBytesConfig& cfg) {
  cfg.validate();
  return parse_quant_type_4bit(cfg.bnb_4bit_quant_type, "BitsAndBytesConfig", "bnb_4bit_quant_type");
}

torch::ScalarType bnb_compute_dtype(const BitsAndBytesConfig& cfg) {
  cfg.validate();
  std::string s = cfg.bnb_4bit_compute_dtype;
  if (s.rfind("torch.", 0) == 0) s = s.substr(6);
  return s == "bfloat16" ? torch::kBFloat16 : s == "float16" ? torch::kFloat16 : torch::kFloat32;
}

bool keeps_dense(const std::string& module_name, const BitsAndBytesConfig& cfg) {
  for (const auto& s : cfg.skip_modules())
    if (module_name.find(s) != std::string::npos) return true;
  return false;
}

std::vector<std::string> quantize_model_4bit(torch::nn::Module& model, const BitsAndBytesConfig& cfg) {
  cfg.validate();
  if (!cfg.load_in_4bit)
    throw ConfigError::about("BitsAndBytesConfig", "load_in_4bit", "false", "nothing to quantise",
                             "set load_in_4bit: true");
  const auto qt = bnb_quant_type(cfg);
  const auto compute = bnb_compute_dtype(cfg);
  // Check every layer first (floating weights), then quantise: a refusal changes nothing.
  std::vector<std::pair<std::string, LinearImpl*>> todo;
  std::int64_t conv1d = 0;
  for (const auto& item : model.named_modules()) {
    const bool kept = keeps_dense(item.key(), cfg);
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get())) {
      if (kept || lin->quantized()) continue;
      if (!lin->weight.is_floating_point())
        throw ConfigError::about("quantize_model_4bit", item.key() + ".weight",
                                 c10::toString(lin->weight.scalar_type()), "only floating weights can be quantised",
                                 "load the model in float32, bfloat16 or float16");
      if (lin->merged())
        throw ConfigError::about("quantize_model_4bit", item.key(), "merged", "the layer has merged adapters",
                                 "unmerge_adapter() first");
      todo.emplace_back(item.key(), lin);
    } else if (!kept && dynamic_cast<Conv1DImpl*>(item.value().get())) {
      ++conv1d;
    }
  }
  std::vector<std::string> names;
  for (auto& [name, lin] : todo) {
    lin->quantize_4bit_(qt, cfg.blocksize, cfg.bnb_4bit_use_double_quant, compute);
    names.push_back(name);
  }
  if (conv1d)
    warn(std::to_string(conv1d) + " GPT-2 Conv1D layers stay dense: peft-cpp quantises Linear layers only "
         "(transformers would quantise them too).");
  return names;
}

std::int64_t dequantize_model(torch::nn::Module& model, std::optional<torch::ScalarType> dtype) {
  std::int64_t n = 0;
  for (const auto& m : model.modules())
    if (auto* lin = dynamic_cast<LinearImpl*>(m.get()); lin && lin->quantized()) {
      lin->dequantize_(dtype);
      ++n;
    }
  return n;
}

void prepare_model_for_kbit_training(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters()) {
    p.set_requires_grad(false);
    if (p.scalar_type() == torch::kFloat16 || p.scalar_type() == torch::kBFloat16) p.set_data(p.to(torch::kFloat32));
  }
}

QuantizedFootprint quantized_footprint(torch::nn::Module& model) {
  QuantizedFootprint f;
  for (const auto& m : model.modules()) {
    auto* lin = dynamic_cast<LinearImpl*>(m.get());
    if (!lin || !lin->quantized()) continue;
    const auto& st = lin->quant_state()->state;
    ++f.layers;
    f.parameters += st.numel();
    f.code_bytes += lin->weight.numel();
    f.state_bytes += st.state_bytes();
  }
  return f;
}

}  // namespace peft
