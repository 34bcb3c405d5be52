// ByteLevelBPETokenizer: GPT-2's configuration of the general tokenizer.json pipeline
// (HfTokenizer with a BPE model, the ByteLevel pre-tokenizer and decoder, and the added tokens).

#include "peft/text/bpe_tokenizer.hpp"

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"
#include "peft/text/hf_tokenizer.hpp"
#include "peft/text/pretokenizer.hpp"

namespace peft::text {

struct ByteLevelBPETokenizer::Impl {
  std::unique_ptr<HfTokenizer> hf;
  int missing_bytes = 0;
};

ByteLevelBPETokenizer::~ByteLevelBPETokenizer() = default;

ByteLevelBPETokenizer::ByteLevelBPETokenizer(const std::unordered_map<std::string, int64_t>& vocab,
                                             const std::vector<std::pair<std::string, std::string>>& merges,
                                             const std::vector<AddedToken>& added_tokens, Options options)
    : ByteLevelBPETokenizer(build(vocab, merges, added_tokens, options)) {}

ByteLevelBPETokenizer::ByteLevelBPETokenizer(std::unique_ptr<HfTokenizer> hf) : impl_(std::make_unique<Impl>()) {
  impl_->hf = std::move(hf);
  for (int b = 0; b < 256; ++b)
    if (!impl_->hf->token_to_id(bytes_to_byte_level(std::string(1, static_cast<char>(b))))) ++impl_->missing_bytes;
}

std::unique_ptr<HfTokenizer> ByteLevelBPETokenizer::build(const std::unordered_map<std::string, int64_t>& vocab,
                                                          const std::vector<std::pair<std::string, std::string>>& merges,
                                                          const std::vector<AddedToken>& added_tokens, Options options) {
  JsonValue::Object v;
  v.reserve(vocab.size());
  for (const auto& [tok, id] : vocab) v.emplace_back(tok, JsonValue(id));
  JsonValue::Array m;
  m.reserve(merges.size());
  for (const auto& [a, b] : merges) m.emplace_back(JsonValue::Array{a, b});
  JsonValue model = JsonValue::object();
  model.set("type", "BPE");
  model.set("vocab", JsonValue(std::move(v)));
  model.set("merges", JsonValue(std::move(m)));
  model.set("ignore_merges", options.ignore_merges);
  if (options.unk_id)
    for (const auto& [tok, id] : vocab)
      if (id == *options.unk_id) model.set("unk_token", tok);
  JsonValue pre = JsonValue::object();
  pre.set("type", "ByteLevel");
  pre.set("add_prefix_space", options.add_prefix_space);
  pre.set("use_regex", true);
  JsonValue decoder = JsonValue::object();
  decoder.set("type", "ByteLevel");
  JsonValue added = JsonValue::array();
  for (const auto& t : added_tokens) {
    JsonValue a = JsonValue::object();
    a.set("id", t.id);
    a.set("content", t.content);
    a.set("special", t.special);
    a.set("lstrip", t.lstrip);
    a.set("rstrip", t.rstrip);
    a.set("single_word", t.single_word);
    a.set("normalized", false);
    added.as_array().push_back(std::move(a));
  }
  JsonValue root = JsonValue::object();
  root.set("model", std::move(model));
  root.set("pre_tokenizer", std::move(pre));
  root.set("decoder", std::move(decoder));
  root.set("added_tokens", std::move(added));
  root.set("peft_keep_added_token_ids", true);  // the caller's ids, not HF's renumbering
  return HfTokenizer::from_json(root, nullptr, "ByteLevelBPETokenizer");
}

std::vector<int64_t> ByteLevelBPETokenizer::encode(std::string_view text, bool /*add_special_tokens*/) const {
  return impl_->hf->encode(text, false);
}

std::string ByteLevelBPETokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  return impl_->hf->decode(ids, skip_special_tokens);
}

int64_t ByteLevelBPETokenizer::vocab_size() const { return impl_->hf->vocab_size(); }
SpecialTokenIds ByteLevelBPETokenizer::special_token_ids() const { return impl_->hf->special_token_ids(); }
std::size_t ByteLevelBPETokenizer::num_merges() const { return impl_->hf->num_merges(); }
int ByteLevelBPETokenizer::missing_byte_tokens() const { return impl_->missing_bytes; }
std::uint64_t ByteLevelBPETokenizer::dropped_characters() const { return impl_->hf->dropped_characters(); }
std::optional<std::string> ByteLevelBPETokenizer::id_to_token(int64_t id) const { return impl_->hf->id_to_token(id); }
std::optional<int64_t> ByteLevelBPETokenizer::token_to_id(const std::string& token) const {
  return impl_->hf->token_to_id(token);
}

}  // namespace peft::text
