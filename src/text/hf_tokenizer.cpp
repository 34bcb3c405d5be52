// HfTokenizer: wires the tokenizer.json components (src/text/detail/) into HF's encode/decode.

#include "peft/text/hf_tokenizer.hpp"

#include "detail/added_vocabulary.hpp"
#include "detail/bpe_model.hpp"
#include "detail/decoders.hpp"
#include "detail/normalizers.hpp"
#include "detail/post_processor.hpp"
#include "detail/pre_tokenizers.hpp"
#include "peft/error.hpp"
#include "peft/warnings.hpp"

namespace peft::text {

using namespace detail;

namespace detail {
/// Internal tokenizer.json member set by ByteLevelBPETokenizer: use the added-token ids as given.
constexpr const char* kKeepAddedTokenIds = "peft_keep_added_token_ids";
}  // namespace detail

struct HfTokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<AddedVocabulary> added;
  SpecialTokenIds special;
  int64_t vocab_size = 0;
};

HfTokenizer::HfTokenizer() : impl_(std::make_unique<Impl>()) {}
HfTokenizer::~HfTokenizer() = default;

namespace {

// tokenizer_config.json's bos_token etc.: a string, an AddedToken object {"content": ...} or null.
std::optional<std::string> config_token(const JsonValue* config, const char* key) {
  if (!config || !config->is_object()) return std::nullopt;
  const JsonValue* v = config->find(key);
  if (!v) return std::nullopt;
  if (v->is_string()) return v->as_string();
  if (v->is_object())
    if (const JsonValue* c = v->find("content"); c && c->is_string()) return c->as_string();
  return std::nullopt;
}

// HF ignores the ids written in added_tokens: a token already in the vocab keeps the vocab's id,
// the others are numbered from the vocab size on, in file order (HF warns on a mismatch; so do we).
void assign_added_token_ids(std::vector<AddedToken>& added, const BpeModel& model, const std::string& source) {
  int64_t next_id = static_cast<int64_t>(model.vocab_entries());
  std::unordered_map<std::string, int64_t> seen;
  for (auto& t : added) {
    int64_t id;
    if (auto it = seen.find(t.content); it != seen.end()) id = it->second;
    else if (auto vid = model.token_to_id(t.content)) id = *vid;
    else id = next_id++;
    seen.emplace(t.content, id);
    if (id != t.id)
      warn(source + ": added token '" + t.content + "' has id " + std::to_string(t.id) + " in the file but gets id " +
           std::to_string(id) + " (as HF tokenizers numbers added tokens)");
    t.id = id;
  }
}

}  // namespace

std::unique_ptr<HfTokenizer> HfTokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  const JsonValue root = parse_json_file(tokenizer_json);
  const auto config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(config_path, ec)) {
    const JsonValue config = parse_json_file(config_path);
    return from_json(root, &config, tokenizer_json.string());
  }
  return from_json(root, nullptr, tokenizer_json.string());
}

std::unique_ptr<HfTokenizer> HfTokenizer::from_json(const JsonValue& root, const JsonValue* config,
                                                    const std::string& source) {
  if (!root.is_object()) throw SerializationError(source + ": the top level must be a JSON object");
  const JsonPlace top{source, ""};
  std::unique_ptr<HfTokenizer> tok(new HfTokenizer());
  Impl& im = *tok->impl_;
  const JsonValue null_value;
  auto field = [&](const char* key) -> const JsonValue& {
    const JsonValue* v = root.find(key);
    return v ? *v : null_value;
  };
  // truncation/padding are ignored, as transformers' tokenizer(text) does unless asked (docs/tokenizers.md).
  const JsonValue* model = root.find("model");
  if (!model) bad_field(top.child("model"), "an object", nullptr);
  im.model = BpeModel::from_json(*model, top.child("model"));
  im.normalizer = parse_normalizer(field("normalizer"), top.child("normalizer"));
  im.pre_tokenizer = parse_pre_tokenizer(field("pre_tokenizer"), top.child("pre_tokenizer"));
  im.post_processor = parse_post_processor(field("post_processor"), top.child("post_processor"));
  im.decoder = parse_decoder(field("decoder"), top.child("decoder"));
  std::vector<AddedToken> added = AddedVocabulary::parse(field("added_tokens"), top.child("added_tokens"));
  if (!get_bool(root, kKeepAddedTokenIds, top, false)) assign_added_token_ids(added, *im.model, source);
  im.added = std::make_unique<AddedVocabulary>(std::move(added), im.normalizer.get());
  im.vocab_size = im.model->size();
  for (const auto& t : im.added->tokens()) im.vocab_size = std::max(im.vocab_size, t.id + 1);

  // Special ids: tokenizer_config.json first, then well-known names.
  auto id_of = [&](const std::string& name) -> std::optional<int64_t> {
    if (const AddedToken* t = im.added->by_content(name)) return t->id;
    return im.model->token_to_id(name);
  };
  auto pick = [&](const char* key, std::initializer_list<const char*> guesses) -> std::optional<int64_t> {
    if (auto name = config_token(config, key)) return id_of(*name);
    if (config && config->is_object() && config->find(key)) return std::nullopt;  // explicitly null
    for (const char* g : guesses)
      if (auto id = id_of(g)) return id;
    return std::nullopt;
  };
  im.special.bos = pick("bos_token", {"<s>", "<|begin_of_text|>", "<bos>"});
  im.special.eos = pick("eos_token", {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"});
  im.special.pad = pick("pad_token", {"<pad>", "<|pad|>"});
  im.special.unk = pick("unk_token", {});
  if (!im.special.unk)
    if (const JsonValue* u = model->find("unk_token"); u && u->is_string()) im.special.unk = id_of(u->as_string());

  // transformers' LlamaTokenizerFast/GemmaTokenizerFast rebuild the post-processor from
  // add_bos_token/add_eos_token when the config names them; other classes keep tokenizer.json's.
  if (config && config->is_object()) {
    const std::string cls = get_string(*config, "tokenizer_class", {source, "tokenizer_config.json"}, "");
    const bool llama_like = cls.rfind("LlamaTokenizer", 0) == 0 || cls.rfind("GemmaTokenizer", 0) == 0 ||
                            cls.rfind("CodeLlamaTokenizer", 0) == 0;
    const JsonValue* ab = config->find("add_bos_token");
    const JsonValue* ae = config->find("add_eos_token");
    if (llama_like && ((ab && ab->is_bool()) || (ae && ae->is_bool()))) {
      const bool add_bos = ab && ab->is_bool() ? ab->as_bool() : true;
      const bool add_eos = ae && ae->is_bool() ? ae->as_bool() : false;
      std::vector<int64_t> bos, eos;
      if (add_bos && im.special.bos) bos.push_back(*im.special.bos);
      if (add_eos && im.special.eos) eos.push_back(*im.special.eos);
      im.post_processor = make_bos_eos_processor(std::move(bos), std::move(eos));
    }
  }
  return tok;
}

std::vector<int64_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<Piece> pieces = im.added->extract_and_normalize(text, im.normalizer.get());
  if (im.pre_tokenizer) im.pre_tokenizer->pre_tokenize(pieces);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const auto& p : pieces) {
    if (p.id >= 0) ids.push_back(p.id);
    else im.model->tokenize(p.text, ids);
  }
  if (add_special_tokens && im.post_processor) im.post_processor->process(ids);
  return ids;
}

std::string HfTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= im.vocab_size)
      throw Error("HfTokenizer::decode: id " + std::to_string(id) + " is outside [0, " +
                  std::to_string(im.vocab_size) + ")");
    if (const AddedToken* t = im.added->by_id(id)) {
      if (!(skip_special_tokens && t->special)) tokens.push_back(t->content);
    } else if (const std::string* s = im.model->id_to_token(id)) {
      // HF checks specialness by content: a vocab token spelled like a special added token is skipped too.
      const AddedToken* same = skip_special_tokens ? im.added->by_content(*s) : nullptr;
      if (!(same && same->special)) tokens.push_back(*s);
    }
  }
  if (!im.decoder) {
    std::string out;
    for (std::size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  im.decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int64_t HfTokenizer::vocab_size() const { return impl_->vocab_size; }
std::uint64_t HfTokenizer::dropped_characters() const { return impl_->model->dropped(); }
SpecialTokenIds HfTokenizer::special_token_ids() const { return impl_->special; }

std::optional<std::string> HfTokenizer::id_to_token(int64_t id) const {
  if (const AddedToken* t = impl_->added->by_id(id)) return t->content;
  if (const std::string* s = impl_->model->id_to_token(id)) return *s;
  return std::nullopt;
}

std::optional<int64_t> HfTokenizer::token_to_id(const std::string& token) const {
  if (const AddedToken* t = impl_->added->by_content(token)) return t->id;
  return impl_->model->token_to_id(token);
}

std::size_t HfTokenizer::num_merges() const { return impl_->model->num_merges(); }

}  // namespace peft::text
