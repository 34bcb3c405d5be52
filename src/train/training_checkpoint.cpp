// Training checkpoints (peft/train/training_checkpoint.hpp): crash-safe save, load, listing.

#include "peft/train/training_checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <torch/serialize.h>

#include <ATen/Context.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"

namespace peft::train {

namespace {

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += digits[c >> 4], out += digits[c & 15];
  return out;
}
std::string from_hex(const std::string& hex, const std::string& where) {
  auto val = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw SerializationError(where + ": bad hex digit in RNG state");
  };
  if (hex.size() % 2) throw SerializationError(where + ": odd-length RNG state");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(val(hex[2 * i]) * 16 + val(hex[2 * i + 1]));
  return out;
}

/// fsync a file or directory; best effort for directories (some filesystems refuse).
void fsync_path(const std::filesystem::path& p, bool directory) {
  const int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    if (directory) return;
    throw SerializationError(p.string() + ": cannot open to flush");
  }
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0 && !directory) throw SerializationError(p.string() + ": fsync failed");
}

}  // namespace

std::int64_t detail::checkpoint_step(const std::filesystem::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  for (std::size_t i = 5; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (const std::exception&) {
    return -1;
  }
}

std::string rng_state(torch::Device device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  const torch::Tensor t = gen.get_state().contiguous().to(torch::kCPU);
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.numel() * t.element_size()));
}
void set_rng_state(torch::Device device, const std::string& bytes) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  torch::Tensor t = torch::empty({static_cast<std::int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(t);
}

JsonValue TrainerState::to_json() const {
  JsonValue o = JsonValue::object();
  o.set("format", 1);
  o.set("step", step);
  o.set("tokens_seen", tokens_seen);
  o.set("elapsed_s", elapsed_s);
  o.set("sampler_state", std::to_string(sampler_state));  // a string: JSON readers lose uint64 precision
  o.set("cpu_rng_state", to_hex(cpu_rng_state));
  if (!cuda_rng_state.empty()) {
    o.set("cuda_device", cuda_device);
    o.set("cuda_rng_state", to_hex(cuda_rng_state));
  }
  JsonValue::Array m;
  for (const auto& r : metrics) m.push_back(r.to_json());
  o.set("metrics", JsonValue(std::move(m)));
  if (world_size > 1) {
    o.set("world_size", world_size);
    auto hex_array = [](const std::vector<std::string>& states) {
      JsonValue::Array a;
      for (const auto& st : states) a.push_back(JsonValue(to_hex(st)));
      return JsonValue(std::move(a));
    };
    o.set("rank_cpu_rng_states", hex_array(rank_cpu_rng_states));
    if (!rank_cuda_rng_states.empty()) o.set("rank_cuda_rng_states", hex_array(rank_cuda_rng_states));
  }
  return o;
}

TrainerState TrainerState::from_json(const JsonValue& j, const std::string& where) {
  auto need = [&](const char* key) -> const JsonValue& {
    const JsonValue* v = j.find(key);
    if (!v) throw SerializationError(where + ": `" + key + "` missing");
    return *v;
  };
  try {
    TrainerState s;
    s.step = need("step").as_int();
    s.tokens_seen = need("tokens_seen").as_int();
    s.elapsed_s = need("elapsed_s").as_double();
    s.sampler_state = std::stoull(need("sampler_state").as_string());
    s.cpu_rng_state = from_hex(need("cpu_rng_state").as_string(), where);
    if (const JsonValue* c = j.find("cuda_rng_state")) {
      s.cuda_rng_state = from_hex(c->as_string(), where);
      s.cuda_device = need("cuda_device").as_int();
    }
    for (const auto& r : need("metrics").as_array()) s.metrics.push_back(MetricsRecord::from_json(r, where));
    if (const JsonValue* w = j.find("world_size")) {
      s.world_size = w->as_int();
      if (s.world_size < 1) throw SerializationError(where + ": world_size = " + std::to_string(s.world_size) + " < 1");
      auto states = [&](const char* key, std::vector<std::string>& out) {
        const JsonValue* a = j.find(key);
        if (!a) return;
        for (const auto& h : a->as_array()) out.push_back(from_hex(h.as_string(), where));
        if (out.size() != static_cast<std::size_t>(s.world_size))
          throw SerializationError(where + ": `" + key + "` holds " + std::to_string(out.size()) +
                                   " states for world_size " + std::to_string(s.world_size));
      };
      states("rank_cpu_rng_states", s.rank_cpu_rng_states);
      states("rank_cuda_rng_states", s.rank_cuda_rng_states);
    }
    return s;
  } catch (const SerializationError&) {
    throw;
  } catch (const std::exception& e) {
    throw SerializationError(where + ": malformed trainer state (" + e.what() + ")");
  }
}

std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::int64_t n = detail::checkpoint_step(e.path());
    if (n >= 0 && fs::is_regular_file(e.path() / "trainer_state.json", ec)) found.emplace_back(n, e.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::filesystem::path save_training_checkpoint(const std::filesystem::path& dir, const LoraModel& pm,
                                               torch::optim::Optimizer& optimizer, const TrainerState& state,
                                               std::int64_t keep) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string name = "step-" + std::to_string(state.step);
  const std::string pid = std::to_string(static_cast<long>(::getpid()));
  const fs::path tmp = dir / (".tmp-" + name + "-" + pid);
  const fs::path final_dir = dir / name;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw SerializationError(tmp.string() + ": cannot create (" + ec.message() + ")");
  try {
    save_pretrained(pm, tmp, {"default"});
    torch::save(optimizer, (tmp / "optimizer.pt").string());
    fsync_path(tmp / "optimizer.pt", false);
    write_file_atomically(tmp / "trainer_state.json", state.to_json().dump(1) + "\n");
    fsync_path(tmp, true);
    if (fs::exists(final_dir, ec)) {
      // Same step saved again (an interrupted run stopping where a periodic save happened):
      // move the old one aside first so `step-N` is never missing and never half-written.
      const fs::path old = dir / (".old-" + name + "-" + pid);
      fs::remove_all(old, ec);
      fs::rename(final_dir, old);
      fs::rename(tmp, final_dir);
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, final_dir);
    }
    fsync_path(dir, true);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw SerializationError(final_dir.string() + ": cannot write checkpoint (" + e.what() + ")");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // Prune: older checkpoints beyond `keep`, and leftovers of killed saves.
  auto all = list_checkpoints(dir);
  for (std::size_t i = 0; i + static_cast<std::size_t>(std::max<std::int64_t>(1, keep)) < all.size(); ++i)
    fs::remove_all(all[i], ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if ((n.rfind(".tmp-step-", 0) == 0 || n.rfind(".old-step-", 0) == 0) && e.path() != tmp) fs::remove_all(e.path(), ec);
  }
  return final_dir;
}

TrainerState load_training_checkpoint(const std::filesystem::path& dir, LoraModel& pm,
                                      torch::optim::Optimizer& optimizer) {
  const auto state_path = dir / "trainer_state.json";
  TrainerState state = TrainerState::from_json(JsonValue::parse(read_text_file(state_path)), state_path.string());
  const auto file = load_safetensors(dir / kAdapterWeightsFile);
  auto targets = get_peft_model_state_dict(pm, "default");
  const std::string where = (dir / kAdapterWeightsFile).string();
  if (file.tensors.size() != targets.size())
    throw SerializationError(where + ": " + std::to_string(file.tensors.size()) + " tensors, the model's adapter has " +
                             std::to_string(targets.size()) + " (hint: the checkpoint belongs to another config)");
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (auto& [key, dst] : targets) {
    const torch::Tensor* src = nullptr;
    for (const auto& [k, t] : file.tensors)
      if (k == key) src = &t;
    if (!src) throw SerializationError(where + ": missing tensor `" + key + "` (hint: the checkpoint belongs to another config)");
    if (src->sizes() != dst.sizes())
      throw SerializationError(where + ": `" + key + "` has shape " + peft::detail::shape_string(src->sizes()) +
                               ", the model expects " + peft::detail::shape_string(dst.sizes()));
    copies.emplace_back(dst, *src);
  }
  torch::load(optimizer, (dir / "optimizer.pt").string());
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return state;
}

}  // namespace peft::train
