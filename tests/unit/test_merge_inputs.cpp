// Issue 19, class 6: what peft-merge and the writers read and write is what they should. Shard
// names that collide with side files, side-file symlinks out of the base, tensors the adapter
// config does not declare, FIFOs in place of weights, scratch directories of killed runs,
// --force replacement, adapter names that are paths, and a full disk.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/adapters.hpp"
#include "peft/io/merge_into_checkpoint.hpp"
#include "peft/io/safetensors.hpp"
#include "peft/warnings.hpp"
#include "support/fixtures.hpp"
#include "support/message_of.hpp"
#include "support/small_models.hpp"

namespace fs = std::filesystem;
using TensorList = std::vector<std::pair<std::string, torch::Tensor>>;

namespace {

const char* kConfig = R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["lin"]})";

/// Base `lin.weight` [2, 2] = I and `lin.bias` [2]; adapter B A = [[1, 0], [0, 0]].
struct MergeDirs {
  fs::path dir, base, adapter, out;
  explicit MergeDirs(const std::string& name, const std::string& config = kConfig, TensorList extra = {}) {
    dir = peft_test::scratch_dir("merge_inputs_" + name);
    base = dir / "base";
    adapter = dir / "adapter";
    out = dir / "out";
    fs::create_directories(base);
    peft::save_safetensors(base / "model.safetensors",
                           {{"lin.weight", torch::eye(2)}, {"lin.bias", torch::zeros({2})}}, {{"format", "pt"}});
    peft::write_file_atomically(base / "config.json", "{\"model_type\": \"x\"}");
    fs::create_directories(adapter);
    peft::write_file_atomically(adapter / "adapter_config.json", config);
    TensorList t = {{"base_model.model.lin.lora_A.weight", torch::tensor({{1.0f, 0.0f}})},
                    {"base_model.model.lin.lora_B.weight", torch::tensor({{1.0f}, {0.0f}})}};
    for (auto& [k, v] : extra) t.emplace_back("base_model.model." + k, v);
    peft::save_safetensors(adapter / "adapter_model.safetensors", t, {{"format", "pt"}});
    fs::create_directories(out);
    peft::write_file_atomically(out / "old.txt", "previous output");
  }
  peft::MergeReport merge(bool force = true) const {
    peft::MergeCheckpointOptions o;
    o.overwrite = force;
    return peft::merge_checkpoint(base, {{adapter, 1.0}}, out, o);
  }
};

std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> s;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    s[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? peft::read_text_file(e.path()) : "<dir>";
  return s;
}

std::size_t leftovers(const fs::path& parent) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(parent)) n += e.path().filename().string().find(".peft-merge-") != std::string::npos;
  return n;
}

/// The pid of a process that has exited (and was reaped): scratch directories named after it are stale.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

}  // namespace

TEST(MergeInputs, ShardNamesMustBeSafetensorsFilesSoNoneCollidesWithASideFile) {
  for (const std::string shard : {"config.json", "tokenizer.json", "model.safetensors.index.json", "../x.safetensors",
                                  ".safetensors"}) {
    MergeDirs s("shard_name");
    const auto before = snapshot(s.out);
    fs::rename(s.base / "model.safetensors", s.base / "model-00001-of-00001.safetensors");
    peft::write_file_atomically(s.base / "model.safetensors.index.json",
                                R"({"metadata": {}, "weight_map": {"lin.weight": "model-00001-of-00001.safetensors", )"
                                R"("lin.bias": ")" + shard + "\"}}");
    const std::string msg = peft_test::message_of<peft::SerializationError>([&] { s.merge(); });
    EXPECT_NE(msg.find("bad shard name for `lin.bias`"), std::string::npos) << shard << ": " << msg;
    EXPECT_EQ(snapshot(s.out), before);
    EXPECT_EQ(leftovers(s.dir), 0u);
  }
}

TEST(MergeInputs, SideFileSymlinksMustStayInsideTheBase) {
  MergeDirs s("symlink");
  const auto before = snapshot(s.out);
  peft::write_file_atomically(s.dir / "secret.txt", "root:*:secret");
  fs::remove(s.base / "config.json");
  fs::create_symlink(s.dir / "secret.txt", s.base / "config.json");
  std::string msg = peft_test::message_of<peft::SerializationError>([&] { s.merge(); });
  EXPECT_NE(msg.find("outside the base directory"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("root:*"), std::string::npos);
  EXPECT_EQ(snapshot(s.out), before);
  EXPECT_EQ(leftovers(s.dir), 0u);
  // A dangling link is refused the same way.
  fs::remove(s.base / "config.json");
  fs::create_symlink(s.dir / "nowhere.json", s.base / "config.json");
  msg = peft_test::message_of<peft::SerializationError>([&] { s.merge(); });
  EXPECT_NE(msg.find("a symlink to nothing"), std::string::npos) << msg;

  // A link inside the base is copied (as its content); so is a Hugging Face cache snapshot's
  // link into <repo>/blobs.
  fs::remove(s.base / "config.json");
  peft::write_file_atomically(s.base / "real_config.json", "{\"model_type\": \"inside\"}");
  fs::create_symlink("real_config.json", s.base / "config.json");
  s.merge();
  EXPECT_EQ(peft::read_text_file(s.out / "config.json"), "{\"model_type\": \"inside\"}");
  EXPECT_FALSE(fs::is_symlink(s.out / "config.json"));
  const fs::path repo = s.dir / "models--x";
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "snapshots" / "abc");
  fs::copy_file(s.base / "model.safetensors", repo / "blobs" / "w");
  peft::write_file_atomically(repo / "blobs" / "c", "{\"model_type\": \"cached\"}");
  fs::create_symlink("../../blobs/w", repo / "snapshots" / "abc" / "model.safetensors");
  fs::create_symlink("../../blobs/c", repo / "snapshots" / "abc" / "config.json");
  peft::MergeCheckpointOptions force;
  force.overwrite = true;
  peft::merge_checkpoint(repo / "snapshots" / "abc", {{s.adapter, 1.0}}, s.out, force);
  EXPECT_EQ(peft::read_text_file(s.out / "config.json"), "{\"model_type\": \"cached\"}");
}

TEST(MergeInputs, PlainTensorsTheConfigDoesNotDeclareAreRefused) {
  // bias = "none" and no modules_to_save: a plain `lin.bias` in the file must not replace the base's.
  MergeDirs s("undeclared", kConfig, {{"lin.bias", torch::tensor({5.0f, 5.0f})}});
  const auto before = snapshot(s.out);
  const std::string msg = peft_test::message_of<peft::SerializationError>([&] { s.merge(); });
  EXPECT_NE(msg.find("base_model.model.lin.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not declare"), std::string::npos) << msg;
  EXPECT_EQ(snapshot(s.out), before);
  MergeDirs other("undeclared_other", kConfig, {{"head.weight", torch::ones({2, 2})}});
  EXPECT_THROW(other.merge(), peft::SerializationError);

  // Declared: bias = "all" replaces the bias; modules_to_save covers `head.*`.
  MergeDirs bias("declared_bias",
             R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["lin"], "bias": "all"})",
             {{"lin.bias", torch::tensor({5.0f, 6.0f})}});
  bias.merge();
  const auto merged = peft::load_safetensors(bias.out / "model.safetensors");
  ASSERT_NE(merged.find("lin.bias"), nullptr);
  EXPECT_TRUE(torch::equal(*merged.find("lin.bias"), torch::tensor({5.0f, 6.0f})));
  EXPECT_TRUE(torch::equal(*merged.find("lin.weight"), torch::tensor({{2.0f, 0.0f}, {0.0f, 1.0f}})));
  MergeDirs saved("declared_saved",
              R"({"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["lin"], "modules_to_save": ["lin"]})",
              {{"lin.bias", torch::tensor({7.0f, 7.0f})}});
  saved.merge();
  EXPECT_TRUE(torch::equal(*peft::load_safetensors(saved.out / "model.safetensors").find("lin.bias"),
                           torch::tensor({7.0f, 7.0f})));
}

TEST(MergeInputs, AFifoInPlaceOfAWeightsFileIsRefusedNotWaitedOn) {
  for (const char* which : {"base", "adapter"}) {
    MergeDirs s(std::string("fifo_") + which);
    const auto before = snapshot(s.out);
    const fs::path file = which == std::string("base") ? s.base / "model.safetensors" : s.adapter / "adapter_model.safetensors";
    fs::remove(file);
    ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
    auto done = std::async(std::launch::async, [&] { return peft_test::message_of<peft::SerializationError>([&] { s.merge(); }); });
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      ADD_FAILURE() << which << ": merge blocked on the FIFO";
      const int fd = ::open(file.c_str(), O_WRONLY);  // release the reader
      ::close(fd);
    }
    const std::string msg = done.get();
    EXPECT_NE(msg.find("not a regular file"), std::string::npos) << which << ": " << msg;
    EXPECT_EQ(snapshot(s.out), before);
  }
  // adapter_config.json and read_text_file in general.
  MergeDirs s("fifo_config");
  fs::remove(s.adapter / "adapter_config.json");
  ASSERT_EQ(::mkfifo((s.adapter / "adapter_config.json").c_str(), 0600), 0);
  EXPECT_THROW(peft::read_text_file(s.adapter / "adapter_config.json"), peft::SerializationError);
}

TEST(MergeInputs, ScratchDirectoriesOfDeadRunsAreCleanedAndAMissingOutputPutBack) {
  MergeDirs s("scratch");
  const std::string dead = std::to_string(dead_pid());
  const fs::path stale_tmp = s.dir / (".out.peft-merge-tmp-" + dead);
  fs::create_directories(stale_tmp);
  peft::write_file_atomically(stale_tmp / "model.safetensors", "half written");
  const fs::path alive = s.dir / (".out.peft-merge-tmp-" + std::to_string(::getppid()));  // a live process
  fs::create_directories(alive);
  const fs::path other = s.dir / ".other.peft-merge-tmp-1";  // another output's: not ours
  fs::create_directories(other);
  s.merge();
  EXPECT_FALSE(fs::exists(stale_tmp));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(s.out / "model.safetensors"));
  fs::remove_all(alive);
  fs::remove_all(other);

  // Killed between "OUT aside" and "new OUT in" (filesystems without RENAME_EXCHANGE): the next
  // run puts the old OUT back first, so without --force it is refused and kept.
  fs::rename(s.out, s.dir / (".out.peft-merge-old-" + dead));
  const std::string msg = peft_test::message_of<peft::Error>([&] { s.merge(/*force=*/false); });
  EXPECT_NE(msg.find("pass --force"), std::string::npos) << msg;
  EXPECT_TRUE(fs::exists(s.out / "model.safetensors"));
  EXPECT_EQ(leftovers(s.dir), 0u);
}

TEST(MergeInputs, ForceReplacesTheOutputInOneStep) {
  MergeDirs s("force");
  struct stat before {};
  ASSERT_EQ(::stat(s.out.c_str(), &before), 0);
  s.merge();
  struct stat after {};
  ASSERT_EQ(::stat(s.out.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_FALSE(fs::exists(s.out / "old.txt"));
  EXPECT_TRUE(fs::exists(s.out / "model.safetensors"));
  EXPECT_TRUE(fs::exists(s.out / "config.json"));
  EXPECT_EQ(leftovers(s.dir), 0u);
}

TEST(SavePretrainedNames, AdapterNamesThatAreNotPlainDirectoryNamesAreRefused) {
  peft_test::Mlp net(peft_test::MlpOptions({4, 3, 2}));
  peft::LoraConfig c;
  c.target_modules = peft::ModuleSpec({"lin0"});
  c.r = 2;
  auto pm = peft::get_peft_model(net, c);
  const fs::path dir = peft_test::scratch_dir("save_names") / "out";
  // Names with a dot cannot name submodules: refused when added, as a ConfigError.
  for (const char* name : {"../escaped", "..", ".", ""})
    EXPECT_NE(peft_test::message_of<peft::ConfigError>([&] { pm.add_adapter(name, c); }).find("add_adapter.adapter_name"),
              std::string::npos)
        << name;
  // Names that are paths: refused by save_pretrained before anything is written.
  const fs::path escape = "/tmp/peft_cpp_escaped_adapter";
  fs::remove_all(escape);
  for (const std::string& name : std::vector<std::string>{escape.string(), "a/b"}) {
    pm.add_adapter(name, c);
    const std::string msg = peft_test::message_of<peft::ConfigError>([&] { peft::save_pretrained(pm, dir, {name}); });
    EXPECT_NE(msg.find("save_pretrained.adapter_name"), std::string::npos) << name << ": " << msg;
    EXPECT_FALSE(fs::exists(dir)) << name;
    EXPECT_FALSE(fs::exists(escape)) << name;
    // Nothing at all is written when one of several adapters has such a name.
    EXPECT_THROW(peft::save_pretrained(pm, dir, {"default", name}), peft::ConfigError);
    EXPECT_FALSE(fs::exists(dir)) << name;
    pm.delete_adapter(name);
  }
  pm.add_adapter("task_a", c);
  peft::save_pretrained(pm, dir);
  EXPECT_TRUE(fs::exists(dir / "task_a" / "adapter_config.json"));
}

TEST(DiskFull, WritersTurnENOSPCIntoASerializationErrorAndKeepTheOldFile) {
  const fs::path mnt = peft_test::scratch_dir("disk_full");
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "cannot mount a 64 KiB tmpfs here (needs root): " << std::strerror(errno);
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  peft::write_file_atomically(mnt / "a.json", "old");
  std::string msg = peft_test::message_of<peft::SerializationError>(
      [&] { peft::write_file_atomically(mnt / "a.json", std::string(1u << 20, 'x')); });
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_EQ(peft::read_text_file(mnt / "a.json"), "old");
  msg = peft_test::message_of<peft::SerializationError>(
      [&] { peft::save_safetensors(mnt / "w.safetensors", {{"w", torch::zeros({64, 1024})}}); });
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(mnt / "w.safetensors"));
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(mnt)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "temporary files are removed";
}
