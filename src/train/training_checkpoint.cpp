// Training checkpoints (peft/train/training_checkpoint.hpp): crash-safe save, load, listing.

#include "peft/train/training_checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <ATen/Context.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/train/checkpoint_manifest.hpp"
#include "peft/train/optimizer_state.hpp"

namespace peft::train {

namespace {

constexpr const char* kOptimizerStateFile = "optimizer.safetensors";
constexpr const char* kTrainerStateFile = "trainer_state.json";

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
  try {
    gen.set_state(t);  // checks the size (and the CPU state's own fields) before it copies
  } catch (const c10::Error& e) {
    const std::string m = e.what();
    throw SerializationError("RNG state for " + device.str() + " rejected: " + m.substr(0, m.find('\n')));
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

namespace {

const std::vector<std::string>& checkpoint_files() {
  static const std::vector<std::string> files = {kAdapterConfigFile, kAdapterWeightsFile, kOptimizerStateFile,
                                                 kTrainerStateFile};
  return files;
}

/// Whether checkpoint `cp` belongs to the run with fingerprint `hash` ("" = a run without one);
/// anything unreadable or of another format is not.
bool same_run(const std::filesystem::path& cp, const std::string& hash) {
  try {
    const JsonValue j = JsonValue::parse(read_text_file(cp / kTrainerStateFile));
    const JsonValue* format = j.find("format");
    if (!format || !format->is_int() || format->as_int() != 2) return false;
    const JsonValue* run = j.find("run");
    const JsonValue* fp = run ? run->find("fingerprint") : nullptr;
    if (!run) return hash.empty();
    return fp && fp->is_string() && fp->as_string() == hash;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::filesystem::path save_training_checkpoint(const std::filesystem::path& dir, const LoraModel& pm,
                                               const torch::optim::AdamW& optimizer, const TrainerState& state,
                                               std::int64_t keep) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string name = "step-" + std::to_string(state.step);
  const std::string pid = std::to_string(static_cast<long>(::getpid()));
  const fs::path tmp = dir / (".tmp-" + name + "-" + pid);
  const fs::path final_dir = dir / name;
  const std::string hash = state.run.empty() ? std::string() : state.run.hash();
  if (fs::exists(final_dir / kTrainerStateFile, ec) && !same_run(final_dir, hash))
    throw SerializationError(final_dir.string() + ": holds a checkpoint of another run; not overwritten (hint: "
                                                  "give each run its own output_dir)");
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw SerializationError(tmp.string() + ": cannot create (" + ec.message() + ")");
  try {
    save_pretrained(pm, tmp, {"default"});
    save_adamw_state(tmp / kOptimizerStateFile, optimizer);
    write_file_atomically(tmp / kTrainerStateFile, state.to_json().dump(1) + "\n");
    write_checkpoint_manifest(tmp, checkpoint_files());  // last: it covers the files above
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
  // Prune this run's older checkpoints beyond `keep` (the new one counts). Checkpoints of other
  // runs, and this run's newer ones (a resume from an earlier step), are left alone.
  std::vector<fs::path> ours;
  for (const auto& cp : list_checkpoints(dir))
    if (detail::checkpoint_step(cp) < state.step && same_run(cp, hash)) ours.push_back(cp);
  const auto kept_older = static_cast<std::size_t>(std::max<std::int64_t>(1, keep) - 1);
  for (std::size_t i = 0; i + kept_older < ours.size(); ++i) fs::remove_all(ours[i], ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if ((n.rfind(".tmp-step-", 0) == 0 || n.rfind(".old-step-", 0) == 0) && e.path() != tmp) fs::remove_all(e.path(), ec);
  }
  return final_dir;
}

TrainerState read_checkpoint_state(const std::filesystem::path& dir, bool all_files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir / kCheckpointManifestFile, ec)) {
    if (fs::exists(dir / "optimizer.pt", ec))
      throw SerializationError(dir.string() + ": written by an older peft-cpp (optimizer.pt, a pickle, and no " +
                               kCheckpointManifestFile +
                               "): it cannot be validated, so it is not resumed (hint: start a new output_dir, or "
                               "delete the checkpoints directory to train from scratch)");
    throw SerializationError(dir.string() + ": no " + kCheckpointManifestFile +
                             " (hint: not a complete peft-cpp training checkpoint)");
  }
  verify_checkpoint_files(dir, checkpoint_files(),
                          all_files ? std::vector<std::string>{} : std::vector<std::string>{kTrainerStateFile});
  const auto state_path = dir / kTrainerStateFile;
  JsonValue j;
  try {
    j = JsonValue::parse(read_text_file(state_path));
  } catch (const SerializationError&) {
    throw;
  } catch (const std::exception& e) {
    throw SerializationError(state_path.string() + ": not valid JSON (" + e.what() + ")");
  }
  return TrainerState::from_json(j, state_path.string());
}

void check_same_run(const std::filesystem::path& dir, const RunFingerprint& checkpoint, const RunFingerprint& now,
                    const std::string& where) {
  if (checkpoint.empty() || now.empty()) return;
  const std::string diff = checkpoint.differences(now);
  if (diff.empty()) return;
  throw TrainConfigError(where, "resume", dir.string(), "the checkpoint belongs to a run with another config: " + diff,
                         "resume with the config that wrote it, or start this config in another output_dir");
}

TrainerState load_training_checkpoint(const std::filesystem::path& dir, LoraModel& pm,
                                      torch::optim::AdamW& optimizer, const RunFingerprint& run) {
  TrainerState state = read_checkpoint_state(dir);
  check_same_run(dir, state.run, run);
  const std::string state_where = (dir / kTrainerStateFile).string();
  const std::size_t cpu_state = rng_state(torch::kCPU).size();
  auto check_rng = [&](const std::string& bytes, const std::string& field) {
    if (bytes.size() != cpu_state)
      throw SerializationError(state_where + ": `" + field + "` holds " + std::to_string(bytes.size()) +
                               " bytes, a CPU generator state has " + std::to_string(cpu_state));
  };
  check_rng(state.cpu_rng_state, "cpu_rng_state");
  for (std::size_t r = 0; r < state.rank_cpu_rng_states.size(); ++r)
    check_rng(state.rank_cpu_rng_states[r], "rank_cpu_rng_states[" + std::to_string(r) + "]");

  const auto file = load_safetensors(dir / kAdapterWeightsFile);
  auto targets = get_peft_model_state_dict(pm, "default");
  const std::string where = (dir / kAdapterWeightsFile).string();
  if (file.tensors.size() != targets.size())
    throw SerializationError(where + ": " + std::to_string(file.tensors.size()) + " tensors, the model's adapter has " +
                             std::to_string(targets.size()) + " (hint: the checkpoint belongs to another config)");
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (auto& [key, dst] : targets) {
    const torch::Tensor* src = file.find(key);
    if (!src) throw SerializationError(where + ": missing tensor `" + key + "` (hint: the checkpoint belongs to another config)");
    if (src->sizes() != dst.sizes() || src->scalar_type() != dst.scalar_type())
      throw SerializationError(where + ": `" + key + "` is " + c10::toString(src->scalar_type()) + " " +
                               peft::detail::shape_string(src->sizes()) + ", the model expects " +
                               c10::toString(dst.scalar_type()) + " " + peft::detail::shape_string(dst.sizes()));
    copies.emplace_back(dst, *src);
  }
  AdamWStateFile opt_state = read_adamw_state(dir / kOptimizerStateFile, optimizer);
  // Everything is validated: from here on nothing throws for a bad file.
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  install_adamw_state(std::move(opt_state), optimizer);
  return state;
}

}  // namespace peft::train
