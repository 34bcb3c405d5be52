// The streaming load_checkpoint (io/hf_checkpoint.hpp): every shard's header is read and the
// whole plan checked against the model before any tensor data is read or any memory allocated;
// then the data goes tensor by tensor with pread straight into the parameters (same dtype,
// contiguous CPU destination) or through one bounded scratch buffer (dtype conversion, other
// devices, non-contiguous destinations). No shard is mapped, so the resident memory is the model
// plus at most one chunk.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <torch/types.h>
#include <torch/utils.h>

#include "peft/detail/strings.hpp"
#include "peft/error.hpp"
#include "peft/format/safetensors_dtype.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/io/detail/checkpoint_files.hpp"
#include "peft/io/hf_checkpoint.hpp"
#include "peft/io/safetensors_dtype.hpp"

namespace peft {
namespace detail {

namespace fs = std::filesystem;

ReadOnlyFile::ReadOnlyFile(const fs::path& path) : name_(path.string()) {
  fd_ = open_regular_file(path, &size_);  // a FIFO in a shard's place must not block the load
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint: larger read-ahead on a cold cache
#endif
}

ReadOnlyFile::~ReadOnlyFile() { close(); }

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : fd_(other.fd_), name_(std::move(other.name_)), size_(other.size_) {
  other.fd_ = -1;
}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    name_ = std::move(other.name_);
    size_ = other.size_;
    other.fd_ = -1;
  }
  return *this;
}

void ReadOnlyFile::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void ReadOnlyFile::read_exactly(char* out, std::uint64_t n, std::uint64_t offset, const std::string& what) const {
  if (fd_ < 0) throw SerializationError(name_ + ": " + what + ": the file is already closed");
  const std::uint64_t want = n;
  // Linux moves at most 0x7ffff000 bytes per call; 1 GiB steps keep every count an ssize_t.
  constexpr std::uint64_t kStep = std::uint64_t{1} << 30;
  while (n > 0) {
    const ssize_t got = ::pread(fd_, out, static_cast<std::size_t>(std::min(n, kStep)), static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      throw SerializationError(name_ + ": " + what + ": read failed at byte " + std::to_string(offset) + " (" +
                               std::strerror(err) + ")");
    }
    if (got == 0)
      throw SerializationError(name_ + ": " + what + ": short read, the file ends at byte " + std::to_string(offset) +
                               " with " + std::to_string(n) + " of " + std::to_string(want) +
                               " bytes missing (truncated or changed while loading?)");
    out += got;
    n -= static_cast<std::uint64_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

ShardHeader read_shard_header(const fs::path& path) {
  ReadOnlyFile file(path);
  const std::string& src = file.name();
  char first[8] = {};
  const std::uint64_t first_n = std::min<std::uint64_t>(8, file.size());
  file.read_exactly(first, first_n, 0, "header length");
  // Checked against the file size before anything is allocated for the header.
  const std::uint64_t header_len = safetensors_header_length(first, file.size(), src);
  std::string text(static_cast<std::size_t>(header_len), '\0');
  file.read_exactly(&text[0], header_len, 8, "header");
  SafetensorsHeader header =
      parse_safetensors_header_text(text.data(), text.size(), file.size() - 8 - header_len, src);
  return ShardHeader{std::move(file), std::move(header)};
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;
using detail::ticked;

/// Bytes read per step when a tensor goes through the scratch buffer.
constexpr std::uint64_t kChunkBytes = std::uint64_t{32} << 20;

/// One tensor to load: where it is in which shard and the tensor it goes into.
struct Planned {
  std::size_t shard;
  const SafetensorsEntry* entry;
  c10::ScalarType file_dtype;
  torch::Tensor destination;
  std::string key;  ///< the model's key (after rename), for on_loaded
};

/// Floating-point values cannot go into integer or bool tensors (the cast would truncate them).
bool convertible(c10::ScalarType from, c10::ScalarType to) {
  if (c10::isComplexType(to) || c10::isQIntType(to)) return false;
  return !c10::isFloatingType(from) || c10::isFloatingType(to);
}

/// A destination pread can fill directly: host memory in the file's dtype, dense.
bool readable_in_place(const torch::Tensor& dst, c10::ScalarType file_dtype) {
  return dst.device().is_cpu() && dst.layout() == torch::kStrided && dst.scalar_type() == file_dtype &&
         dst.is_contiguous();
}

/// Faults the pages of a destination about to be filled in one call (Linux >= 5.14's
/// MADV_POPULATE_WRITE; the contents stay as they are): on fresh torch::empty memory that is
/// 15-20% faster than taking one page fault per 4 KiB inside pread (bench/RESULTS.md). Older
/// kernels refuse the advice (EINVAL) and pread faults the pages as before. Transparent huge
/// pages (MADV_HUGEPAGE) were measured too and were 2-3x slower on the dev machine: the faults
/// waited for compaction.
void prefault(void* p, std::uint64_t n) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t begin = (at + page - 1) & ~(page - 1);
  const std::uintptr_t end = (at + static_cast<std::uintptr_t>(n)) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

/// Reusable host memory for the tensors that cannot be read in place.
class Scratch {
 public:
  char* get(std::uint64_t n) {
    if (n > bytes_.size()) {
      bytes_.clear();
      bytes_.shrink_to_fit();  // never both the old and the new buffer
      bytes_.resize(static_cast<std::size_t>(n));
    }
    return bytes_.data();
  }

 private:
  std::vector<char> bytes_;
};

void load_tensor(const detail::ReadOnlyFile& file, const SafetensorsHeader& header, const Planned& p,
                 Scratch& scratch) {
  const SafetensorsEntry& e = *p.entry;
  const std::uint64_t nbytes = e.end - e.begin;
  const std::uint64_t at = header.data_start + e.begin;
  const std::string what = "tensor " + ticked(e.name);
  torch::Tensor dst = p.destination;
  if (nbytes == 0) return;
  if (readable_in_place(dst, p.file_dtype)) {
    char* to = static_cast<char*>(dst.data_ptr());
    prefault(to, nbytes);
    file.read_exactly(to, nbytes, at, what);
    detail::to_or_from_little_endian(to, nbytes, e.dtype_size);
    check_safetensors_bool_data(e, to, 0, nbytes, file.name());
  } else if (dst.is_contiguous() && dst.layout() == torch::kStrided) {
    // In chunks: a flat view of the destination takes each converted / copied slice.
    const std::uint64_t per_chunk = std::max<std::uint64_t>(1, kChunkBytes / e.dtype_size);
    const std::uint64_t numel = nbytes / e.dtype_size;
    char* buf = scratch.get(std::min(numel, per_chunk) * e.dtype_size);
    auto flat = dst.view({-1});
    for (std::uint64_t first = 0; first < numel; first += per_chunk) {
      const std::uint64_t n = std::min(per_chunk, numel - first);
      file.read_exactly(buf, n * e.dtype_size, at + first * e.dtype_size, what);
      detail::to_or_from_little_endian(buf, n * e.dtype_size, e.dtype_size);
      check_safetensors_bool_data(e, buf, first, n * e.dtype_size, file.name());
      auto from = torch::from_blob(buf, {static_cast<std::int64_t>(n)}, torch::TensorOptions().dtype(p.file_dtype));
      flat.narrow(0, static_cast<std::int64_t>(first), static_cast<std::int64_t>(n)).copy_(from);
    }
  } else {
    // Any other layout: the whole tensor, then one copy_.
    char* buf = scratch.get(nbytes);
    file.read_exactly(buf, nbytes, at, what);
    detail::to_or_from_little_endian(buf, nbytes, e.dtype_size);
    check_safetensors_bool_data(e, buf, 0, nbytes, file.name());
    dst.copy_(torch::from_blob(buf, e.shape, torch::TensorOptions().dtype(p.file_dtype)));
  }
  // Written behind autograd's back: caches keyed on the version (DoRA's norm) must see a change.
  dst.unsafeGetTensorImpl()->bump_version();
}

}  // namespace

CheckpointReport load_checkpoint(torch::nn::Module& model, const fs::path& path, bool strict,
                                 const CheckpointRename& rename, const std::function<void(const std::string&)>& on_loaded) {
  // 1. Headers only: every shard's header read and validated, index and shards agreeing.
  const HfCheckpointFiles files = resolve_hf_checkpoint(path);
  std::vector<detail::ShardHeader> shards;
  shards.reserve(files.shards.size());
  for (const auto& f : files.shards) shards.push_back(detail::read_shard_header(f));
  if (files.weight_map()) {
    std::vector<std::vector<std::string>> names;
    for (const auto& s : shards) {
      names.emplace_back();
      for (const auto& e : s.header.entries) names.back().push_back(e.name);
    }
    detail::check_index_agrees(files, names);
  }

  // 2. The plan against the model: keys after rename, shapes, dtypes; nothing read or allocated.
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : model.named_parameters()) targets[p.key()] = p.value();
  for (const auto& b : model.named_buffers()) targets[b.key()] = b.value();
  std::vector<Planned> plan;
  std::set<std::string> seen;
  CheckpointReport report;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string f = files.shards[i].string();
    for (const SafetensorsEntry& e : shards[i].header.entries) {
      const std::string& file_key = e.name;
      const std::string key = rename ? rename(file_key) : file_key;
      if (key.empty()) continue;
      if (seen.count(key))
        throw SerializationError(f + ": `" + file_key + "` and another tensor both load into `" + key + "`");
      auto it = targets.find(key);
      if (it == targets.end()) {
        report.unexpected.push_back(file_key);
        continue;
      }
      const torch::Tensor& dst = it->second;
      if (dst.sizes() != torch::IntArrayRef(e.shape))
        throw SerializationError(f + ": `" + key + "` has shape " + detail::shape_string(e.shape) +
                                 ", the model needs " + detail::shape_string(dst.sizes()));
      const c10::ScalarType file_dtype = *torch_dtype_of(e.dtype);  // the header accepted it
      if (!convertible(file_dtype, dst.scalar_type()))
        throw SerializationError(f + ": `" + key + "` is " + e.dtype + " in the file but the model holds " +
                                 std::string(c10::toString(dst.scalar_type())) +
                                 " (floating-point values do not load into integer or bool tensors)");
      seen.insert(key);
      plan.push_back(Planned{i, &e, file_dtype, dst, key});
    }
  }
  for (const auto& [key, t] : targets)
    if (!seen.count(key)) report.missing.push_back(key);
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = path.string() + ": checkpoint does not match the model.";
    auto list = [](const std::vector<std::string>& keys) { return " " + detail::abbreviated_list(keys, 8, " ") + "."; };
    if (!report.missing.empty()) msg += " Missing:" + list(report.missing);
    if (!report.unexpected.empty()) msg += " Unexpected:" + list(report.unexpected);
    throw SerializationError(msg + " (pass strict=false to load the rest)");
  }

  // 3. The data, shard by shard in file order (sequential reads), each shard closed when done.
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.entry->begin < b.entry->begin;
  });
  torch::NoGradGuard no_grad;
  Scratch scratch;
  std::size_t next = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    for (; next < plan.size() && plan[next].shard == i; ++next) {
      load_tensor(shards[i].file, shards[i].header, plan[next], scratch);
      // set_data in the hook swaps the storage of the same tensor: the old one is freed here.
      if (on_loaded) on_loaded(plan[next].key);
    }
    shards[i].file.close();
  }
  return report;
}

}  // namespace peft
