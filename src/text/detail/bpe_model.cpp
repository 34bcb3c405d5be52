// BPE as HF tokenizers' BPE::merge_word + Word::merge_all (a heap ordered by (rank, position)).

#include "bpe_model.hpp"

#include <cstdio>
#include <mutex>
#include <queue>
#include <shared_mutex>

#include "unicode.hpp"

namespace peft::text::detail {

struct BpeModel::Cache {
  static constexpr std::size_t kMaxEntries = 200000;
  static constexpr std::size_t kMaxWordBytes = 256;
  mutable std::shared_mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>> words;
};

BpeModel::~BpeModel() = default;

BpeModel::BpeModel(const std::unordered_map<std::string, int64_t>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& where)
    : options_(std::move(options)), cache_(std::make_unique<Cache>()) {
  int64_t max_id = -1;
  for (const auto& [tok, id] : vocab) max_id = std::max(max_id, id);
  // Ids index a dense table: a file of few entries must not ask for a huge one (one id of
  // 80,000,000 would take gigabytes). Real vocabularies are dense; allow gaps up to 2x + 64Ki.
  const auto entries = static_cast<int64_t>(vocab.size());
  if (max_id >= INT32_MAX || max_id >= 2 * entries + 65536)
    throw SerializationError(where + ": vocab id " + std::to_string(max_id) + " is far beyond its " +
                             std::to_string(entries) + " entries (hint: ids must be (nearly) dense: 0 .. n-1)");
  id_to_token_.resize(static_cast<std::size_t>(max_id + 1));
  has_id_.assign(id_to_token_.size(), false);
  for (const auto& [tok, id] : vocab) {
    id_to_token_[static_cast<std::size_t>(id)] = tok;
    has_id_[static_cast<std::size_t>(id)] = true;
  }
  vocab_.reserve(vocab.size());
  for (const auto& [tok, id] : vocab) {
    // Two tokens with one id: the view must point at a string that stays (the id's own, or a copy).
    const std::string& stored = id_to_token_[static_cast<std::size_t>(id)];
    if (stored == tok) vocab_[std::string_view(stored)] = static_cast<int32_t>(id);
  }
  for (const auto& [tok, id] : vocab)
    if (!vocab_.count(tok)) {
      extra_tokens_.push_back(std::make_unique<std::string>(tok));
      vocab_[std::string_view(*extra_tokens_.back())] = static_cast<int32_t>(id);
    }
  for (const auto& [tok, id] : vocab_) {
    std::size_t len = 0;
    const uint32_t cp = tok.empty() ? kInvalidCodePoint : utf8_decode(tok, 0, len);
    if (cp != kInvalidCodePoint && len == tok.size()) char_ids_[cp] = id;
  }
  const std::size_t prefix_len = options_.continuing_subword_prefix.size();
  std::size_t cap = 16;
  while (cap < merges.size() * 2) cap *= 2;
  merge_table_.assign(cap, Slot{});
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    auto id_of = [&](const std::string& t) {
      auto it = vocab_.find(t);
      if (it == vocab_.end())
        throw SerializationError(where + ": merge \"" + a + " " + b + "\": token \"" + t + "\" is not in the vocab");
      return it->second;
    };
    const int32_t ia = id_of(a), ib = id_of(b);
    const std::string joined = a + (b.size() >= prefix_len ? b.substr(prefix_len) : b);
    const int32_t nid = id_of(joined);
    insert_merge((static_cast<uint64_t>(static_cast<uint32_t>(ia)) << 32) | static_cast<uint32_t>(ib),
                 Merge{static_cast<uint32_t>(i), nid});
  }
  if (options_.unk_token) {
    auto it = vocab_.find(*options_.unk_token);
    if (it != vocab_.end()) unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

namespace {
std::size_t mix(uint64_t key) {  // splitmix64's finalizer
  key ^= key >> 30;
  key *= 0xbf58476d1ce4e5b9ULL;
  key ^= key >> 27;
  key *= 0x94d049bb133111ebULL;
  return static_cast<std::size_t>(key ^ (key >> 31));
}
}  // namespace

void BpeModel::insert_merge(uint64_t key, Merge m) {
  const std::size_t mask = merge_table_.size() - 1;
  for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    Slot& s = merge_table_[i];
    if (s.key == key) {  // a later duplicate overrides, as HF's HashMap collect
      s.merge = m;
      return;
    }
    if (s.key == ~uint64_t{0}) {
      s = Slot{key, m};
      ++num_merges_;
      return;
    }
  }
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  const std::size_t mask = merge_table_.size() - 1;
  for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    const Slot& s = merge_table_[i];
    if (s.key == key) return &s.merge;
    if (s.key == ~uint64_t{0}) return nullptr;
  }
}

std::optional<int64_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= size() || !has_id_[static_cast<std::size_t>(id)]) return nullptr;
  return &id_to_token_[static_cast<std::size_t>(id)];
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool gone;
  };
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id) {
    const int32_t n = static_cast<int32_t>(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back({id, n - 1, -1, false});
  };
  int32_t pending_unk = -1;  // HF's `unk` (-1: none): flushed before the next known symbol
  std::string buf;
  for (std::size_t i = 0; i < w.size();) {
    std::size_t len = 1;
    const uint32_t cp = utf8_decode(w, i, len);
    const bool first = i == 0, last = i + len == w.size();
    std::string_view s = w.substr(i, len);
    bool plain = true;  // s is just the character: look it up by code point
    if ((!first && !options_.continuing_subword_prefix.empty()) || (last && !options_.end_of_word_suffix.empty())) {
      buf.assign(first ? "" : options_.continuing_subword_prefix);
      buf.append(s);
      if (last) buf += options_.end_of_word_suffix;
      s = buf;
      plain = false;
    }
    i += len;
    int32_t found = -1;
    if (plain) {
      if (auto it = char_ids_.find(cp); cp != kInvalidCodePoint && it != char_ids_.end()) found = it->second;
    } else if (auto it = vocab_.find(s); it != vocab_.end()) {
      found = it->second;
    }
    if (found >= 0) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(found);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
      if (all) {
        // As HF: a pending unk is not flushed here, so it lands after these bytes.
        for (unsigned char c : s) add(byte_ids_[c]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !options_.fuse_unk) add(pending_unk);
      pending_unk = *unk_id_;
    } else {
      dropped_.fetch_add(1, std::memory_order_relaxed);  // HF drops it silently; counted for callers
    }
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Entry {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Entry& o) const {  // priority_queue pops the largest: invert for min (rank, pos)
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  auto find = [this](int32_t a, int32_t b) { return find_merge(a, b); };
  std::priority_queue<Entry> queue;
  for (std::size_t k = 0; k + 1 < syms.size(); ++k)
    if (const Merge* m = find(syms[k].id, syms[k + 1].id)) queue.push({m->rank, static_cast<int32_t>(k), m->new_id});
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    Symbol& cur = syms[static_cast<std::size_t>(top.pos)];
    if (cur.gone || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = syms[static_cast<std::size_t>(next_pos)];
    const Merge* m = find(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // an expired entry
    cur.id = top.new_id;
    cur.next = right.next;
    syms[static_cast<std::size_t>(next_pos)].gone = true;
    if (right.next >= 0) syms[static_cast<std::size_t>(right.next)].prev = top.pos;
    if (cur.prev >= 0)
      if (const Merge* pm = find(syms[static_cast<std::size_t>(cur.prev)].id, cur.id))
        queue.push({pm->rank, cur.prev, pm->new_id});
    if (cur.next >= 0)
      if (const Merge* nm = find(cur.id, syms[static_cast<std::size_t>(cur.next)].id))
        queue.push({nm->rank, top.pos, nm->new_id});
  }
  for (const auto& s : syms)
    if (!s.gone) ids.push_back(s.id);
}

void BpeModel::tokenize(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < Cache::kMaxWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::shared_lock<std::shared_mutex> lock(cache_->mu);
    if (auto it = cache_->words.find(key); it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::unique_lock<std::shared_mutex> lock(cache_->mu);
    if (cache_->words.size() < Cache::kMaxEntries) cache_->words.emplace(std::move(key), std::move(ids));
  }
}

}  // namespace peft::text::detail

namespace peft::text::detail {

std::unique_ptr<BpeModel> BpeModel::from_json(const JsonValue& model, const JsonPlace& at) {
  if (!model.is_object()) bad_field(at, "an object", &model);
  const JsonValue* type = model.find("type");
  // tokenizers writes "type": "BPE"; very old files omit it for BPE (detected by "merges").
  const std::string model_type = type && type->is_string() ? type->as_string() : (model.find("merges") ? "BPE" : "");
  if (model_type != "BPE")
    unsupported(at.child("type"), model_type.empty() ? "(missing)" : model_type, "only BPE models are supported",
                "use a BPE tokenizer (GPT-2, Llama, Qwen, Gemma, Mistral style); WordPiece, Unigram and "
                "WordLevel are not implemented");
  if (const JsonValue* d = model.find("dropout"); d && !d->is_null() && (!d->is_number() || d->as_double() != 0.0))
    unsupported(at.child("dropout"), d->is_number() ? std::to_string(d->as_double()) : json_type_name(*d),
                "BPE dropout is random (a training-time option)", "set model.dropout to null");
  BpeOptions o;
  o.byte_fallback = get_bool(model, "byte_fallback", at, false);
  o.fuse_unk = get_bool(model, "fuse_unk", at, false);
  o.ignore_merges = get_bool(model, "ignore_merges", at, false);
  if (const JsonValue* u = model.find("unk_token"); u && !u->is_null()) o.unk_token = get_string(model, "unk_token", at, "");
  o.continuing_subword_prefix = get_string(model, "continuing_subword_prefix", at, "");
  o.end_of_word_suffix = get_string(model, "end_of_word_suffix", at, "");

  const JsonValue* vocab_v = model.find("vocab");
  if (!vocab_v || !vocab_v->is_object()) bad_field(at.child("vocab"), "an object {token: id}", vocab_v);
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(vocab_v->as_object().size());
  for (const auto& [token, id] : vocab_v->as_object()) {
    if (!id.is_int() || id.as_int() < 0)
      throw SerializationError(at.file + ": " + at.field + ".vocab[\"" + token + "\"] must be a non-negative integer id");
    vocab[token] = id.as_int();
  }
  const JsonValue* merges_v = model.find("merges");
  std::vector<std::pair<std::string, std::string>> merges;
  if (merges_v && !merges_v->is_null()) {
    if (!merges_v->is_array()) bad_field(at.child("merges"), "an array", merges_v);
    merges.reserve(merges_v->as_array().size());
    for (std::size_t i = 0; i < merges_v->as_array().size(); ++i) {
      const JsonValue& m = merges_v->as_array()[i];
      const JsonPlace mi = at.child("merges").item(i);
      if (m.is_string()) {
        // "a b": split at the first space, as HF's convert_merges_to_hashmap.
        const std::string& line = m.as_string();
        const auto sp = line.find(' ');
        if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
          throw SerializationError(mi.file + ": " + mi.field + ": merge \"" + line +
                                   "\" is not two tokens separated by one space");
        merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
      } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
                 m.as_array()[1].is_string()) {
        merges.emplace_back(m.as_array()[0].as_string(), m.as_array()[1].as_string());
      } else {
        bad_field(mi, "\"a b\" or [\"a\", \"b\"]", &m);
      }
    }
  }
  return std::make_unique<BpeModel>(vocab, merges, std::move(o), at.file + ": " + at.field);
}

}  // namespace peft::text::detail
