// peft-merge: merge PEFT LoRA adapters into a Hugging Face safetensors checkpoint and write a new
// one, without a model class (like llama.cpp's export-lora, for safetensors):
//
//   peft-merge --base BASE --adapter ADAPTER_DIR [--weight W] [--adapter DIR2 [--weight W2] ...]
//              --out OUT_DIR [--dtype float32|bfloat16|float16] [--fan-in-fan-out auto|true|false]
//              [--quantized-base dequantize|requantize] [--force] [--quiet]
//
// BASE is a HF checkpoint directory (model.safetensors or a sharded model.safetensors.index.json)
// or one .safetensors file. `--weight` scales the adapter named just before it. OUT gets
// model.safetensors (sharded like the input when the input is sharded), and config.json and the
// tokenizer files of BASE. A bitsandbytes 4-bit BASE (`*-bnb-4bit`) gives a dense checkpoint by
// default (`--quantized-base requantize`: 4-bit, PEFT's lossy merge). The maths and every
// decision are documented in include/peft/io/merge_into_checkpoint.hpp.
//
// Output: a summary on stdout; progress on stderr for checkpoints over 64 MiB (not with --quiet).
// Exit codes: 0 merged; 1 any problem (one line on stderr; OUT is left as it was); 2 usage.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/warnings.hpp"

namespace {

const char* kUsage =
    "usage: peft-merge --base BASE --adapter ADAPTER_DIR [--weight W] [--adapter DIR2 [--weight W2] ...]\n"
    "                  --out OUT_DIR [--dtype float32|bfloat16|float16] [--fan-in-fan-out auto|true|false]\n"
    "                  [--quantized-base dequantize|requantize] [--force] [--quiet]\n"
    "  BASE: a Hugging Face checkpoint directory (model.safetensors or model.safetensors.index.json)\n"
    "        or a single .safetensors file";

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

int usage_error(const std::string& problem) {
  std::cerr << "peft-merge: " << problem << "\n" << kUsage << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string base, out, dtype, layout = "auto", quantized_base;
  std::vector<peft::MergeAdapter> adapters;
  bool force = false, quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= argc) return false;
      dst = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::cout << kUsage << "\n";
      return 0;
    } else if (a == "--base") {
      if (!value(base)) return usage_error("--base needs a value");
    } else if (a == "--out") {
      if (!value(out)) return usage_error("--out needs a value");
    } else if (a == "--adapter") {
      if (!value(v)) return usage_error("--adapter needs a value");
      adapters.push_back({v, 1.0});
    } else if (a == "--weight") {
      if (!value(v)) return usage_error("--weight needs a value");
      if (adapters.empty()) return usage_error("--weight must follow the --adapter it applies to");
      try {
        std::size_t used = 0;
        adapters.back().weight = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
      } catch (const std::exception&) {
        return usage_error("--weight " + v + " is not a number");
      }
    } else if (a == "--dtype") {
      if (!value(dtype)) return usage_error("--dtype needs a value");
    } else if (a == "--fan-in-fan-out") {
      if (!value(layout) || (layout != "auto" && layout != "true" && layout != "false"))
        return usage_error("--fan-in-fan-out takes auto, true or false");
    } else if (a == "--quantized-base") {
      if (!value(quantized_base) || (quantized_base != "dequantize" && quantized_base != "requantize"))
        return usage_error("--quantized-base takes dequantize or requantize");
    } else if (a == "--force") {
      force = true;
    } else if (a == "--quiet" || a == "-q") {
      quiet = true;
    } else {
      return usage_error("unknown argument " + a);
    }
  }
  if (base.empty() || out.empty() || adapters.empty())
    return usage_error("--base, --adapter and --out are required");

  try {
    peft::MergeCheckpointOptions options;
    if (!dtype.empty()) options.dtype = peft::parse_merge_dtype(dtype);
    if (layout != "auto") options.fan_in_fan_out = layout == "true";
    if (!quantized_base.empty()) options.quantized_base = peft::parse_quantized_base_merge(quantized_base);
    options.overwrite = force;
    const bool tty = ::isatty(2);
    const auto t0 = std::chrono::steady_clock::now();
    int last_pct = -1;
    if (!quiet)
      options.progress = [&](const peft::MergeProgress& p) {
        if (p.bytes_total < (64u << 20)) return;  // small checkpoints finish before anyone looks
        const int pct = static_cast<int>(100.0 * p.bytes_done / std::max<std::uint64_t>(1, p.bytes_total));
        if (pct == last_pct || (!tty && pct / 10 == last_pct / 10 && p.tensors_done != p.tensors_total)) return;
        last_pct = pct;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char line[256];
        std::snprintf(line, sizeof line, "merging %3d%%  %zu/%zu tensors  %.0f/%.0f MiB  %.1f s", pct,
                      p.tensors_done, p.tensors_total, p.bytes_done / 1048576.0, p.bytes_total / 1048576.0, s);
        std::cerr << (tty ? "\r" : "") << line << (tty && p.tensors_done != p.tensors_total ? "" : "\n")
                  << std::flush;
      };
    peft::ScopedWarningCapture warnings;
    const peft::MergeReport r = peft::merge_checkpoint(base, adapters, out, options);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::size_t lora = 0, dora = 0, bias = 0, replaced = 0;
    for (const auto& m : r.merged)
      (m.what == "lora" ? lora : m.what == "dora" ? dora : m.what == "lora_bias" ? bias : replaced)++;
    std::ostringstream o;
    o << "merged " << adapters.size() << " adapter(s) into " << base << " -> " << out << "\n";
    for (std::size_t i = 0; i < adapters.size(); ++i)
      o << "  adapter " << adapters[i].dir.string() << "  weight " << adapters[i].weight << "\n";
    o << "  weights merged: " << lora << " LoRA, " << dora << " DoRA; biases merged (lora_bias): " << bias
      << "; tensors replaced (bias=all / modules_to_save): " << replaced << "\n";
    o << "  wrote " << r.tensors << " tensors, " << r.bytes << " bytes in " << secs << " s:";
    for (const auto& f : r.files) o << " " << f.string();
    o << "\n";
    for (const auto& n : r.notes) o << "  note: " << n << "\n";
    for (const auto& w : warnings.messages()) o << "  warning: " << w << "\n";
    std::cout << o.str();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "peft-merge: " << one_line(e.what()) << "\n";
  } catch (...) {
    std::cerr << "peft-merge: unknown error\n";
  }
  return 1;
}
