// HfTokenizer's encode pipeline on hand-written tokenizer.json files: normalizers,
// pre-tokenizers (every Split behaviour), the BPE model options. Expected ids are worked out by
// hand in the comments and were checked once against HF tokenizers (npm `tokenizers@0.23.2`).

#include <gtest/gtest.h>

#include "peft/text/hf_tokenizer.hpp"
#include "support/hf_tokenizer_json.hpp"

using peft_test::bpe_model;
using peft_test::hf_tokenizer;
using Ids = std::vector<int64_t>;

namespace {

// "\u2581" (▁) in UTF-8, for Metaspace / Llama-2 style vocabularies.
const std::string kMeta = "\xE2\x96\x81";

// a b - and the merged tokens a- -b -- ab; merges (a,-) (-,b) (-,-) (a,b) in that rank order.
// Splitting "a-b" differently gives different ids, which makes each Split behaviour visible.
std::string dash_model() {
  return bpe_model(R"({"a": 0, "b": 1, "-": 2, "a-": 3, "-b": 4, "--": 5, "ab": 6})",
                   R"([["a", "-"], ["-", "b"], ["-", "-"], ["a", "b"]])");
}

std::string split_dash(const std::string& behavior, bool invert = false, const std::string& pattern = R"({"String": "-"})") {
  return R"("pre_tokenizer": {"type": "Split", "pattern": )" + pattern + R"(, "behavior": ")" + behavior +
         R"(", "invert": )" + (invert ? "true" : "false") + "}";
}

}  // namespace

// ---------------------------------------------------------------- normalizers

TEST(HfTokenizerNormalizers, UnicodeFormsComposeOrDecompose) {
  // é = U+00E9 (composed) id 0; e + U+0301 (combining acute) ids 1, 2; f i ids 3 4.
  const std::string vocab = "{\"\xC3\xA9\": 0, \"e\": 1, \"\xCC\x81\": 2, \"f\": 3, \"i\": 4}";
  auto nfc = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "NFC"})");
  EXPECT_EQ(nfc->encode("e\xCC\x81"), (Ids{0}));
  auto nfd = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "NFD"})");
  EXPECT_EQ(nfd->encode("\xC3\xA9"), (Ids{1, 2}));
  // NFKC folds the ligature U+FB01 (ﬁ) to "fi"; NFC keeps it (and f/i-only vocab drops it).
  auto nfkc = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "NFKC"})");
  EXPECT_EQ(nfkc->encode("\xEF\xAC\x81"), (Ids{3, 4}));
  EXPECT_EQ(nfc->encode("\xEF\xAC\x81"), (Ids{}));
  auto nfkd = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "NFKD"})");
  EXPECT_EQ(nfkd->encode("\xEF\xAC\x81\xC3\xA9"), (Ids{3, 4, 1, 2}));
}

TEST(HfTokenizerNormalizers, LowercaseStripPrependReplaceInSequence) {
  const std::string vocab = "{\"" + kMeta + "\": 0, \"a\": 1, \"b\": 2, \"x\": 3}";
  // Llama-2: Prepend ▁ then every space -> ▁.
  auto llama = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": ")" + kMeta + R"("},
      {"type": "Replace", "pattern": {"String": " "}, "content": ")" + kMeta + R"("}]})");
  EXPECT_EQ(llama->encode("a b"), (Ids{0, 1, 0, 2}));
  EXPECT_EQ(llama->encode(""), (Ids{}));  // Prepend leaves an empty string empty
  auto lower = hf_tokenizer(bpe_model(vocab, "[]"), R"("normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Lowercase"}, {"type": "Strip", "strip_left": true, "strip_right": true},
      {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": "x"}]})");
  EXPECT_EQ(lower->encode("  A \t B  "), (Ids{1, 3, 2}));  // "a \t b" -> "axb"
  auto left_only = hf_tokenizer(bpe_model(vocab, "[]"),
                                R"("normalizer": {"type": "Strip", "strip_left": true, "strip_right": false})");
  EXPECT_EQ(left_only->encode(" a "), (Ids{1}));  // the trailing space has no token: dropped
}

// ---------------------------------------------------------------- Split behaviours

TEST(HfTokenizerSplit, EveryBehaviourOnALiteralPattern) {
  // No pre-tokenizer: a - b -> (a,-) a- b; (a-,b) is no merge -> [a-, b].
  EXPECT_EQ(hf_tokenizer(dash_model())->encode("a-b"), (Ids{3, 1}));
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Removed"))->encode("a-b"), (Ids{0, 1}));
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Isolated"))->encode("a-b"), (Ids{0, 2, 1}));
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("MergedWithPrevious"))->encode("a-b"), (Ids{3, 1}));
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("MergedWithNext"))->encode("a-b"), (Ids{0, 4}));
  // Contiguous joins neighbouring matches: a | -- | b; Isolated keeps each match apart.
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Contiguous"))->encode("a--b"), (Ids{0, 5, 1}));
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Isolated"))->encode("a--b"), (Ids{0, 2, 2, 1}));
}

TEST(HfTokenizerSplit, RegexPatternAndInvert) {
  // Inverted, [ab] matches become the kept pieces and "-" the match that Removed drops.
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Removed", true, R"({"Regex": "[ab]"})"))->encode("a-b"),
            (Ids{0, 1}));
  // Not inverted, Removed drops a and b: only "-" is left.
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Removed", false, R"({"Regex": "[ab]"})"))->encode("a-b"),
            (Ids{2}));
  // Unicode classes and case-insensitive groups work as in HF's Oniguruma patterns.
  EXPECT_EQ(hf_tokenizer(dash_model(), split_dash("Isolated", false, R"({"Regex": "(?i:A)|\\p{L}+"})"))->encode("ab"),
            (Ids{0, 1}));
}

// ---------------------------------------------------------------- other pre-tokenizers

TEST(HfTokenizerPreTokenizers, MetaspacePrependSchemesAndSplit) {
  // ▁ a b ▁a ▁b a▁ ; merges (a,▁) (▁,a) (▁,b); <x> is an added token (id 6).
  const std::string model = bpe_model("{\"" + kMeta + "\": 0, \"a\": 1, \"b\": 2, \"" + kMeta + "a\": 3, \"" + kMeta +
                                          "b\": 4, \"a" + kMeta + "\": 5}",
                                      "[[\"a\", \"" + kMeta + "\"], [\"" + kMeta + "\", \"a\"], [\"" + kMeta + "\", \"b\"]]");
  const std::string added = R"("added_tokens": [{"id": 6, "content": "<x>", "special": true, "normalized": false}])";
  auto meta = [&](const std::string& scheme, bool split) {
    return hf_tokenizer(model, added + R"(, "pre_tokenizer": {"type": "Metaspace", "replacement": ")" + kMeta +
                                   R"(", "prepend_scheme": ")" + scheme + R"(", "split": )" + (split ? "true" : "false") + "}");
  };
  // always: "a b" -> ▁a▁b -> split before each ▁: ▁a | ▁b.
  EXPECT_EQ(meta("always", true)->encode("a b"), (Ids{3, 4}));
  EXPECT_EQ(meta("always", true)->encode("<x>a b"), (Ids{6, 3, 4}));
  // first: only the piece at offset 0 of the input gets the ▁.
  EXPECT_EQ(meta("first", true)->encode("a b"), (Ids{3, 4}));
  EXPECT_EQ(meta("first", true)->encode("<x>a b"), (Ids{6, 1, 4}));
  EXPECT_EQ(meta("never", true)->encode("a b"), (Ids{1, 4}));
  // split false: ▁a▁b is one word; (a,▁) has the lowest rank -> ▁ a▁ b.
  EXPECT_EQ(meta("always", false)->encode("a b"), (Ids{0, 5, 2}));
}

TEST(HfTokenizerPreTokenizers, DigitsPunctuationAndWhitespace) {
  const std::string model = bpe_model(R"({"a": 0, "1": 1, "2": 2, "12": 3, ",": 4, "a,": 5, " ": 6, "a1": 7})",
                                      R"([["a", ","], ["1", "2"], ["a", "1"]])");
  // No pre-tokenizer: a 1 2 -> (1,2) has rank 1, (a,1) rank 2 -> a 12.
  EXPECT_EQ(hf_tokenizer(model)->encode("a12"), (Ids{0, 3}));
  EXPECT_EQ(hf_tokenizer(model, R"("pre_tokenizer": {"type": "Digits", "individual_digits": true})")->encode("a12"),
            (Ids{0, 1, 2}));
  EXPECT_EQ(hf_tokenizer(model, R"("pre_tokenizer": {"type": "Digits", "individual_digits": false})")->encode("a1"),
            (Ids{0, 1}));
  EXPECT_EQ(hf_tokenizer(model)->encode("a,a"), (Ids{5, 0}));
  EXPECT_EQ(hf_tokenizer(model, R"("pre_tokenizer": {"type": "Punctuation", "behavior": "Isolated"})")->encode("a,a"),
            (Ids{0, 4, 0}));
  EXPECT_EQ(hf_tokenizer(model, R"("pre_tokenizer": {"type": "WhitespaceSplit"})")->encode(" a  1 "), (Ids{0, 1}));
  // Whitespace keeps \w+ and [^\w\s]+ runs: "a," -> a | ,
  EXPECT_EQ(hf_tokenizer(model, R"("pre_tokenizer": {"type": "Whitespace"})")->encode("a, 12"), (Ids{0, 4, 3}));
}

TEST(HfTokenizerPreTokenizers, ByteLevelPrefixSpaceAndRegex) {
  // Ġ h i Ġh Ġhi hi iĠ ; merges (i,Ġ) (Ġ,h) (Ġh,i) (h,i).
  const std::string g = "\xC4\xA0";
  const std::string model = bpe_model("{\"" + g + "\": 0, \"h\": 1, \"i\": 2, \"" + g + "h\": 3, \"" + g + "hi\": 4, \"hi\": 5, \"i" +
                                          g + "\": 6}",
                                      "[[\"i\", \"" + g + "\"], [\"" + g + "\", \"h\"], [\"" + g + "h\", \"i\"], [\"h\", \"i\"]]");
  auto bl = [&](bool prefix, bool regex) {
    return hf_tokenizer(model, std::string(R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": )") +
                                   (prefix ? "true" : "false") + R"(, "use_regex": )" + (regex ? "true" : "false") +
                                   R"(}, "decoder": {"type": "ByteLevel"})");
  };
  EXPECT_EQ(bl(false, true)->encode("hi"), (Ids{5}));
  EXPECT_EQ(bl(true, true)->encode("hi"), (Ids{4}));  // " hi" -> Ġhi
  // With GPT-2's regex: "hi" | " hi". Without: hiĠhi is one word and (i,Ġ) merges first.
  EXPECT_EQ(bl(false, true)->encode("hi hi"), (Ids{5, 4}));
  EXPECT_EQ(bl(false, false)->encode("hi hi"), (Ids{1, 6, 5}));
  EXPECT_EQ(bl(false, true)->decode({5, 4}), "hi hi");
}

// ---------------------------------------------------------------- BPE model options

TEST(HfTokenizerBpe, ByteFallbackSpellsUnknownCharactersAsBytes) {
  // é (C3 A9) is not in the vocab; its bytes are.
  auto t = hf_tokenizer(bpe_model(R"({"<unk>": 0, "a": 1, "<0xC3>": 2, "<0xA9>": 3})", "[]",
                                  R"("unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true)"),
                        R"("decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]})");
  EXPECT_EQ(t->encode("a\xC3\xA9"), (Ids{1, 2, 3}));
  EXPECT_EQ(t->decode({1, 2, 3}), "a\xC3\xA9");
  // ™ (E2 84 A2) has no byte tokens: unk.
  EXPECT_EQ(t->encode("\xE2\x84\xA2" "a"), (Ids{0, 1}));
  // HF's order: a pending unk is not flushed before byte-fallback tokens, so it comes after them.
  EXPECT_EQ(t->encode("\xE2\x84\xA2\xC3\xA9"), (Ids{2, 3, 0}));
  // A lone byte that is not UTF-8 decodes to U+FFFD, one per byte (HF).
  EXPECT_EQ(t->decode({1, 2}), "a\xEF\xBF\xBD");
}

TEST(HfTokenizerBpe, UnknownCharactersFuseOnlyWithFuseUnk) {
  const std::string vocab = R"({"<unk>": 0, "a": 1})";
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, "[]", R"("unk_token": "<unk>", "fuse_unk": true)"))->encode("xya"), (Ids{0, 1}));
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, "[]", R"("unk_token": "<unk>", "fuse_unk": false)"))->encode("xya"),
            (Ids{0, 0, 1}));
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, "[]"))->encode("xya"), (Ids{1}));  // no unk_token: dropped
}

TEST(HfTokenizerBpe, IgnoreMergesTakesWholeWordsFromTheVocab) {
  // "abc" is in the vocab but no merge chain builds it (only (a,b)).
  const std::string vocab = R"({"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4})";
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, R"([["a", "b"]])"))->encode("abc"), (Ids{3, 2}));
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, R"([["a", "b"]])", R"("ignore_merges": true)"))->encode("abc"), (Ids{4}));
}

TEST(HfTokenizerBpe, SubwordPrefixAndEndOfWordSuffix) {
  // continuing_subword_prefix: non-first characters are looked up as ##x; a + ##b -> "ab".
  auto prefix = hf_tokenizer(bpe_model(R"({"a": 0, "##b": 1, "ab": 2, "b": 3})", R"([["a", "##b"]])",
                                       R"("continuing_subword_prefix": "##")"));
  EXPECT_EQ(prefix->encode("ab"), (Ids{2}));
  EXPECT_EQ(prefix->encode("ba"), (Ids{3}));  // "##a" is unknown and dropped
  auto suffix = hf_tokenizer(bpe_model(R"({"a": 0, "b</w>": 1, "ab</w>": 2})", R"([["a", "b</w>"]])",
                                       R"("end_of_word_suffix": "</w>")"));
  EXPECT_EQ(suffix->encode("ab"), (Ids{2}));
}

TEST(HfTokenizerBpe, MergesAsStringsOrPairsAndRankOrder) {
  const std::string vocab = R"({"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4})";
  // The lower rank wins wherever it is; string "b c" and pair forms are the same merge.
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, R"(["b c", "a b"])"))->encode("abc"), (Ids{0, 4}));
  EXPECT_EQ(hf_tokenizer(bpe_model(vocab, R"([["a", "b"], ["b", "c"]])"))->encode("abc"), (Ids{3, 2}));
}
