// Documents from .txt / .jsonl, the token stream cut into blocks, and the resumable sampler.
#include "peft/text/dataset.hpp"

#include <cmath>
#include <limits>

#include "peft/error.hpp"
#include "peft/format/atomic_file.hpp"
#include "peft/format/json_value.hpp"
#include "peft/text/detail/jsonl.hpp"

namespace peft::text {
namespace {

std::string read_all(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw SerializationError(file.string() + ": is a directory, expected a .txt or .jsonl file");
  return read_text_file(file, std::numeric_limits<std::size_t>::max());  // corpora may be large
}

// splitmix64: a tiny, well-mixed, platform-independent generator for the epoch permutations.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

std::vector<std::string> load_documents(const std::filesystem::path& file, const std::string& jsonl_field) {
  const std::string text = read_all(file);
  std::vector<std::string> docs;
  const std::string ext = file.extension().string();
  if (ext == ".jsonl" || ext == ".ndjson") {
    detail::for_each_jsonl_object(text, file.string(), [&](const JsonValue& v, const std::string& where) {
      const JsonValue* f = v.find(jsonl_field);
      if (!f) {
        std::string keys;
        for (const auto& kv : v.as_object()) keys += (keys.empty() ? "" : ", ") + kv.first;
        throw SerializationError(where + ": no field \"" + jsonl_field + "\" (fields: " + keys +
                                 "); hint: set data.jsonl_field to the field holding the text");
      }
      if (!f->is_string()) throw SerializationError(where + ": field \"" + jsonl_field + "\" is not a string");
      if (!f->as_string().empty()) docs.push_back(f->as_string());
    });
    return docs;
  }
  // Plain text: blank lines separate documents; the lines of a document are joined with '\n'.
  std::string cur;
  bool have = false;
  detail::for_each_line(text, [&](std::string_view line, std::size_t) {
    if (detail::is_blank(line)) {
      if (have) docs.push_back(std::move(cur));
      cur.clear();
      have = false;
      return;
    }
    if (have) cur += '\n';
    cur.append(line);
    have = true;
  });
  if (have) docs.push_back(std::move(cur));
  return docs;
}

std::vector<int64_t> encode_documents(const Tokenizer& tokenizer, const std::vector<std::string>& documents) {
  std::vector<int64_t> ids;
  const auto eos = tokenizer.eos_id();
  for (std::size_t i = 0; i < documents.size(); ++i) {
    if (i > 0 && eos) ids.push_back(*eos);
    auto doc = tokenizer.encode(documents[i]);
    ids.insert(ids.end(), doc.begin(), doc.end());
  }
  return ids;
}

TokenBlocks make_blocks(const std::vector<int64_t>& ids, int64_t seq_len, double heldout_fraction) {
  if (seq_len < 1) throw Error("make_blocks: seq_len = " + std::to_string(seq_len) + " must be >= 1");
  if (!(heldout_fraction >= 0.0 && heldout_fraction < 1.0))
    throw Error("make_blocks: heldout_fraction = " + std::to_string(heldout_fraction) + " must be in [0, 1)");
  const int64_t len = static_cast<int64_t>(ids.size());
  const int64_t n = len > 0 ? (len - 1) / seq_len : 0;
  int64_t n_held = 0;
  if (heldout_fraction > 0.0 && n > 0)
    n_held = std::max<int64_t>(1, static_cast<int64_t>(std::llround(static_cast<double>(n) * heldout_fraction)));
  const int64_t n_train = n - n_held;
  if (n_train < 1)
    throw Error("make_blocks: " + std::to_string(len) + " tokens give " + std::to_string(n) + " block(s) of " +
                std::to_string(seq_len + 1) + " tokens, leaving no training block after " + std::to_string(n_held) +
                " held-out (hint: use more text, a smaller seq_len or a smaller heldout_fraction)");
  auto all = torch::empty({n, seq_len + 1}, torch::kInt64);
  int64_t* dst = all.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    std::copy(ids.begin() + i * seq_len, ids.begin() + i * seq_len + seq_len + 1, dst + i * (seq_len + 1));
  return {all.narrow(0, 0, n_train).clone(), all.narrow(0, n_train, n_held).clone()};
}

BatchSampler::BatchSampler(torch::Tensor blocks, int64_t batch, uint64_t seed)
    : BatchSampler(blocks.defined() && blocks.dim() == 2 ? blocks.size(0) : 0, batch, seed) {
  blocks_ = std::move(blocks);
}

BatchSampler::BatchSampler(int64_t n, int64_t batch, uint64_t seed) : batch_(batch), seed_(seed), n_(n) {
  if (n < 1) throw Error("BatchSampler: blocks must be a [n, L] tensor with n >= 1");
  if (batch < 1) throw Error("BatchSampler: batch = " + std::to_string(batch) + " must be >= 1");
}

void BatchSampler::build_permutation(uint64_t epoch) {
  if (perm_epoch_ == epoch) return;
  perm_.resize(static_cast<std::size_t>(n_));
  for (int64_t i = 0; i < n_; ++i) perm_[static_cast<std::size_t>(i)] = i;
  uint64_t state = seed_ ^ (0xD1B54A32D192ED03ULL * (epoch + 1));
  for (int64_t i = n_ - 1; i > 0; --i) {
    // Unbiased index in [0, i] by rejection.
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = splitmix64(state);
    while (r >= limit);
    std::swap(perm_[static_cast<std::size_t>(i)], perm_[static_cast<std::size_t>(r % bound)]);
  }
  perm_epoch_ = epoch;
}

std::vector<int64_t> BatchSampler::next_indices() {
  std::vector<int64_t> idx(static_cast<std::size_t>(batch_));
  for (int64_t b = 0; b < batch_; ++b, ++position_) {
    const uint64_t n = static_cast<uint64_t>(n_);
    build_permutation(position_ / n);
    idx[static_cast<std::size_t>(b)] = perm_[static_cast<std::size_t>(position_ % n)];
  }
  return idx;
}

torch::Tensor BatchSampler::next() {
  if (!blocks_.defined()) throw Error("BatchSampler::next: built from a row count; use next_indices()");
  return blocks_.index_select(0, torch::tensor(next_indices(), torch::kInt64).to(blocks_.device()));
}

void BatchSampler::restore(uint64_t state) { position_ = state; }

double BatchSampler::epoch() const { return static_cast<double>(position_) / static_cast<double>(n_); }

}  // namespace peft::text
