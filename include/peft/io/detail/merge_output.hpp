#pragma once
/// peft-merge internals: the output directory and the side files (no LibTorch). Used by
/// src/io/merge_into_checkpoint.cpp.
///
/// The output is built in a scratch directory beside OUT, `.<OUT name>.peft-merge-tmp-<pid>`, and
/// swapped in with renameat2(RENAME_EXCHANGE) (one atomic step: a kill leaves the old or the new
/// OUT, never none); where the filesystem cannot exchange, the old OUT is renamed to
/// `.<OUT name>.peft-merge-old-<pid>` first. Scratch directories of runs that no longer live are
/// removed by the next run for the same OUT, and an `-old-` one is renamed back when OUT is missing.

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace peft::detail {

/// A file of the base directory copied beside the merged shards (config.json, tokenizer files...).
struct MergeSideFile {
  std::filesystem::path source;
  std::string name;
  std::string bytes;  ///< read at check time, through the descriptor whose real path was checked
};

/// Largest side file copied (tokenizer.json of large vocabularies: tens of MiB).
constexpr std::size_t kMaxMergeSideFileBytes = std::size_t{1} << 30;

/// The side files of `base_dir`, checked before anything is written: each is a regular file or
/// a symlink resolving to one inside `base_dir` (or, for a Hugging Face cache snapshot
/// `<repo>/snapshots/<rev>`, inside `<repo>/blobs`). SerializationError for a symlink that leads
/// elsewhere (a model directory must not make peft-merge copy /etc/shadow into its output).
/// Other non-regular entries (FIFOs, devices, directories) are skipped. Each file is read here,
/// from the descriptor whose /proc/self/fd path was checked, so a symlink swapped in after the
/// listing cannot redirect the copy (no check-then-read window).
std::vector<MergeSideFile> merge_side_files(const std::filesystem::path& base_dir);

/// Error unless `out` may be written: not inside (or around) the base or an adapter, and not an
/// existing non-empty directory unless `overwrite`.
void check_merge_out(const std::filesystem::path& out, const std::filesystem::path& base,
                     const std::vector<std::filesystem::path>& adapter_dirs, bool overwrite);

/// Remove the scratch directories of `out` left by runs that no longer live (see above); run it
/// before check_merge_out, so that an OUT put back counts as existing.
void clean_merge_scratch(const std::filesystem::path& out);

/// Create this run's scratch directory for `out`.
std::filesystem::path make_merge_scratch(const std::filesystem::path& out);

/// Put the finished scratch directory `tmp` in place as `out`, replacing an existing `out`.
void commit_merge_dir(const std::filesystem::path& tmp, const std::filesystem::path& out);

}  // namespace peft::detail
