// peft::JsonValue: parsing (file order, int vs float, errors) and dump() matching Python's
// json.dumps byte for byte. Expected strings were produced with CPython's json module.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "peft/error.hpp"
#include "peft/format/json_value.hpp"

namespace {

using peft::JsonValue;

testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// ---------------------------------------------------------------- parse

TEST(JsonValueParse, KeepsObjectKeysInFileOrder) {
  JsonValue v = JsonValue::parse(R"({"zeta": 1, "alpha": 2, "mid": 3})");
  ASSERT_TRUE(v.is_object());
  const auto& o = v.as_object();
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].first, "zeta");
  EXPECT_EQ(o[1].first, "alpha");
  EXPECT_EQ(o[2].first, "mid");
}

TEST(JsonValueParse, DuplicateKeyKeepsFirstPositionAndLastValueLikePython) {
  // json.loads('{"a":1,"b":2,"a":3}') == {'a': 3, 'b': 2}
  JsonValue v = JsonValue::parse(R"({"a": 1, "b": 2, "a": 3})");
  const auto& o = v.as_object();
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].first, "a");
  EXPECT_EQ(o[0].second.as_int(), 3);
  EXPECT_EQ(o[1].first, "b");
}

TEST(JsonValueParse, DistinguishesIntsFromFloats) {
  JsonValue v = JsonValue::parse(R"([8, 8.0, 1e3, -3, -0.5, 9223372036854775807])");
  const auto& a = v.as_array();
  ASSERT_EQ(a.size(), 6u);
  EXPECT_TRUE(a[0].is_int());
  EXPECT_EQ(a[0].as_int(), 8);
  EXPECT_TRUE(a[1].is_float());
  EXPECT_EQ(a[1].as_double(), 8.0);
  EXPECT_TRUE(a[2].is_float());  // json.loads("1e3") == 1000.0
  EXPECT_EQ(a[2].as_double(), 1000.0);
  EXPECT_TRUE(a[3].is_int());
  EXPECT_EQ(a[3].as_int(), -3);
  EXPECT_TRUE(a[4].is_float());
  EXPECT_EQ(a[4].as_double(), -0.5);
  EXPECT_TRUE(a[5].is_int());
  EXPECT_EQ(a[5].as_int(), std::numeric_limits<std::int64_t>::max());
}

TEST(JsonValueParse, ReadsScalarsOfEveryType) {
  JsonValue v = JsonValue::parse(R"({"n": null, "t": true, "f": false, "s": "x"})");
  EXPECT_TRUE(v.find("n")->is_null());
  EXPECT_TRUE(v.find("t")->as_bool());
  EXPECT_FALSE(v.find("f")->as_bool());
  EXPECT_EQ(v.find("s")->as_string(), "x");
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(JsonValueParse, ReadsNestedArraysAndObjects) {
  JsonValue v = JsonValue::parse(R"({"layers": [[0, 1], [], [2, [3, {"k": []}]]]})");
  const auto& outer = v.find("layers")->as_array();
  ASSERT_EQ(outer.size(), 3u);
  EXPECT_EQ(outer[0].as_array().size(), 2u);
  EXPECT_EQ(outer[0].as_array()[1].as_int(), 1);
  EXPECT_TRUE(outer[1].is_array());
  EXPECT_TRUE(outer[1].as_array().empty());
  const auto& inner = outer[2].as_array()[1].as_array();
  EXPECT_EQ(inner[0].as_int(), 3);
  ASSERT_TRUE(inner[1].is_object());
  EXPECT_TRUE(inner[1].find("k")->is_array());
}

TEST(JsonValueParse, DecodesUnicodeEscapesToUtf8) {
  JsonValue v = JsonValue::parse(R"(["\u00e9", "\ud83d\ude00", "a\nb\t\"\\\/"])");
  const auto& a = v.as_array();
  EXPECT_EQ(a[0].as_string(), "\xC3\xA9");          // é
  EXPECT_EQ(a[1].as_string(), "\xF0\x9F\x98\x80");  // U+1F600 from a surrogate pair
  EXPECT_EQ(a[2].as_string(), "a\nb\t\"\\/");
}

TEST(JsonValueParse, AcceptsRawUtf8InStrings) {
  JsonValue v = JsonValue::parse("\"caf\xC3\xA9\"");
  EXPECT_EQ(v.as_string(), "caf\xC3\xA9");
}

// ---------------------------------------------------------------- parse errors

TEST(JsonValueParseErrors, RejectsMalformedJson) {
  for (const char* text : {"", "{", "[1, 2,]", "{\"a\" 1}", "{'a': 1}", "[1] x", "tru", "{\"a\": 1,}",
                           "// comment\n{}"}) {
    SCOPED_TRACE(text);
    EXPECT_THROW(JsonValue::parse(text), peft::SerializationError);
  }
}

TEST(JsonValueParseErrors, MessageSaysTheJsonIsInvalid) {
  try {
    JsonValue::parse("{\"r\": 8,, }");
    FAIL() << "expected SerializationError";
  } catch (const peft::SerializationError& e) {
    EXPECT_TRUE(Contains(e.what(), "invalid JSON"));
  }
}

TEST(JsonValueParseErrors, RejectsInvalidUtf8Bytes) {
  EXPECT_THROW(JsonValue::parse("\"\xFF\""), peft::SerializationError);
  EXPECT_THROW(JsonValue::parse("\"\xC3\""), peft::SerializationError);      // truncated sequence
  EXPECT_THROW(JsonValue::parse("\"\xC0\xAF\""), peft::SerializationError);  // overlong '/'
  EXPECT_THROW(JsonValue::parse("{\"k\xE9y\": 1}"), peft::SerializationError);  // Latin-1 in key
}

TEST(JsonValueParseErrors, RejectsIntegersBeyondInt64) {
  EXPECT_THROW(JsonValue::parse("18446744073709551615"), peft::SerializationError);
}

TEST(JsonValueParseErrors, AcceptsNestingOf512Levels) {
  std::string text = std::string(512, '[') + std::string(512, ']');
  JsonValue v = JsonValue::parse(text);
  int depth = 0;
  const JsonValue* p = &v;
  while (p->is_array()) {
    ++depth;
    if (p->as_array().empty()) break;
    p = &p->as_array()[0];
  }
  EXPECT_EQ(depth, 512);
}

TEST(JsonValueParseErrors, RejectsNestingDeeperThan512Levels) {
  std::string arrays = std::string(513, '[') + std::string(513, ']');
  EXPECT_THROW(JsonValue::parse(arrays), peft::SerializationError);
  std::string objects;
  for (int i = 0; i < 513; ++i) objects += "{\"a\": ";
  objects += "1" + std::string(513, '}');
  try {
    JsonValue::parse(objects);
    FAIL() << "expected SerializationError";
  } catch (const peft::SerializationError& e) {
    EXPECT_TRUE(Contains(e.what(), "512"));
  }
}

TEST(JsonValueParseErrors, BracketsInsideStringsDoNotCountAsNesting) {
  std::string brackets(600, '[');
  JsonValue v = JsonValue::parse("{\"pattern\": \"" + brackets + "\", \"q\": \"\\\"[\"}");
  EXPECT_EQ(v.find("pattern")->as_string(), brackets);
  EXPECT_EQ(v.find("q")->as_string(), "\"[");
}

// ---------------------------------------------------------------- dump

TEST(JsonValueDump, WritesFloatsLikePythonRepr) {
  // print(json.dumps(x)) in CPython for each x.
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},         {-0.0, "-0.0"},           {0.1, "0.1"},
      {1e-05, "1e-05"},     {0.0001, "0.0001"},       {0.00012, "0.00012"},
      {1e16, "1e+16"},      {1e15, "1000000000000000.0"}, {123456789.0, "123456789.0"},
      {2.5, "2.5"},         {-0.5, "-0.5"},           {1e-07, "1e-07"},
      {1.5e300, "1.5e+300"}, {8.0, "8.0"},            {-2.5e-10, "-2.5e-10"},
  };
  for (const auto& [value, expected] : cases) {
    SCOPED_TRACE(expected);
    EXPECT_EQ(JsonValue(value).dump(), expected);
  }
}

TEST(JsonValueDump, WritesNonFiniteFloatsLikePython) {
  EXPECT_EQ(JsonValue(std::numeric_limits<double>::quiet_NaN()).dump(), "NaN");
  EXPECT_EQ(JsonValue(std::numeric_limits<double>::infinity()).dump(), "Infinity");
  EXPECT_EQ(JsonValue(-std::numeric_limits<double>::infinity()).dump(), "-Infinity");
}

TEST(JsonValueDump, WritesIntsWithoutFraction) {
  EXPECT_EQ(JsonValue(8).dump(), "8");
  EXPECT_EQ(JsonValue(std::int64_t{-9223372036854775807 - 1}).dump(), "-9223372036854775808");
}

TEST(JsonValueDump, FloatsRoundTripThroughParse) {
  for (double d : {0.1, 1e-05, 1.0 / 3.0, 123456789.0, 1.5e300, 5e-324}) {
    JsonValue back = JsonValue::parse(JsonValue(d).dump());
    ASSERT_TRUE(back.is_float());
    EXPECT_EQ(back.as_double(), d);
  }
}

TEST(JsonValueDump, EscapesNonAsciiLikeEnsureAscii) {
  // json.dumps("é😀") == '"\\u00e9\\ud83d\\ude00"'
  EXPECT_EQ(JsonValue("\xC3\xA9\xF0\x9F\x98\x80").dump(), R"("\u00e9\ud83d\ude00")");
  EXPECT_EQ(JsonValue("\xE2\x82\xAC").dump(), R"("\u20ac")");  // €, three-byte sequence
}

TEST(JsonValueDump, EscapesControlCharactersLikePython) {
  // json.dumps("\x00\x1f\x7f\b\f\n\r\t\"\\/")
  std::string s("\x00\x1f\x7f\b\f\n\r\t\"\\/", 11);
  EXPECT_EQ(JsonValue(s).dump(), R"("\u0000\u001f\u007f\b\f\n\r\t\"\\/")");
}

TEST(JsonValueDump, EscapesObjectKeys) {
  JsonValue v = JsonValue::object();
  v.set("caf\xC3\xA9\n", 1);
  EXPECT_EQ(v.dump(), R"({"caf\u00e9\n": 1})");
}

TEST(JsonValueDump, WritesEmptyContainersCompactly) {
  EXPECT_EQ(JsonValue::array().dump(), "[]");
  EXPECT_EQ(JsonValue::object().dump(), "{}");
  EXPECT_EQ(JsonValue::array().dump(2), "[]");
  EXPECT_EQ(JsonValue::object().dump(2, true), "{}");
  EXPECT_EQ(JsonValue().dump(), "null");
}

JsonValue sample() {
  // {"b": [1, 2.0, {"z": None, "a": True}], "a": {}, "c": [], "é": "x", "Z": 1}
  JsonValue inner = JsonValue::object();
  inner.set("z", nullptr);
  inner.set("a", true);
  JsonValue v = JsonValue::object();
  v.set("b", JsonValue(JsonValue::Array{1, 2.0, inner}));
  v.set("a", JsonValue::object());
  v.set("c", JsonValue::array());
  v.set("\xC3\xA9", "x");
  v.set("Z", 1);
  return v;
}

TEST(JsonValueDump, OneLineFormMatchesPythonJsonDumps) {
  // json.dumps(v): keys in insertion order, ", " and ": " separators.
  EXPECT_EQ(sample().dump(),
            R"({"b": [1, 2.0, {"z": null, "a": true}], "a": {}, "c": [], "\u00e9": "x", "Z": 1})");
}

TEST(JsonValueDump, IndentedSortedFormMatchesPythonJsonDumps) {
  // json.dumps(v, indent=2, sort_keys=True): sorted by code point at every level, "," at line
  // ends, empty containers stay on one line.
  const std::string expected =
      "{\n"
      "  \"Z\": 1,\n"
      "  \"a\": {},\n"
      "  \"b\": [\n"
      "    1,\n"
      "    2.0,\n"
      "    {\n"
      "      \"a\": true,\n"
      "      \"z\": null\n"
      "    }\n"
      "  ],\n"
      "  \"c\": [],\n"
      "  \"\\u00e9\": \"x\"\n"
      "}";
  EXPECT_EQ(sample().dump(2, true), expected);
}

TEST(JsonValueDump, IndentedUnsortedFormKeepsInsertionOrder) {
  // json.dumps({"b": 1, "a": [1, [2, []]]}, indent=2)
  JsonValue v = JsonValue::object();
  v.set("b", 1);
  v.set("a", JsonValue(JsonValue::Array{1, JsonValue(JsonValue::Array{2, JsonValue::array()})}));
  const std::string expected =
      "{\n"
      "  \"b\": 1,\n"
      "  \"a\": [\n"
      "    1,\n"
      "    [\n"
      "      2,\n"
      "      []\n"
      "    ]\n"
      "  ]\n"
      "}";
  EXPECT_EQ(v.dump(2), expected);
}

TEST(JsonValueDump, ParseThenDumpReproducesPythonOutput) {
  const std::string text = R"({"r": 8, "lora_alpha": 16.0, "target_modules": ["q_proj", "v_proj"], "x": null})";
  EXPECT_EQ(JsonValue::parse(text).dump(), text);
}

// ---------------------------------------------------------------- equality and mutation

TEST(JsonValueEquality, IntEqualsFloatOfSameValue) {
  EXPECT_EQ(JsonValue(2), JsonValue(2.0));
  EXPECT_NE(JsonValue(2), JsonValue(2.5));
  EXPECT_EQ(JsonValue::parse("[1, 2]"), JsonValue::parse("[1.0, 2.0]"));
}

TEST(JsonValueEquality, IgnoresObjectKeyOrder) {
  EXPECT_EQ(JsonValue::parse(R"({"a": 1, "b": [true]})"), JsonValue::parse(R"({"b": [true], "a": 1})"));
  EXPECT_NE(JsonValue::parse(R"({"a": 1})"), JsonValue::parse(R"({"a": 1, "b": 2})"));
  EXPECT_NE(JsonValue::parse(R"({"a": 1})"), JsonValue::parse(R"({"b": 1})"));
}

TEST(JsonValueEquality, ArrayOrderMatters) {
  EXPECT_NE(JsonValue::parse("[1, 2]"), JsonValue::parse("[2, 1]"));
}

TEST(JsonValueEquality, DifferentTypesAreNotEqual) {
  EXPECT_NE(JsonValue(true), JsonValue(1));
  EXPECT_NE(JsonValue("1"), JsonValue(1));
  EXPECT_NE(JsonValue(), JsonValue(false));
  EXPECT_NE(JsonValue::array(), JsonValue::object());
}

TEST(JsonValueObject, SetKeepsPositionOfExistingKeyAndEraseRemoves) {
  JsonValue v = JsonValue::object();
  v.set("a", 1);
  v.set("b", 2);
  v.set("a", 3);
  EXPECT_EQ(v.dump(), R"({"a": 3, "b": 2})");
  EXPECT_TRUE(v.erase("a"));
  EXPECT_FALSE(v.erase("a"));
  EXPECT_EQ(v.dump(), R"({"b": 2})");
}

}  // namespace
