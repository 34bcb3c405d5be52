// peft-inspect: summarise a PEFT adapter directory (adapter_config.json +
// adapter_model.safetensors) and check it as far as possible without the model:
//
//   peft-inspect [--base BASE] ADAPTER_DIR
//
// Prints the config (peft_type, r, alpha, targets, init, DoRA...), each adapted module with its
// rank and shapes, the parameter count and the file sizes. Checks: config valid, safetensors
// valid, every lora_A has its lora_B (and the reverse) with matching ranks, ranks equal `r`
// (when there is no rank_pattern), DoRA magnitudes present with the right length, floating
// dtypes, finite values, the config checks peft-merge makes (regex fields compile, ranks agree
// with r / rank_pattern and are positive), and — with `--base` — that every module exists in the
// base with fitting shapes (Linear [out, in] or Conv1D [in, out]). base_model_name_or_path is
// only reported (exists or not): a config does not choose files for peft-inspect to read.
//
// Exit codes: 0 fine; 1 any problem (one line on stderr); 2 usage. Built without LibTorch (only
// the header-level safetensors reader), so it starts in milliseconds.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "peft/error.hpp"
#include "peft/config/config_json.hpp"
#include "peft/detail/strings.hpp"
#include "peft/format/safetensors_dtype.hpp"
#include "peft/format/safetensors_header.hpp"
#include "peft/format/adapter_keys.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/targeting/matching.hpp"
#include "peft/targeting/patterns.hpp"
#include "peft/warnings.hpp"

namespace fs = std::filesystem;

namespace {

/// A read-only private mapping of a whole file (empty files map to nothing).
class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) {
    std::uint64_t size = 0;
    const int fd = peft::open_regular_file(path, &size);  // a FIFO is refused, not waited on
    size_ = static_cast<std::size_t>(size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw peft::SerializationError(path.string() + ": cannot map (" + std::strerror(errno) + ")");
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_ ? data_ : ""; }
  std::size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

using peft::detail::shape_string;

bool is_float(const std::string& dtype) {
  const peft::SafetensorsDtype* d = peft::find_safetensors_dtype(dtype);
  return d && d->floating;
}

/// Index of the first NaN/Inf element of a floating tensor's little-endian bytes, or -1.
std::int64_t first_non_finite(const peft::SafetensorsEntry& e, const char* data) {
  const char* p = data + e.begin;
  const std::uint64_t n = e.numel();
  for (std::uint64_t i = 0; i < n; ++i) {
    bool bad = false;
    if (e.dtype == "F32") {
      std::uint32_t u;
      std::memcpy(&u, p + 4 * i, 4);
      bad = (u & 0x7f800000u) == 0x7f800000u;
    } else if (e.dtype == "F64") {
      std::uint64_t u;
      std::memcpy(&u, p + 8 * i, 8);
      bad = (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
    } else if (e.dtype == "F16") {
      std::uint16_t u;
      std::memcpy(&u, p + 2 * i, 2);
      bad = (u & 0x7c00u) == 0x7c00u;
    } else if (e.dtype == "BF16") {
      std::uint16_t u;
      std::memcpy(&u, p + 2 * i, 2);
      bad = (u & 0x7f80u) == 0x7f80u;
    }
    if (bad) return static_cast<std::int64_t>(i);
  }
  return -1;
}

struct Module {
  const peft::SafetensorsEntry* a = nullptr;
  const peft::SafetensorsEntry* b = nullptr;
  const peft::SafetensorsEntry* b_bias = nullptr;
  const peft::SafetensorsEntry* magnitude = nullptr;
};

[[noreturn]] void fail(const fs::path& file, const std::string& problem) {
  throw peft::SerializationError(file.string() + ": " + problem);
}

/// The base model file given with --base (a directory means its model.safetensors).
std::optional<fs::path> find_base(const std::string& flag) {
  std::error_code ec;
  if (flag.empty()) return std::nullopt;
  fs::path p = flag;
  if (fs::is_directory(p, ec)) p /= "model.safetensors";
  if (!fs::is_regular_file(p, ec)) throw peft::SerializationError(flag + ": --base is not a safetensors file");
  return p;
}

/// What base_model_name_or_path names, told without reading it: the adapter's config is not
/// trusted to choose a file for us to open (it could name /etc/shadow).
std::string base_hint(const fs::path& dir, const peft::LoraConfig& cfg) {
  if (!cfg.base_model_name_or_path || cfg.base_model_name_or_path->empty())
    return "not given; shapes not checked (pass --base BASE to check them)";
  std::error_code ec;
  for (const fs::path& p : {dir / *cfg.base_model_name_or_path, fs::path(*cfg.base_model_name_or_path)})
    if (fs::exists(p, ec))
      return "base_model_name_or_path exists on this machine (" + p.string() +
             "); shapes not checked (pass --base " + p.string() + " to check them)";
  return "not found on this machine; shapes not checked (pass --base BASE to check them)";
}

/// The base weight of adapted module `m`: `<m>.weight` or `<m>.base_layer.weight`, also without
/// the first component (a PEFT GPT-2 adapter names `transformer.h.0...`, the hub's gpt2
/// checkpoint `h.0...`). nullptr when absent.
const peft::SafetensorsEntry* base_weight(const std::map<std::string, const peft::SafetensorsEntry*>& weights,
                                          const std::string& m) {
  const auto dot = m.find('.');
  for (const std::string& name : {m, dot == std::string::npos ? m : m.substr(dot + 1)})
    for (const char* suffix : {".weight", ".base_layer.weight"}) {
      const auto it = weights.find(name + suffix);
      if (it != weights.end()) return it->second;
    }
  return nullptr;
}

int inspect(const fs::path& dir, const std::string& base_flag) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw peft::SerializationError(dir.string() + ": not a directory");
  peft::ScopedWarningCapture warnings;
  const peft::LoraConfig cfg = peft::load_adapter_config(dir);
  const fs::path wpath = dir / "adapter_model.safetensors";
  if (!fs::exists(wpath, ec)) fail(wpath, "no such file");
  const MappedFile wfile(wpath);
  const peft::SafetensorsHeader header = peft::parse_safetensors_header(wfile.data(), wfile.size(), wpath.string());
  const char* data = wfile.data() + header.data_start;

  namespace keys = peft::adapter_keys;
  const std::string root = keys::kRoot;
  std::map<std::string, Module> modules;
  std::vector<const peft::SafetensorsEntry*> other;
  std::uint64_t params = 0;
  for (const auto& e : header.entries) {
    params += e.numel();
    if (const auto lora = keys::parse_lora_key(e.name)) {
      Module& mod = modules[lora->module];
      (lora->tensor == keys::LoraTensor::A        ? mod.a
       : lora->tensor == keys::LoraTensor::B      ? mod.b
       : lora->tensor == keys::LoraTensor::B_bias ? mod.b_bias
                                                  : mod.magnitude) = &e;
    } else {
      other.push_back(&e);
    }
    if (!is_float(e.dtype))
      fail(wpath, "tensor `" + e.name + "` has dtype " + e.dtype + "; adapter weights must be floating point");
    const std::int64_t bad = first_non_finite(e, data);
    if (bad >= 0)
      fail(wpath, "tensor `" + e.name + "` holds a NaN or infinite value at element " + std::to_string(bad));
  }
  if (modules.empty()) fail(wpath, "holds no LoRA weights (no `base_model.model.*.lora_A.weight` keys)");

  // The config checks peft-merge makes: every regex field compiles (target_modules,
  // exclude_modules, modules_to_save, layers_pattern, rank/alpha_pattern), ranks positive.
  (void)peft::TargetMatcher(cfg);
  const peft::LayerSettingsResolver settings(cfg);
  for (const auto& [m, mod] : modules) {
    const std::string key = root + m;
    if (!mod.a) fail(wpath, "`" + key + ".lora_A.weight` is missing (the file has its lora_B)");
    if (!mod.b) fail(wpath, "`" + key + ".lora_B.weight` is missing (the file has its lora_A)");
    if (mod.a->shape.size() != 2 || mod.b->shape.size() != 2)
      fail(wpath, "`" + key + "` lora_A " + shape_string(mod.a->shape) + " / lora_B " + shape_string(mod.b->shape) +
                      " are not matrices (Linear/Conv1D adapters only)");
    const std::int64_t r = mod.a->shape[0];
    if (mod.b->shape[1] != r)
      fail(wpath, "`" + key + "`: lora_A " + shape_string(mod.a->shape) + " has rank " + std::to_string(r) +
                      " but lora_B " + shape_string(mod.b->shape) + " has rank " + std::to_string(mod.b->shape[1]));
    const peft::LayerSettings s = settings(m);  // ConfigError for a rank <= 0, like peft-merge
    if (r != s.r)
      fail(wpath, "`" + key + ".lora_A.weight` has rank " + std::to_string(r) + " but adapter_config.json gives r = " +
                      std::to_string(s.r) + " for this module" +
                      (s.rank_pattern_key ? " (rank_pattern \"" + *s.rank_pattern_key + "\")" : ""));
    if (cfg.use_dora && !mod.magnitude)
      fail(wpath, "`" + key + ".lora_magnitude_vector` is missing (adapter_config.json says use_dora = true)");
    if (!cfg.use_dora && mod.magnitude)
      fail(wpath, "`" + key + ".lora_magnitude_vector` is present but adapter_config.json says use_dora = false");
    if (mod.magnitude && mod.magnitude->shape != std::vector<std::int64_t>{mod.b->shape[0]})
      fail(wpath, "`" + key + ".lora_magnitude_vector` has shape " + shape_string(mod.magnitude->shape) +
                      ", lora_B needs [" + std::to_string(mod.b->shape[0]) + "]");
  }

  // Base model shapes: a Linear weight is [out, in], a GPT-2 Conv1D one [in, out]; as in
  // peft-merge, the shape decides per module (PEFT saves the fan_in_fan_out its last layer left).
  std::string base_line = base_hint(dir, cfg);
  const auto base = find_base(base_flag);
  if (base) {
    const MappedFile bfile(*base);
    const auto bheader = peft::parse_safetensors_header(bfile.data(), bfile.size(), base->string());
    std::map<std::string, const peft::SafetensorsEntry*> weights;
    for (const auto& e : bheader.entries) weights[e.name] = &e;
    for (const auto& [m, mod] : modules) {
      const peft::SafetensorsEntry* bw = base_weight(weights, m);
      if (!bw)
        fail(wpath, "module `" + m + "` is not in the base model " + base->string() +
                        " (is this adapter for another base model?)");
      const auto& w = bw->shape;
      if (w.size() != 2) fail(wpath, "base weight `" + bw->name + "` " + shape_string(w) + " is not a matrix");
      const std::int64_t in = mod.a->shape[1], out = mod.b->shape[0];
      if (!(w[0] == out && w[1] == in) && !(w[0] == in && w[1] == out))
        fail(wpath, "`" + root + m + "` lora_A " + shape_string(mod.a->shape) + " / lora_B " + shape_string(mod.b->shape) +
                        " do not fit the base weight `" + bw->name + "` " + shape_string(w) + " of " + base->string() +
                        " (is this adapter for another base model?)");
    }
    base_line = base->string() + " (all " + std::to_string(modules.size()) + " modules fit)";
  }

  // Everything checked: print the summary (stdout only on success).
  const peft::JsonValue j = peft::to_json_value(cfg);
  auto field = [&](const char* k) {
    const peft::JsonValue* v = j.find(k);
    return v ? v->dump() : std::string("-");
  };
  std::ostringstream o;
  o << "adapter: " << dir.string() << "\n";
  for (const char* k : {"peft_type", "task_type", "r", "lora_alpha", "use_rslora", "target_modules",
                        "exclude_modules", "init_lora_weights", "use_dora", "lora_dropout", "bias",
                        "fan_in_fan_out", "modules_to_save", "rank_pattern", "alpha_pattern",
                        "base_model_name_or_path", "peft_version"})
    o << "  " << k << ": " << field(k) << "\n";
  o << "base model: " << base_line << "\n";
  o << "modules (" << modules.size() << "):\n";
  for (const auto& [m, mod] : modules) {
    o << "  " << m << "  rank " << mod.a->shape[0] << "  lora_A " << shape_string(mod.a->shape) << "  lora_B "
      << shape_string(mod.b->shape) << "  " << mod.a->dtype;
    if (mod.b_bias) o << "  lora_B.bias " << shape_string(mod.b_bias->shape);
    if (mod.magnitude) o << "  magnitude " << shape_string(mod.magnitude->shape);
    o << "\n";
  }
  if (!other.empty()) {
    o << "other tensors (" << other.size() << "):\n";
    for (const auto* e : other) o << "  " << e->name << "  " << shape_string(e->shape) << "  " << e->dtype << "\n";
  }
  o << "parameters: " << params << "\n";
  o << "files: adapter_model.safetensors " << wfile.size() << " bytes, adapter_config.json "
    << fs::file_size(dir / "adapter_config.json", ec) << " bytes\n";
  for (const auto& w : warnings.messages()) o << "warning: " << w << "\n";
  std::cout << o.str();
  return 0;
}

/// One line: newlines of multi-line messages become spaces.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage = "usage: peft-inspect [--base BASE_MODEL.safetensors] ADAPTER_DIR";
  std::string base, dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage << "\n";
      return 0;
    }
    if (a == "--base" && i + 1 < argc) {
      base = argv[++i];
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << usage << "\n";
      return 2;
    } else if (dir.empty()) {
      dir = a;
    } else {
      std::cerr << usage << "\n";
      return 2;
    }
  }
  if (dir.empty()) {
    std::cerr << usage << "\n";
    return 2;
  }
  try {
    return inspect(dir, base);
  } catch (const std::exception& e) {
    std::cerr << "peft-inspect: " << one_line(e.what()) << "\n";
  } catch (...) {
    std::cerr << "peft-inspect: unknown error\n";
  }
  return 1;
}
