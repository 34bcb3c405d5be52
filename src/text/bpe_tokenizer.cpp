// Byte-level BPE encode/decode (the model); the file readers are in tokenizer_files.cpp.
#include "peft/text/bpe_tokenizer.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <queue>

#include "peft/error.hpp"
#include "peft/text/pretokenizer.hpp"

namespace peft::text {

struct ByteLevelBPETokenizer::Impl {
  std::unordered_map<std::string, int64_t> vocab;        // byte-level spelling -> id
  std::unordered_map<std::string, int64_t> bytes_vocab;  // raw bytes -> id (ignore_merges)
  std::vector<std::string> id_bytes;                     // id -> raw bytes (decode)
  std::vector<std::string> id_spelling;                  // id -> vocab spelling
  std::vector<uint8_t> id_state;                         // 0 unknown, 1 vocab, 2 added token
  std::array<int32_t, 256> byte_id{};
  // (left id, right id) -> (rank, merged id). Keyed as one 64-bit integer.
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::vector<AddedToken> added;                  // sorted by content length, longest first
  std::array<bool, 256> added_first_byte{};      // quick reject while scanning for added tokens
  Options options;
  int64_t vocab_size = 0;
  std::optional<int64_t> eos;

  // Word cache (pre-token bytes -> ids). Bounded: once full, new words are not added (as HF).
  static constexpr std::size_t kCacheCapacity = 200000;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view segment, std::vector<int64_t>& ids) const;
};

// HF tokenizers' Word::merge_all: a heap of (rank, position) candidates, lowest rank first and
// leftmost among equal ranks; stale entries (the pair at that position changed) are skipped.
// This equals GPT-2's "merge every occurrence of the best pair, left to right, repeat".
void ByteLevelBPETokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id, prev, next;
    bool alive;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (unsigned char b : word) {
    int32_t id = byte_id[b];
    if (id < 0) {
      if (!options.unk_id) continue;  // HF BPE without unk_token drops unknown characters
      id = static_cast<int32_t>(*options.unk_id);
    }
    const int32_t pos = static_cast<int32_t>(syms.size());
    syms.push_back({id, pos - 1, pos + 1, true});
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  if (options.ignore_merges) {
    auto it = bytes_vocab.find(std::string(word));
    if (it != bytes_vocab.end()) {
      out.push_back(static_cast<int32_t>(it->second));
      return;
    }
  }
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const {  // priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand> heap;
  for (std::size_t i = 0; i + 1 < syms.size(); ++i) {
    auto it = merges.find(key(syms[i].id, syms[i + 1].id));
    if (it != merges.end()) heap.push({it->second.first, static_cast<int32_t>(i), it->second.second});
  }
  while (!heap.empty()) {
    const Cand top = heap.top();
    heap.pop();
    Sym& cur = syms[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const Sym right = syms[cur.next];
    auto it = merges.find(key(cur.id, right.id));
    if (it == merges.end() || it->second.second != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    syms[cur.next].alive = false;
    cur.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      auto p = merges.find(key(syms[cur.prev].id, cur.id));
      if (p != merges.end()) heap.push({p->second.first, cur.prev, p->second.second});
    }
    if (cur.next >= 0) {
      auto n = merges.find(key(cur.id, syms[cur.next].id));
      if (n != merges.end()) heap.push({n->second.first, top.pos, n->second.second});
    }
  }
  for (const Sym& s : syms)
    if (s.alive) out.push_back(s.id);
}

void ByteLevelBPETokenizer::Impl::encode_segment(std::string_view segment, std::vector<int64_t>& ids) const {
  std::string prefixed;
  if (options.add_prefix_space && (segment.empty() || segment.front() != ' ')) {
    if (segment.empty()) return;
    prefixed = " ";
    prefixed.append(segment);
    segment = prefixed;
  }
  std::vector<int32_t> word_ids;
  for (std::string_view piece : gpt2_pretokenize(segment)) {
    if (piece.size() == 1 && byte_id[static_cast<unsigned char>(piece[0])] >= 0) {
      ids.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
      continue;
    }
    std::string key_str(piece);
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(key_str);
      if (it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    word_ids.clear();
    bpe_word(piece, word_ids);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() < kCacheCapacity) cache.emplace(std::move(key_str), word_ids);
  }
}

ByteLevelBPETokenizer::ByteLevelBPETokenizer(const std::unordered_map<std::string, int64_t>& vocab,
                                             const std::vector<std::pair<std::string, std::string>>& merges,
                                             const std::vector<AddedToken>& added_tokens, Options options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  m.vocab = vocab;
  int64_t max_id = -1;
  for (const auto& kv : vocab) {
    if (kv.second < 0 || kv.second > INT32_MAX)
      throw SerializationError("BPE vocab: token '" + kv.first + "' has id " + std::to_string(kv.second) +
                               " outside [0, 2^31)");
    max_id = std::max(max_id, kv.second);
  }
  for (const auto& a : added_tokens) {
    if (a.id < 0 || a.id > INT32_MAX)
      throw SerializationError("BPE added token '" + a.content + "' has id " + std::to_string(a.id) +
                               " outside [0, 2^31)");
    if (a.content.empty()) throw SerializationError("BPE added token with id " + std::to_string(a.id) + " is empty");
    max_id = std::max(max_id, a.id);
  }
  m.vocab_size = max_id + 1;
  m.id_bytes.assign(static_cast<std::size_t>(m.vocab_size), {});
  m.id_spelling.assign(static_cast<std::size_t>(m.vocab_size), {});
  m.id_state.assign(static_cast<std::size_t>(m.vocab_size), 0);
  m.byte_id.fill(-1);
  std::string raw;
  for (const auto& kv : vocab) {
    const auto id = static_cast<std::size_t>(kv.second);
    m.id_spelling[id] = kv.first;
    // A vocab entry outside the byte-level alphabet (e.g. a special token spelled in the vocab)
    // decodes to its own text.
    m.id_bytes[id] = byte_level_to_bytes(kv.first, raw) ? raw : kv.first;
    m.id_state[id] = 1;
    if (m.options.ignore_merges) m.bytes_vocab.emplace(m.id_bytes[id], kv.second);
  }
  // Single-byte tokens seed every word. When two spellings map to the same byte the lower id wins.
  for (int b = 0; b < 256; ++b) {
    std::string spelled = bytes_to_byte_level(std::string(1, static_cast<char>(b)));
    auto it = vocab.find(spelled);
    if (it != vocab.end()) m.byte_id[b] = static_cast<int32_t>(it->second);
  }
  m.merges.reserve(merges.size() * 2);
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
    const char* missing = ia == vocab.end() ? "left token" : ib == vocab.end() ? "right token"
                          : iab == vocab.end() ? "merged token" : nullptr;
    if (missing)
      throw SerializationError("BPE merge #" + std::to_string(r) + " '" + a + " " + b + "': the " + missing +
                               " is not in the vocab");
    m.merges[Impl::key(static_cast<int32_t>(ia->second), static_cast<int32_t>(ib->second))] = {
        static_cast<int32_t>(r), static_cast<int32_t>(iab->second)};
  }
  m.added = added_tokens;
  std::stable_sort(m.added.begin(), m.added.end(),
                   [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });
  for (const auto& a : m.added) {
    m.added_first_byte[static_cast<unsigned char>(a.content[0])] = true;
    const auto id = static_cast<std::size_t>(a.id);
    m.id_bytes[id] = a.content;
    m.id_spelling[id] = a.content;
    m.id_state[id] = 2;
  }
  for (const char* name : {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"}) {
    for (const auto& a : m.added)
      if (a.content == name) m.eos = a.id;
    if (m.eos) break;
    auto it = vocab.find(name);
    if (it != vocab.end()) {
      m.eos = it->second;
      break;
    }
  }
}

ByteLevelBPETokenizer::~ByteLevelBPETokenizer() = default;

namespace {
// HF's single_word test: is the character next to the match a word character (alphanumeric or
// '_')? Non-ASCII code points use the pre-tokenizer's Letter/Number classes.
bool is_word_cp(std::string_view text, std::size_t start) {
  unsigned char c = static_cast<unsigned char>(text[start]);
  if (c < 0x80) return c == '_' || std::isalnum(c) != 0;
  const int need = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
  if (need < 0 || start + static_cast<std::size_t>(need) >= text.size()) return false;
  uint32_t cp = c & (0x3F >> need);
  for (int i = 1; i <= need; ++i) cp = (cp << 6) | (static_cast<unsigned char>(text[start + i]) & 0x3F);
  CharClass k = classify_code_point(cp);
  return k == CharClass::Letter || k == CharClass::Number;
}
bool word_char_before(std::string_view text, std::size_t end) {
  if (end == 0) return false;
  std::size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return is_word_cp(text, start);
}
bool word_char_at(std::string_view text, std::size_t pos) { return pos < text.size() && is_word_cp(text, pos); }
bool is_space_byte(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }
}  // namespace

std::vector<int64_t> ByteLevelBPETokenizer::encode(std::string_view text, bool /*add_special_tokens*/) const {
  const Impl& m = *impl_;
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (m.added.empty()) {
    m.encode_segment(text, ids);
    return ids;
  }
  // Split out added tokens (HF AddedVocabulary::find_matches: leftmost-longest, non-overlapping;
  // a rejected single_word match still consumes its span; lstrip/rstrip widen the match over
  // ASCII whitespace).
  std::size_t seg_start = 0, pos = 0;
  while (pos < text.size()) {
    if (!m.added_first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const AddedToken* hit = nullptr;
    for (const auto& a : m.added)
      if (text.compare(pos, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (!hit) {
      ++pos;
      continue;
    }
    std::size_t start = pos, stop = pos + hit->content.size();
    pos = stop;
    if (hit->single_word && (word_char_before(text, start) || word_char_at(text, stop))) continue;
    if (hit->lstrip)
      while (start > seg_start && is_space_byte(static_cast<unsigned char>(text[start - 1]))) --start;
    if (hit->rstrip)
      while (stop < text.size() && is_space_byte(static_cast<unsigned char>(text[stop]))) ++stop;
    if (start > seg_start) m.encode_segment(text.substr(seg_start, start - seg_start), ids);
    ids.push_back(hit->id);
    seg_start = pos = stop;
  }
  if (seg_start < text.size()) m.encode_segment(text.substr(seg_start), ids);
  return ids;
}

std::string ByteLevelBPETokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  auto special = [&](int64_t id) {
    for (const auto& a : m.added)
      if (a.id == id) return a.special;
    return false;
  };
  std::string out;
  out.reserve(ids.size() * 4);
  for (int64_t id : ids) {
    if (id < 0 || id >= m.vocab_size || m.id_state[static_cast<std::size_t>(id)] == 0)
      throw Error("ByteLevelBPETokenizer::decode: id " + std::to_string(id) +
                  " is not in the vocabulary (size " + std::to_string(m.vocab_size) + ")");
    if (skip_special_tokens && special(id)) continue;
    out += m.id_bytes[static_cast<std::size_t>(id)];
  }
  return out;
}

int64_t ByteLevelBPETokenizer::vocab_size() const { return impl_->vocab_size; }
SpecialTokenIds ByteLevelBPETokenizer::special_token_ids() const { return {std::nullopt, impl_->eos, std::nullopt, std::nullopt}; }
std::size_t ByteLevelBPETokenizer::num_merges() const { return impl_->merges.size(); }
int ByteLevelBPETokenizer::missing_byte_tokens() const {
  return static_cast<int>(std::count(impl_->byte_id.begin(), impl_->byte_id.end(), -1));
}

std::optional<std::string> ByteLevelBPETokenizer::id_to_token(int64_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= m.vocab_size || m.id_state[static_cast<std::size_t>(id)] == 0) return std::nullopt;
  return m.id_spelling[static_cast<std::size_t>(id)];
}

std::optional<int64_t> ByteLevelBPETokenizer::token_to_id(const std::string& token) const {
  for (const auto& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

}  // namespace peft::text
