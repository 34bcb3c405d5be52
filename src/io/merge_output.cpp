// peft-merge's output directory and side files (io/detail/merge_output.hpp): where the merged
// checkpoint is built, how it replaces OUT, and which files of the base travel with it.

#include "peft/io/detail/merge_output.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"

namespace peft::detail {
namespace {

namespace fs = std::filesystem;

/// Files of a HF model directory that belong beside the weights.
bool is_side_file(const std::string& name) {
  static const std::set<std::string> names = {
      "config.json",         "generation_config.json", "tokenizer.json", "tokenizer_config.json",
      "special_tokens_map.json", "vocab.json",         "merges.txt",     "tokenizer.model",
      "added_tokens.json",   "chat_template.jinja",    "chat_template.json", "vocab.txt",
      "spiece.model",        "preprocessor_config.json"};
  return names.count(name) > 0;
}

bool is_inside(const fs::path& p, const fs::path& dir) {
  std::error_code ec;
  const auto a = fs::weakly_canonical(p, ec), d = fs::weakly_canonical(dir, ec);
  auto ai = a.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++ai)
    if (ai == a.end() || *ai != *di) return false;
  return true;
}

std::string scratch_prefix(const fs::path& out) { return "." + out.filename().string() + ".peft-merge-"; }

/// The pid of a scratch directory name `<prefix>tmp-<pid>` / `<prefix>old-<pid>`, or 0.
pid_t scratch_pid(const std::string& name, const std::string& prefix, bool* old) {
  if (name.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::string rest = name.substr(prefix.size());
  if (rest.size() < 5 || (rest.compare(0, 4, "tmp-") != 0 && rest.compare(0, 4, "old-") != 0)) return 0;
  *old = rest[0] == 'o';
  const std::string digits = rest.substr(4);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(digits));
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::vector<MergeSideFile> merge_side_files(const fs::path& base_dir) {
  std::vector<MergeSideFile> files;
  std::error_code ec;
  const fs::path dir = fs::canonical(base_dir, ec);
  if (ec) throw SerializationError(base_dir.string() + ": cannot resolve (" + ec.message() + ")");
  // A Hugging Face cache snapshot links every file to <repo>/blobs/<hash>.
  std::vector<fs::path> roots = {dir};
  if (dir.parent_path().filename() == "snapshots") roots.push_back(dir.parent_path().parent_path() / "blobs");
  for (const auto& e : fs::directory_iterator(base_dir)) {
    const std::string name = e.path().filename().string();
    if (!is_side_file(name)) continue;
    if (e.is_symlink(ec)) {
      const fs::path target = fs::canonical(e.path(), ec);
      const bool inside = !ec && std::any_of(roots.begin(), roots.end(), [&](const fs::path& r) {
        return is_inside(target, r);
      });
      if (!inside)
        throw SerializationError(e.path().string() + ": a symlink to " + (ec ? std::string("nothing") : target.string()) +
                                 ", outside the base directory; refusing to copy it into the output (hint: "
                                 "copy the file into the base directory)");
    }
    if (!fs::is_regular_file(e.path(), ec)) continue;  // FIFOs, devices, directories: not ours to copy
    // The check above reads the link, the copy reads the file: the entry may change in between.
    // Open once, check where the descriptor really leads, and read through that descriptor.
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } file{open_regular_file(e.path())};
    const fs::path fd_link = "/proc/self/fd/" + std::to_string(file.fd);
    const fs::path real = fs::read_symlink(fd_link, ec);
    const bool inside = !ec && std::any_of(roots.begin(), roots.end(), [&](const fs::path& r) {
      return is_inside(real, r);
    });
    if (!inside)
      throw SerializationError(e.path().string() + ": opened as " + (ec ? std::string("an unknown file") : real.string()) +
                               ", outside the base directory (it changed while peft-merge read it?); refusing to "
                               "copy it into the output");
    files.push_back({e.path(), name, read_text_file(fd_link, kMaxMergeSideFileBytes)});
  }
  return files;
}

void check_merge_out(const fs::path& out, const fs::path& base, const std::vector<fs::path>& adapter_dirs,
                     bool overwrite) {
  std::error_code ec;
  if (out.empty()) throw Error("peft-merge: no output directory (hint: --out DIR)");
  for (const auto& a : adapter_dirs)
    if (is_inside(a, out) || is_inside(out, a))
      throw Error(out.string() + ": the output directory must not contain, or be inside, the adapter " + a.string());
  if (is_inside(base, out) || (fs::is_directory(base, ec) && is_inside(out, base)))
    throw Error(out.string() + ": the output directory must not contain, or be inside, the base " + base.string());
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) throw Error(out.string() + ": exists and is not a directory");
  if (!fs::is_empty(out, ec) && !overwrite)
    throw Error(out.string() + ": exists and is not empty (hint: pass --force to replace it)");
}

void clean_merge_scratch(const fs::path& out) {
  std::error_code ec;
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  const std::string prefix = scratch_prefix(out);
  std::vector<fs::path> entries;  // listed first: the loop below renames and removes
  for (const auto& e : fs::directory_iterator(parent, ec)) entries.push_back(e.path());
  for (const auto& path : entries) {
    bool old = false;
    const pid_t pid = scratch_pid(path.filename().string(), prefix, &old);
    // Alive (or not ours to signal): another run is using it.
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;
    std::error_code ec2;
    if (old && !fs::exists(out, ec2)) {
      fs::rename(path, out, ec2);  // a run killed between its two renames: put OUT back
      if (!ec2) continue;
    }
    fs::remove_all(path, ec2);
  }
}

fs::path make_merge_scratch(const fs::path& out) {
  std::error_code ec;
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  fs::create_directories(parent, ec);
  const fs::path tmp = parent / (scratch_prefix(out) + "tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec))
    throw SerializationError(tmp.string() + ": cannot create the temporary output directory (" + ec.message() + ")");
  return tmp;
}

void commit_merge_dir(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  if (!fs::exists(out, ec)) {
    fs::rename(tmp, out, ec);
    if (ec) throw SerializationError(out.string() + ": cannot rename the new directory into place (" + ec.message() + ")");
    sync_dir(parent);
    return;
  }
#ifdef RENAME_EXCHANGE
  // One step: OUT is the new directory and tmp holds the old one, which is then deleted.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0) {
    sync_dir(parent);
    fs::remove_all(tmp, ec);
    return;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    throw SerializationError(out.string() + ": cannot swap the new directory into place (" + std::strerror(errno) + ")");
#endif
  // No exchange on this filesystem: two renames; the next run restores OUT if killed between them.
  const fs::path old = parent / (scratch_prefix(out) + "old-" + std::to_string(::getpid()));
  fs::rename(out, old, ec);
  if (ec) throw SerializationError(out.string() + ": cannot move the old directory aside (" + ec.message() + ")");
  fs::rename(tmp, out, ec);
  if (ec) {
    std::error_code ec2;
    fs::rename(old, out, ec2);
    throw SerializationError(out.string() + ": cannot rename the new directory into place (" + ec.message() + ")");
  }
  sync_dir(parent);
  fs::remove_all(old, ec);
}

}  // namespace peft::detail
