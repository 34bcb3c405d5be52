#pragma once
/// Training text -> token blocks -> seeded batches, for peft-finetune and the examples.

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "peft/text/tokenizer.hpp"

namespace peft::text {

/// Documents of a training file, by extension:
///  - `.jsonl` / `.ndjson`: one JSON object per non-blank line; the document is its string field
///    `jsonl_field` (default "text"). A bad line throws peft::SerializationError naming
///    `file:line` (malformed JSON, not an object, field missing or not a string).
///  - anything else is plain UTF-8 text split into documents on blank lines (lines holding only
///    spaces/tabs/CR count as blank); single newlines stay inside a document; a file without
///    blank lines is one document; CRLF line ends become LF.
/// An unreadable file throws peft::SerializationError naming it. Empty documents are dropped.
std::vector<std::string> load_documents(const std::filesystem::path& file,
                                        const std::string& jsonl_field = "text");

/// All documents encoded into one stream with tokenizer.eos_id() between consecutive documents
/// (none after the last; none at all if the tokenizer has no eos).
std::vector<int64_t> encode_documents(const Tokenizer& tokenizer, const std::vector<std::string>& documents);

/// Blocks of seq_len+1 token ids ([:, :-1] inputs, [:, 1:] targets), int64 on the CPU.
struct TokenBlocks {
  torch::Tensor train;    // [n_train, seq_len + 1]
  torch::Tensor heldout;  // [n_heldout, seq_len + 1] (0 rows when heldout_fraction == 0)
};

/// Cuts `ids` into n = (len(ids) - 1) / seq_len blocks with stride seq_len, so block i is
/// ids[i*seq_len : i*seq_len + seq_len + 1] and every token but the first is a target exactly
/// once (the trailing remainder is dropped). The held-out blocks are the last
/// round(n * heldout_fraction) blocks (at least 1 when the fraction is > 0), i.e. the end of the
/// text; the train blocks are the ones before (the last train block's final token is the first
/// held-out input, never a held-out target). Deterministic.
/// Throws peft::Error if seq_len < 1, heldout_fraction is outside [0, 1) or no train block remains.
TokenBlocks make_blocks(const std::vector<int64_t>& ids, int64_t seq_len, double heldout_fraction);

/// Seeded, resumable batches of rows of `blocks`: epoch e visits every row once in the order of a
/// Fisher-Yates permutation drawn from splitmix64(seed, e) (platform-independent, unlike
/// std::shuffle); batches run on across epoch boundaries, so each has exactly `batch` rows.
/// state() = rows handed out so far; restore(state()) on a sampler built with the same blocks
/// and seed continues with the same batches.
class BatchSampler {
 public:
  /// blocks: [n, L] with n >= 1; batch >= 1. Throws peft::Error otherwise.
  BatchSampler(torch::Tensor blocks, int64_t batch, uint64_t seed);
  /// Indices only (next_indices), for rows kept elsewhere, e.g. variable-length examples: n >= 1.
  BatchSampler(int64_t n, int64_t batch, uint64_t seed);
  /// The next [batch, L] int64 batch (the blocks constructor only).
  torch::Tensor next();
  /// The row indices of the next batch (`batch` of them), in the same order next() uses.
  std::vector<int64_t> next_indices();
  uint64_t state() const { return position_; }
  void restore(uint64_t state);
  /// Epochs completed so far (fractional), for progress output.
  double epoch() const;
  int64_t num_blocks() const { return n_; }
  int64_t batch_size() const { return batch_; }

 private:
  void build_permutation(uint64_t epoch);
  torch::Tensor blocks_;
  int64_t batch_;
  uint64_t seed_;
  int64_t n_;
  uint64_t position_ = 0;
  uint64_t perm_epoch_ = ~uint64_t{0};
  std::vector<int64_t> perm_;
};

}  // namespace peft::text
