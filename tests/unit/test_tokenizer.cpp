// Byte tokenizer, GPT-2 pre-tokenizer, byte-level BPE (hand-made vocab/merges) and the file readers.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "peft/error.hpp"
#include "peft/text/bpe_tokenizer.hpp"
#include "peft/text/pretokenizer.hpp"
#include "peft/text/tokenizer.hpp"
#include "support/fixtures.hpp"

namespace fs = std::filesystem;
using namespace peft::text;

namespace {

using Ids = std::vector<int64_t>;
using Pieces = std::vector<std::string>;

Pieces pieces(std::string_view s) {
  Pieces out;
  for (auto p : gpt2_pretokenize(s)) out.emplace_back(p);
  return out;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// The byte-level spelling of a raw token, e.g. " w" -> "Ġw".
std::string bl(const std::string& raw) { return bytes_to_byte_level(raw); }

// Hand-made vocab: ids 0..255 are the single bytes (id == byte value), then merged tokens.
std::unordered_map<std::string, int64_t> byte_vocab() {
  std::unordered_map<std::string, int64_t> v;
  for (int b = 0; b < 256; ++b) v[bl(std::string(1, static_cast<char>(b)))] = b;
  return v;
}

// Merges (rank = position) and the ids of their results:
//   0 h e -> he 256 | 1 l l -> ll 257 | 2 he ll -> hell 258 | 3 hell o -> hello 259
//   4 Ġ w -> Ġw 260 | 5 o r -> or 261 | 6 Ġw or -> Ġwor 262 | 7 l d -> ld 263 | 8 Ġwor ld -> Ġworld 264
struct HelloWorld {
  std::unordered_map<std::string, int64_t> vocab = byte_vocab();
  std::vector<std::pair<std::string, std::string>> merges;
  HelloWorld() {
    const std::vector<std::pair<std::string, std::string>> raw = {
        {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"},
        {"o", "r"}, {" w", "or"}, {"l", "d"}, {" wor", "ld"}};
    int64_t id = 256;
    for (const auto& [a, b] : raw) {
      merges.emplace_back(bl(a), bl(b));
      vocab[bl(a + b)] = id++;
    }
  }
};

std::string merges_txt(const std::vector<std::pair<std::string, std::string>>& merges) {
  std::string s = "#version: 0.2\n";
  for (const auto& [a, b] : merges) s += a + " " + b + "\n";
  return s;
}

std::string vocab_json(const std::unordered_map<std::string, int64_t>& vocab) {
  peft::JsonValue v = peft::JsonValue::object();
  for (const auto& [tok, id] : vocab) v.set(tok, id);
  return v.dump();
}

// A tokenizer.json like `tokenizers` writes for a trained ByteLevelBPETokenizer.
std::string tokenizer_json(const HelloWorld& hw, bool merges_as_pairs, const std::string& model_type = "BPE",
                           const std::string& pre_tokenizer = R"({"type": "ByteLevel", "add_prefix_space": false,
                               "trim_offsets": true, "use_regex": true})") {
  peft::JsonValue merges = peft::JsonValue::array();
  for (const auto& [a, b] : hw.merges)
    merges.as_array().push_back(merges_as_pairs ? peft::JsonValue(peft::JsonValue::Array{a, b})
                                                : peft::JsonValue(a + " " + b));
  return R"({"version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 265, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                      "rstrip": false, "normalized": false, "special": true}],
    "normalizer": null, "pre_tokenizer": )" + pre_tokenizer + R"(,
    "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    "model": {"type": ")" + model_type + R"(", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": )" + vocab_json(hw.vocab) + R"(, "merges": )" + merges.dump() + "}}";
}

}  // namespace

// ---------------------------------------------------------------- ByteTokenizer

TEST(TokenizerByte, IdsAreBytesAndEndOfTextIs256) {
  ByteTokenizer t;
  EXPECT_EQ(t.vocab_size(), 257);
  EXPECT_EQ(t.eos_id(), std::optional<int64_t>(256));
  EXPECT_EQ(t.encode("Az\n"), (Ids{65, 122, 10}));
  EXPECT_EQ(t.encode("a<|endoftext|>b"), (Ids{97, 256, 98}));
  EXPECT_EQ(t.decode({97, 256, 98}), "a<|endoftext|>b");
  EXPECT_THROW(t.decode({257}), peft::Error);
}

TEST(TokenizerByte, RoundTripsInvalidUtf8AndNul) {
  ByteTokenizer t;
  const std::string s("\xff\xfe\x00 caf\xc3\xa9 \xc3", 11);
  const Ids ids = t.encode(s);
  ASSERT_EQ(ids.size(), s.size());
  EXPECT_EQ(ids[0], 255);
  EXPECT_EQ(t.decode(ids), s);
}

// ---------------------------------------------------------------- pre-tokenizer (GPT-2 regex)

TEST(TokenizerPretokenize, ContractionsAreSplitOffCaseSensitively) {
  EXPECT_EQ(pieces("I'm don't they're we've I'll he'd it's"),
            (Pieces{"I", "'m", " don", "'t", " they", "'re", " we", "'ve", " I", "'ll", " he", "'d", " it", "'s"}));
  // Upper-case contractions are not in the pattern: the apostrophe is punctuation.
  EXPECT_EQ(pieces("DON'T"), (Pieces{"DON", "'", "T"}));
}

TEST(TokenizerPretokenize, LeadingSpaceJoinsTheFollowingWordNumberOrPunctuation) {
  EXPECT_EQ(pieces("Hello world, 2024 !?"), (Pieces{"Hello", " world", ",", " 2024", " !?"}));
  EXPECT_EQ(pieces("abc123def"), (Pieces{"abc", "123", "def"}));
}

TEST(TokenizerPretokenize, MultipleSpacesLeaveTheLastOneForTheWord) {
  EXPECT_EQ(pieces("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(pieces("a    b"), (Pieces{"a", "   ", " b"}));
  EXPECT_EQ(pieces("  hello"), (Pieces{" ", " hello"}));
  EXPECT_EQ(pieces("end   "), (Pieces{"end", "   "}));  // trailing run stays whole
}

TEST(TokenizerPretokenize, NewlinesFollowTheWhitespaceLookahead) {
  // \s+(?!\S) backtracks one code point before a word; a lone \n before a word is matched by \s+.
  EXPECT_EQ(pieces("a\nb"), (Pieces{"a", "\n", "b"}));
  EXPECT_EQ(pieces("a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pieces("a\n\n\nb"), (Pieces{"a", "\n\n", "\n", "b"}));
  EXPECT_EQ(pieces("a\n \nb c\n"), (Pieces{"a", "\n ", "\n", "b", " c", "\n"}));
  EXPECT_EQ(pieces("x\n  y"), (Pieces{"x", "\n ", " y"}));
}

TEST(TokenizerPretokenize, UnicodeLettersDigitsAndInvalidBytes) {
  EXPECT_EQ(pieces("h\xc3\xa9llo w\xc3\xb6rld"), (Pieces{"h\xc3\xa9llo", " w\xc3\xb6rld"}));  // héllo wörld
  EXPECT_EQ(pieces("\xd0\xbc\xd0\xb8\xd1\x80 \xe6\x97\xa5\xe6\x9c\xac"), (Pieces{"\xd0\xbc\xd0\xb8\xd1\x80", " \xe6\x97\xa5\xe6\x9c\xac"}));
  EXPECT_EQ(pieces("x\xc2\xb2 \xc2\xbd"), (Pieces{"x", "\xc2\xb2", " \xc2\xbd"}));  // x² ½ : No digits
  // U+00A0 (no-break space) is whitespace, not the optional U+0020 prefix.
  EXPECT_EQ(pieces("a\xc2\xa0" "b"), (Pieces{"a", "\xc2\xa0", "b"}));
  // Invalid bytes are punctuation-like and stay together.
  EXPECT_EQ(pieces("ok\xff\xfe bad \xc3"), (Pieces{"ok", "\xff\xfe", " bad", " \xc3"}));
  EXPECT_EQ(classify_code_point(0x4E2D), CharClass::Letter);
  EXPECT_EQ(classify_code_point(0x0663), CharClass::Number);
  EXPECT_EQ(classify_code_point(0x3000), CharClass::Space);
  EXPECT_EQ(classify_code_point(0x00D7), CharClass::Other);  // ×
}

TEST(TokenizerPretokenize, PiecesConcatenateBackToTheInput) {
  const std::string s = "  It's 3.14159 -- ok?!\n\n\tNew  para\xe2\x80\x94" "end \xf0\x9f\x98\x80 \xff";
  std::string joined;
  for (auto p : gpt2_pretokenize(s)) joined += std::string(p);
  EXPECT_EQ(joined, s);
}

TEST(TokenizerPretokenize, ByteLevelAlphabetIsGpt2s) {
  EXPECT_EQ(bl(" "), "\xc4\xa0");   // Ġ
  EXPECT_EQ(bl("\n"), "\xc4\x8a");  // Ċ
  EXPECT_EQ(bl("a!~"), "a!~");
  EXPECT_EQ(bytes_to_unicode()[0], 256u);
  EXPECT_EQ(bytes_to_unicode()[0xAD], 256u + 67);  // soft hyphen: the last remapped byte
  std::string raw;
  for (int b = 0; b < 256; ++b) {
    ASSERT_TRUE(byte_level_to_bytes(bl(std::string(1, static_cast<char>(b))), raw));
    EXPECT_EQ(raw, std::string(1, static_cast<char>(b)));
  }
  EXPECT_FALSE(byte_level_to_bytes("\xe2\x82\xac", raw));  // € is not in the alphabet
}

// ---------------------------------------------------------------- BPE

TEST(BpeTokenizer, AppliesMergesByRankOnAHandMadeVocab) {
  HelloWorld hw;
  ByteLevelBPETokenizer t(hw.vocab, hw.merges);
  // "hello" : h e l l o -> (h,e)#0 -> he l l o -> (l,l)#1 -> he ll o -> #2 hell o -> #3 hello = [259]
  // " world": Ġ w o r l d; candidates (Ġ,w)#4 (o,r)#5 (l,d)#7 -> Ġw o r l d -> Ġw or l d
  //           -> (Ġw,or)#6 Ġwor l d -> (l,d)#7 Ġwor ld -> #8 Ġworld = [264]
  EXPECT_EQ(t.encode("hello world"), (Ids{259, 264}));
  // "help": h e l p -> he l p; no (he,l) merge -> [256, 'l'=108, 'p'=112]
  EXPECT_EQ(t.encode("help"), (Ids{256, 108, 112}));
  // " hello" has a leading space: Ġ h e l l o -> Ġ hello (no (Ġ,hello) merge) = [Ġ=bytes 32, 259]
  EXPECT_EQ(t.encode(" hello"), (Ids{32, 259}));
  EXPECT_EQ(t.vocab_size(), 265);
  EXPECT_EQ(t.decode({259, 264}), "hello world");
  EXPECT_EQ(t.id_to_token(264), bl(" world"));
  EXPECT_EQ(t.token_to_id(bl("hell")), 258);
}

TEST(BpeTokenizer, LowerRankWinsOverPosition) {
  auto vocab = byte_vocab();
  vocab["ab"] = 256;
  vocab["bc"] = 257;
  // "abc": (a,b) and (b,c) overlap; the one with the lower rank is applied, wherever it is.
  ByteLevelBPETokenizer bc_first(vocab, {{"b", "c"}, {"a", "b"}});
  EXPECT_EQ(bc_first.encode("abc"), (Ids{'a', 257}));
  ByteLevelBPETokenizer ab_first(vocab, {{"a", "b"}, {"b", "c"}});
  EXPECT_EQ(ab_first.encode("abc"), (Ids{256, 'c'}));
}

TEST(BpeTokenizer, EqualPairsMergeLeftToRight) {
  auto vocab = byte_vocab();
  vocab["aa"] = 256;
  vocab["aaaa"] = 257;
  ByteLevelBPETokenizer t(vocab, {{"a", "a"}, {"aa", "aa"}});
  EXPECT_EQ(t.encode("aaa"), (Ids{256, 'a'}));       // a a a -> aa a
  EXPECT_EQ(t.encode("aaaaa"), (Ids{257, 'a'}));     // aa aa a -> aaaa a
  EXPECT_EQ(t.encode("aaaaaa"), (Ids{257, 256}));    // aa aa aa -> aaaa aa
}

TEST(BpeTokenizer, SpecialTokensAreSplitOutBeforePreTokenization) {
  HelloWorld hw;
  ByteLevelBPETokenizer::AddedToken eot;
  eot.content = "<|endoftext|>";
  eot.id = 265;
  ByteLevelBPETokenizer t(hw.vocab, hw.merges, {eot});
  EXPECT_EQ(t.eos_id(), std::optional<int64_t>(265));
  EXPECT_EQ(t.vocab_size(), 266);
  // The space before the special token stays an ordinary byte; " world" after it keeps its Ġ.
  EXPECT_EQ(t.encode("hello <|endoftext|> world<|endoftext|>"), (Ids{259, 32, 265, 264, 265}));
  EXPECT_EQ(t.decode({259, 32, 265, 264}), "hello <|endoftext|> world");
  // A partial match is ordinary text.
  EXPECT_EQ(t.encode("<|endof").size(), 7u);
}

TEST(BpeTokenizer, AddedTokenStripOptionsSwallowWhitespace) {
  HelloWorld hw;
  ByteLevelBPETokenizer::AddedToken mask;
  mask.content = "<mask>";
  mask.id = 300;
  mask.lstrip = true;
  ByteLevelBPETokenizer t(hw.vocab, hw.merges, {mask});
  EXPECT_EQ(t.encode("hello  <mask>"), (Ids{259, 300}));
  ByteLevelBPETokenizer::AddedToken word = mask;
  word.lstrip = false;
  word.single_word = true;
  ByteLevelBPETokenizer w(hw.vocab, hw.merges, {word});
  EXPECT_EQ(w.encode("x<mask>").size(), 7u);  // inside a word: not matched
  EXPECT_EQ(w.encode("x <mask>"), (Ids{'x', 32, 300}));
}

TEST(BpeTokenizer, DecodeRoundTripsAnyBytes) {
  HelloWorld hw;
  ByteLevelBPETokenizer t(hw.vocab, hw.merges);
  for (const std::string& s : {std::string("hello world\n\n  hello\tworld!"), std::string("\xff\xfe\xc3 \xe6\x97\xa5"),
                              std::string("nul\0byte", 8), std::string()}) {
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
  EXPECT_THROW(t.decode({1000}), peft::Error);
}

TEST(BpeTokenizer, BytesMissingFromTheVocabAreDroppedAsHfDoes) {
  // HF-trained vocabularies without the full initial alphabet lack some byte tokens; HF's BPE
  // (no unk_token) drops such characters, and so do we.
  ByteLevelBPETokenizer t({{"a", 0}, {"b", 1}, {"ab", 2}}, {{"a", "b"}});
  EXPECT_EQ(t.missing_byte_tokens(), 254);
  EXPECT_EQ(t.encode("abcab"), (Ids{2, 2}));
}

TEST(BpeTokenizer, MergeWithUnknownTokenIsRejected) {
  auto vocab = byte_vocab();
  EXPECT_THROW(ByteLevelBPETokenizer(vocab, {{"a", "b"}}), peft::SerializationError);  // "ab" missing
}

// ---------------------------------------------------------------- file readers

TEST(BpeTokenizerFiles, TokenizerJsonWithStringAndPairMergesEncodeAlike) {
  HelloWorld hw;
  const auto dir = peft_test::scratch_dir("tok_json_formats");
  write(dir / "strings.json", tokenizer_json(hw, false));
  write(dir / "pairs.json", tokenizer_json(hw, true));
  auto a = ByteLevelBPETokenizer::from_tokenizer_json(dir / "strings.json");
  auto b = ByteLevelBPETokenizer::from_tokenizer_json(dir / "pairs.json");
  const std::string text = "hello world<|endoftext|>hello";
  EXPECT_EQ(a->encode(text), (Ids{259, 264, 265, 259}));
  EXPECT_EQ(b->encode(text), a->encode(text));
  EXPECT_EQ(a->num_merges(), 9u);
  EXPECT_EQ(a->eos_id(), std::optional<int64_t>(265));
}

TEST(BpeTokenizerFiles, Gpt2VocabAndMergesSkipTheVersionLine) {
  HelloWorld hw;
  hw.vocab["<|endoftext|>"] = 265;
  const auto dir = peft_test::scratch_dir("tok_vocab_merges");
  write(dir / "vocab.json", vocab_json(hw.vocab));
  write(dir / "merges.txt", merges_txt(hw.merges));
  auto t = ByteLevelBPETokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
  EXPECT_EQ(t->num_merges(), 9u);
  // <|endoftext|> in GPT-2's vocab.json is a special token, split out before pre-tokenization.
  EXPECT_EQ(t->encode("hello world<|endoftext|>"), (Ids{259, 264, 265}));
  EXPECT_EQ(t->eos_id(), std::optional<int64_t>(265));
}

TEST(BpeTokenizerFiles, UnsupportedTokenizerJsonIsAConfigErrorNamingFileFieldAndValue) {
  HelloWorld hw;
  const auto dir = peft_test::scratch_dir("tok_unsupported");
  write(dir / "wordpiece.json", tokenizer_json(hw, false, "WordPiece"));
  try {
    ByteLevelBPETokenizer::from_tokenizer_json(dir / "wordpiece.json");
    FAIL() << "expected ConfigError";
  } catch (const peft::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("wordpiece.json"), std::string::npos) << what;
    EXPECT_NE(what.find("model.type"), std::string::npos) << what;
    EXPECT_NE(what.find("WordPiece"), std::string::npos) << what;
    EXPECT_NE(what.find("hint"), std::string::npos) << what;
  }
  write(dir / "metaspace.json", tokenizer_json(hw, false, "BPE", R"({"type": "Metaspace", "replacement": "_"})"));
  try {
    ByteLevelBPETokenizer::from_tokenizer_json(dir / "metaspace.json");
    FAIL() << "expected ConfigError";
  } catch (const peft::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("pre_tokenizer.type = Metaspace"), std::string::npos) << e.what();
  }
}

TEST(BpeTokenizerFiles, MalformedFilesAreSerializationErrorsNamingTheFile) {
  HelloWorld hw;
  const auto dir = peft_test::scratch_dir("tok_malformed");
  write(dir / "broken.json", "{\"model\": {\"type\": \"BPE\", ");
  try {
    ByteLevelBPETokenizer::from_tokenizer_json(dir / "broken.json");
    FAIL();
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
  }
  write(dir / "vocab.json", vocab_json(hw.vocab));
  write(dir / "merges.txt", "#version: 0.2\nh e\nl l extra\n");
  try {
    ByteLevelBPETokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
    FAIL();
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt:3"), std::string::npos) << e.what();
  }
  write(dir / "merges.txt", "#version: 0.2\nh e\nq z\n");  // "qz" is not in the vocab
  try {
    ByteLevelBPETokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
    FAIL();
  } catch (const peft::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q z"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, PrefersTokenizerJsonThenVocabMergesThenBytes) {
  HelloWorld hw;
  const auto dir = peft_test::scratch_dir("tok_load_order");
  EXPECT_EQ(load_tokenizer(dir)->kind(), "byte");
  EXPECT_EQ(load_tokenizer(dir / "missing")->kind(), "byte");
  EXPECT_EQ(load_tokenizer("builtin:tiny-gpt2")->kind(), "byte");

  // vocab.json + merges.txt with only the first 4 merges: "hello world" -> hello Ġ w o r l d.
  auto short_merges = hw.merges;
  short_merges.resize(4);
  write(dir / "vocab.json", vocab_json(hw.vocab));
  write(dir / "merges.txt", merges_txt(short_merges));
  auto vm = load_tokenizer(dir);
  EXPECT_EQ(vm->kind(), "bpe");
  EXPECT_EQ(vm->encode("hello world"), (Ids{259, 32, 'w', 'o', 'r', 'l', 'd'}));

  write(dir / "tokenizer.json", tokenizer_json(hw, true));
  auto tj = load_tokenizer(dir);
  EXPECT_EQ(tj->encode("hello world"), (Ids{259, 264}));
  EXPECT_EQ(tj->vocab_size(), 266);

  fs::remove(dir / "tokenizer.json");
  fs::remove(dir / "merges.txt");
  EXPECT_THROW(load_tokenizer(dir), peft::SerializationError);  // vocab.json without merges.txt
}
