// HfTokenizer around the model: added tokens (special, normalized, lstrip/rstrip/single_word),
// post-processors (add_special_tokens), decoders (decode / skip_special_tokens), special ids from
// tokenizer_config.json and the refusals of what is not implemented. Expected ids are worked out by
// hand and were checked once against HF tokenizers (npm `tokenizers@0.23.2`).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "peft/error.hpp"
#include "peft/warnings.hpp"
#include "peft/text/hf_tokenizer.hpp"
#include "support/fixtures.hpp"
#include "support/hf_tokenizer_json.hpp"

using peft_test::bpe_model;
using peft_test::hf_tokenizer;
using Ids = std::vector<int64_t>;

namespace {

const std::string kMeta = "\xE2\x96\x81";

// Characters a b x and space as tokens 0..3; specials <s>=4 </s>=5; plus `added` entries.
std::string abx_model() { return bpe_model(R"({"a": 0, "b": 1, "x": 2, " ": 3, "<s>": 4, "</s>": 5})", "[]"); }

std::string added(const std::string& entries) {
  return R"("added_tokens": [{"id": 4, "content": "<s>", "special": true, "normalized": false},
                             {"id": 5, "content": "</s>", "special": true, "normalized": false})" +
         (entries.empty() ? "" : ", " + entries) + "]";
}

// The message of the ConfigError thrown while building a tokenizer from `extra`.
std::string refusal(const std::string& model, const std::string& extra = "") {
  try {
    hf_tokenizer(model, extra);
  } catch (const peft::ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

}  // namespace

// ---------------------------------------------------------------- added tokens

TEST(HfTokenizerAddedTokens, SplitOutBeforeTheModelLeftmostLongest) {
  auto t = hf_tokenizer(abx_model(), added(R"({"id": 6, "content": "<s><s>", "special": false, "normalized": false})"));
  EXPECT_EQ(t->encode("a<s>b</s>"), (Ids{0, 4, 1, 5}));
  EXPECT_EQ(t->encode("<s><s><s>"), (Ids{6, 4}));  // the longest match at the leftmost position
  EXPECT_EQ(t->encode("<s"), (Ids{}));               // '<' and 's' are not in the vocab
  EXPECT_EQ(t->vocab_size(), 7);
}

TEST(HfTokenizerAddedTokens, IdsAreNumberedAsHfDoesWithAWarning) {
  // HF ignores added_tokens' ids: vocab tokens keep theirs, new ones follow the vocab (6 entries).
  peft::ScopedWarningCapture warnings;
  auto t = hf_tokenizer(abx_model(), added(R"({"id": 40, "content": "<q>", "normalized": false})"));
  EXPECT_EQ(t->encode("<q>"), (Ids{6}));
  ASSERT_EQ(warnings.messages().size(), 1u);
  EXPECT_NE(warnings.messages()[0].find("'<q>' has id 40"), std::string::npos) << warnings.messages()[0];
}

TEST(HfTokenizerAddedTokens, StripAndSingleWordOptions) {
  auto t = hf_tokenizer(abx_model(), added(R"({"id": 6, "content": "<m>", "lstrip": true, "normalized": false},
      {"id": 7, "content": "<r>", "rstrip": true, "normalized": false},
      {"id": 8, "content": "ab", "single_word": true, "normalized": false})"));
  EXPECT_EQ(t->encode("a  <m> b"), (Ids{0, 6, 3, 1}));  // lstrip swallows the spaces before
  EXPECT_EQ(t->encode("a <r>  b"), (Ids{0, 3, 7, 1}));  // rstrip swallows the spaces after
  EXPECT_EQ(t->encode("x ab x"), (Ids{2, 3, 8, 3, 2}));
  EXPECT_EQ(t->encode("xab"), (Ids{2, 0, 1}));  // inside a word: not the added token
}

TEST(HfTokenizerAddedTokens, NormalizedTokensMatchTheNormalizedText) {
  // Lowercase normalizer. <X> (normalized=false) matches the raw text only; <Y> (normalized=true)
  // is stored as "<y>" and matches after lowercasing.
  auto t = hf_tokenizer(abx_model(), added(R"({"id": 6, "content": "<X>", "normalized": false},
      {"id": 7, "content": "<Y>", "normalized": true})") + R"(, "normalizer": {"type": "Lowercase"})");
  EXPECT_EQ(t->encode("A<X>"), (Ids{0, 6}));
  EXPECT_EQ(t->encode("A<x>"), (Ids{0, 2}));  // < and > have no token
  EXPECT_EQ(t->encode("<Y>b<y>"), (Ids{7, 1, 7}));
}

// ---------------------------------------------------------------- post-processors

TEST(HfTokenizerPostProcessor, TemplateAddsSpecialsOnlyWhenAsked) {
  auto t = hf_tokenizer(abx_model(), added("") + R"(, "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
      "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]},
                                     "</s>": {"id": "</s>", "ids": [5], "tokens": ["</s>"]}}})");
  EXPECT_EQ(t->encode("ab", false), (Ids{0, 1}));
  EXPECT_EQ(t->encode("ab", true), (Ids{4, 0, 1, 5}));
  EXPECT_EQ(t->encode("", true), (Ids{4, 5}));
}

TEST(HfTokenizerPostProcessor, RobertaBertAndSequence) {
  auto roberta = hf_tokenizer(abx_model(), added("") + R"(, "post_processor": {"type": "RobertaProcessing",
      "sep": ["</s>", 5], "cls": ["<s>", 4], "trim_offsets": true, "add_prefix_space": false})");
  EXPECT_EQ(roberta->encode("a", true), (Ids{4, 0, 5}));
  auto seq = hf_tokenizer(abx_model(), added("") + R"(, "post_processor": {"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "BertProcessing", "sep": ["</s>", 5], "cls": ["<s>", 4]}]})");
  EXPECT_EQ(seq->encode("b", true), (Ids{4, 1, 5}));
}

TEST(HfTokenizerPostProcessor, LlamaConfigAddBosEosRewritesTheTemplate) {
  const std::string doc = added("") + R"(, "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]}}})";
  auto llama = hf_tokenizer(abx_model(), doc, R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>",
      "eos_token": {"content": "</s>", "lstrip": false}, "add_bos_token": true, "add_eos_token": true})");
  EXPECT_EQ(llama->encode("a", true), (Ids{4, 0, 5}));
  // Other tokenizer classes keep tokenizer.json's template.
  auto other = hf_tokenizer(abx_model(), doc, R"({"tokenizer_class": "PreTrainedTokenizerFast",
      "add_eos_token": true, "eos_token": "</s>"})");
  EXPECT_EQ(other->encode("a", true), (Ids{4, 0}));
}

// ---------------------------------------------------------------- decoders

TEST(HfTokenizerDecoders, LlamaChainReplaceByteFallbackFuseStrip) {
  auto t = hf_tokenizer(bpe_model("{\"" + kMeta + "a\": 0, \"" + kMeta + "b\": 1, \"<0x21>\": 2, \"c\": 3, \"<s>\": 4, \"</s>\": 5}", "[]"),
                        added("") + R"(, "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": ")" + kMeta + R"("}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");
  // ▁a ▁b <0x21> -> " a b!" -> strip one leading space.
  EXPECT_EQ(t->decode({0, 1, 2}), "a b!");
  EXPECT_EQ(t->decode({4, 0, 5}, false), "<s> a</s>");
  EXPECT_EQ(t->decode({4, 0, 5}, true), "a");
  EXPECT_THROW(t->decode({6}), peft::Error);
}

TEST(HfTokenizerDecoders, MetaspaceWordPieceAndNoDecoder) {
  const std::string vocab = "{\"" + kMeta + "a\": 0, \"" + kMeta + "b\": 1, \"##c\": 2, \"d\": 3}";
  // Metaspace: every ▁ of the first token is dropped (prepend scheme always), the others are spaces.
  auto meta = hf_tokenizer(bpe_model(vocab, "[]"), R"("decoder": {"type": "Metaspace", "replacement": ")" + kMeta +
                                                       R"(", "prepend_scheme": "always", "split": true})");
  EXPECT_EQ(meta->decode({0, 1}), "a b");
  auto wp = hf_tokenizer(bpe_model(vocab, "[]"), R"("decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true})");
  EXPECT_EQ(wp->decode({3, 2, 3}), "dc d");
  auto none = hf_tokenizer(bpe_model(vocab, "[]"));
  EXPECT_EQ(none->decode({3, 2}), "d ##c");  // HF joins tokens with spaces without a decoder
}

// ---------------------------------------------------------------- special ids and loading

TEST(HfTokenizerSpecialIds, FromTokenizerConfigElseWellKnownNames) {
  auto guessed = hf_tokenizer(abx_model(), added(""));
  EXPECT_EQ(guessed->special_token_ids().bos, std::optional<int64_t>(4));
  EXPECT_EQ(guessed->eos_id(), std::optional<int64_t>(5));
  EXPECT_EQ(guessed->special_token_ids().pad, std::nullopt);
  auto config = hf_tokenizer(abx_model(), added(""), R"({"bos_token": null, "eos_token": {"content": "<s>"},
      "pad_token": "</s>", "unk_token": "x"})");
  EXPECT_EQ(config->special_token_ids().bos, std::nullopt);  // explicitly null: no guess
  EXPECT_EQ(config->eos_id(), std::optional<int64_t>(4));
  EXPECT_EQ(config->special_token_ids().pad, std::optional<int64_t>(5));
  EXPECT_EQ(config->special_token_ids().unk, std::optional<int64_t>(2));
}

TEST(HfTokenizerLoad, LoadTokenizerReadsTokenizerJsonAndItsConfig) {
  const auto dir = peft_test::scratch_dir("hf_tok_load");
  std::ofstream(dir / "tokenizer.json") << R"({"model": )" << abx_model() << ", " << added("") << "}";
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<s>"})";
  auto t = peft::text::load_tokenizer(dir);
  EXPECT_EQ(t->kind(), "hf");
  EXPECT_EQ(t->encode("ab</s>"), (Ids{0, 1, 5}));
  EXPECT_EQ(t->eos_id(), std::optional<int64_t>(4));
}

// ---------------------------------------------------------------- refusals

TEST(HfTokenizerRefusals, UnsupportedComponentsAreConfigErrorsNamingFileFieldAndValue) {
  const std::string bert = refusal(abx_model(), R"("normalizer": {"type": "BertNormalizer", "lowercase": true})");
  EXPECT_NE(bert.find("t/tokenizer.json: normalizer.type = BertNormalizer"), std::string::npos) << bert;
  EXPECT_NE(bert.find("hint"), std::string::npos) << bert;
  const std::string nested = refusal(abx_model(), R"("normalizer": {"type": "Sequence", "normalizers": [
      {"type": "NFC"}, {"type": "Precompiled", "precompiled_charsmap": ""}]})");
  EXPECT_NE(nested.find("normalizer.normalizers[1].type = Precompiled"), std::string::npos) << nested;
  const std::string wordpiece = refusal(R"({"type": "WordPiece", "vocab": {}})");
  EXPECT_NE(wordpiece.find("model.type = WordPiece"), std::string::npos) << wordpiece;
  const std::string dropout = refusal(R"({"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []})");
  EXPECT_NE(dropout.find("model.dropout"), std::string::npos) << dropout;
  const std::string pre = refusal(abx_model(), R"("pre_tokenizer": {"type": "BertPreTokenizer"})");
  EXPECT_NE(pre.find("pre_tokenizer.type = BertPreTokenizer"), std::string::npos) << pre;
  const std::string regex = refusal(abx_model(), R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"},
      "behavior": "Isolated", "invert": false})");
  EXPECT_NE(regex.find("pre_tokenizer.pattern = (a"), std::string::npos) << regex;
  const std::string dec = refusal(abx_model(), R"("decoder": {"type": "CTC"})");
  EXPECT_NE(dec.find("decoder.type = CTC"), std::string::npos) << dec;
  const std::string post = refusal(abx_model(), R"("post_processor": {"type": "Custom"})");
  EXPECT_NE(post.find("post_processor.type = Custom"), std::string::npos) << post;
}

TEST(HfTokenizerRefusals, MalformedFieldsAreSerializationErrors) {
  EXPECT_THROW(hf_tokenizer(bpe_model(R"({"a": 0})", R"([["a", "b"]])")), peft::SerializationError);  // b unknown
  EXPECT_THROW(hf_tokenizer(abx_model(), R"("added_tokens": [{"id": -1, "content": "z"}])"), peft::SerializationError);
  EXPECT_THROW(hf_tokenizer(abx_model(), R"("pre_tokenizer": {"type": "Split"})"), peft::SerializationError);
}
